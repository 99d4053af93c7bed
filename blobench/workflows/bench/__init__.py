"""``blobench bench``: what a hypergradient costs, in inner-gradient evaluations.

A benchmark of algorithms is only fair if its implementations are fast, so this measures the
engine's autodiff paths (blobench.autodiff) as *ratios* to one inner gradient of the same
problem, timed in the same run (absolute times depend on the machine, ratios much less):

- ``cg``: a k-step CG hypergradient (:func:`~blobench.autodiff.implicit_hypergradient` with
  :func:`~blobench.autodiff.cg`: one outer gradient, k HVPs, one mixed product);
  target ≤ 1.5 (k + 2) inner gradients.
- ``neumann``: the same with a k-term Neumann series; target ≤ 1.5 (k + 2).
- ``unroll``: T differentiable inner steps and the reverse pass
  (:func:`~blobench.autodiff.unroll` + :func:`~blobench.autodiff.outer_hypergradient`);
  target ≤ 3 T.

The reference "inner gradient" is :func:`~blobench.autodiff.inner_grad`, the path every
algorithm uses (the problem's analytic oracle where it has one, else autodiff), so an oracle
makes the reference faster too: the ratios are never flattered by a slow reference. The
autodiff-only gradient time is reported beside it.

Harness overhead: cells are run in-process with :func:`blobench.execution.harness.run_cell`
while the evaluation (``evaluate_state``, the replayed-step memory probe), the process-memory
probe and problem construction are timed separately; *overhead* is the cell's wall time outside the
solver's timed steps, the evaluation and the set-up, as a share of solver time (the median of
three runs of each cell, after one warm-up cell: a forked cell starts with the engine loaded).

The benchmark's own speed (startup, per-cell fixed cost, evaluation share, ``--n-jobs``
speed-up and efficiency, the default run and its ETA) is measured by
:mod:`blobench.workflows.speed` in the same run and shown first in the report, each goal with
its target, met or not, and the command that measured it; so is the per-step cost of the
single-loop stochastic methods against their oracle calls timed alone
(:mod:`blobench.workflows.bench.step_cost`).

Each case runs in this process with ``torch.set_num_threads(1)`` (as cells do). The report
(JSON + Markdown) records the command, the machine, the load average and every measurement.
The same measurements run under pytest-benchmark: ``pytest tests/benchmarks --benchmark-only``.

Where things are: :mod:`.costs` (timing and the hypergradient cost ratios), :mod:`.overhead`
(the harness overhead of in-process cells), :mod:`.report` (the whole benchmark and its
JSON / Markdown report), :mod:`.full_scale` (``--full-scale``: paper-size problems),
:mod:`.cli` (``blobench bench``'s options).
"""

from __future__ import annotations

from blobench.workflows.bench.costs import (
    CASES,
    autodiff_only,
    cost_functions,
    measure_case,
    time_calls,
)
from blobench.workflows.bench.full_scale import (
    FULL_SCALE,
    FULL_SCALE_REPORT,
    measure_full_scale,
    write_full_scale,
)
from blobench.workflows.bench.overhead import HARNESS_CELLS, measure_harness
from blobench.workflows.bench.report import (
    DEFAULT_REPORT,
    measure_goals,
    run_benchmark,
    write_report,
)

__all__ = ["CASES", "DEFAULT_REPORT", "FULL_SCALE", "FULL_SCALE_REPORT", "HARNESS_CELLS",
           "autodiff_only", "cost_functions", "measure_case", "measure_full_scale",
           "measure_goals", "measure_harness", "run_benchmark", "time_calls", "write_full_scale",
           "write_report"]
