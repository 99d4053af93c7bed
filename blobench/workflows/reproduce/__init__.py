"""``blobench reproduce NAME``: re-derive the claims of blobench's two seed papers.

Each reproduction is a registered set of *experiments*: (problems, algorithms, seeds, budget)
expanded by :func:`blobench.execution.harness.plan` into ordinary cells, run by
:func:`blobench.execution.runner.run_cells` into the ordinary results store (cached: a rerun
only runs what is missing), then a report step reads the records back, checks every claim
against a stated numeric criterion and writes ``<out>/<name>.md`` with its figures
(``<out>/<name>-*.png``).

- ``vicol2022``: Vicol, Lorraine, Pedregosa, Duvenaud, Grosse, "On Implicit Bias in
  Overparameterized Bilevel Optimization", ICML 2022 (claims 1–4 of issue 9).
- ``mehra2021``: Mehra & Hamm, "Penalty Method for Inversion-Free Deep Bilevel Optimization",
  ACML 2021 (claims 1–4).

Sizes: ``default`` (a laptop CPU, minutes), ``full`` (``--full``: the problems' full size, more
seeds and steps, closer to the papers) and ``smoke`` (the tests: only the mathematically
guaranteed claims, fewer steps).

Where things are: :mod:`.claims` (experiments, verdicts, the report a paper returns),
:mod:`.vicol2022` and :mod:`.mehra2021` (one module per paper: its experiments and the
numbers, criteria and figures of each claim), :mod:`.page` (the page from the jinja2 templates
in ``blobench/workflows/templates/reproduce/``: the prose lives there), :mod:`.run` (the
registry of reproductions and :func:`reproduce`), :mod:`.cli` (the ``blobench reproduce``
options). A new paper is a new module beside the two with its ``REPRODUCTION``, its templates,
and one line in :data:`~blobench.workflows.reproduce.run.REPRODUCTIONS`.
"""

from __future__ import annotations

from blobench.workflows.reproduce.claims import (
    NOT,
    PARTIAL,
    REPRODUCED,
    SIZES,
    Experiment,
    Report,
    Reproduction,
    Verdict,
)
from blobench.workflows.reproduce.mehra2021 import mehra_experiments, mehra_report
from blobench.workflows.reproduce.run import DEFAULT_OUT, REPRODUCTIONS, reproduce
from blobench.workflows.reproduce.vicol2022 import vicol_experiments, vicol_report

__all__ = ["DEFAULT_OUT", "NOT", "PARTIAL", "REPRODUCED", "REPRODUCTIONS", "SIZES",
           "Experiment", "Report", "Reproduction", "Verdict", "mehra_experiments",
           "mehra_report", "reproduce", "vicol_experiments", "vicol_report"]
