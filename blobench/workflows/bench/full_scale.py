"""``blobench bench --full-scale``: one inner gradient vs one HVP vs one CG-k hypergradient on
the paper-scale problems at full size in float32 (issue 16)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from blobench import autodiff
from blobench.execution.registry import Registry
from blobench.workflows.bench.costs import time_calls

#: measured by ``blobench bench --full-scale``: full size, float32, this process's CPU thread
FULL_SCALE = ("hyperclean", "large_n_ho", "sparse_ho")
FULL_SCALE_REPORT = "leaderboards/full/BENCH"


def measure_full_scale(registry: Registry, name: str, k: int = 10, rounds: int = 5
                       ) -> dict[str, Any]:
    """One full-batch inner gradient vs one HVP vs one CG-k hypergradient at ``full`` size in
    float32 (µs, and ratios to the gradient). The HVP is timed at a fresh point, i.e. with the
    cost of building the problem's Hessian operator (softmax probabilities, σ'), as a CG
    solve pays it once and a stochastic method once per step."""
    problem = registry.problem(name)(size="full", seed=0, dtype="float32")
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen).detach()
    theta = autodiff.gradient_descent(problem, problem.init_inner(lam, gen).detach(), lam, 5,
                                      problem.inner_step_size(lam))
    v = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
    times = time_calls({
        "grad": lambda: autodiff.inner_grad(problem, theta, lam),
        "hvp": lambda: autodiff.InnerDerivatives(problem, theta, lam).hvp(v),
        "cg": lambda: autodiff.implicit_hypergradient(
            problem, theta, lam, lambda o, b: autodiff.cg(o.hvp, b, k)),
    }, rounds=rounds)
    return {"problem": name, "dim_inner": problem.dim_inner, "dim_outer": problem.dim_outer,
            "n_train": problem.n_inner_samples, "dtype": "float32", "k": k,
            **{f"{key}_us": t * 1e6 for key, t in times.items()},
            "hvp_ratio": times["hvp"] / times["grad"], "cg_ratio": times["cg"] / times["grad"]}


def write_full_scale(registry: Registry, path: str | Path = FULL_SCALE_REPORT, k: int = 10,
                     rounds: int = 5, log: Callable[[str], None] = print) -> Path:
    """Measure every :data:`FULL_SCALE` problem (one missing its data is noted, not fatal)
    and write ``<path>.json`` and ``<path>.md``."""
    from blobench.contracts.errors import NotApplicable

    torch.set_num_threads(1)
    rows, notes = [], []
    for name in FULL_SCALE:
        try:
            rows.append(measure_full_scale(registry, name, k, rounds))
        except NotApplicable as exc:
            notes.append(f"{name}: {exc}")
            continue
        r = rows[-1]
        log(f"{name:11s} grad {r['grad_us'] / 1e3:8.1f} ms  hvp ×{r['hvp_ratio']:.2f}  "
            f"cg-{k} ×{r['cg_ratio']:.1f}")
    report = {"command": "blobench bench --full-scale", "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()} ({os.cpu_count()} cores), 1 torch thread, "
                         f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
              "torch": torch.__version__, "rows": rows, "notes": notes}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# One inner gradient vs one HVP vs one CG-{k} hypergradient at full size "
             "(float32, CPU)", "", f"Command: `{report['command']}` ({report['date']}); "
             f"machine: {report['machine']}; torch {report['torch']}.", "",
             "| problem | dim θ | dim λ | n | gradient (ms) | HVP (ms) | HVP / grad | "
             f"CG-{k} hypergradient (ms) | CG / grad |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['problem']} | {r['dim_inner']:,} | {r['dim_outer']:,} | {r['n_train']:,} "
              f"| {r['grad_us'] / 1e3:.1f} | {r['hvp_us'] / 1e3:.1f} | {r['hvp_ratio']:.2f} | "
              f"{r['cg_us'] / 1e3:.1f} | {r['cg_ratio']:.1f} |" for r in rows]
    lines += ["", *(f"- not measured: {n}" for n in notes),
              "No GPU was available to this session: CUDA times and peak memory are not "
              "measured."]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return path.with_suffix(".md")
