"""Running a reproduction: its experiments' cells through the ordinary harness, then its page.

:func:`reproduce` expands each :class:`~blobench.workflows.reproduce.claims.Experiment` with
:func:`blobench.execution.harness.plan` into ordinary cells, runs them with
:func:`blobench.execution.runner.run_cells` into the ordinary results store (cached: a rerun
only runs what is missing), reads the records back (one DataFrame per experiment), lets the
paper's report step check its claims and writes ``<out>/<name>.md`` with its figures.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from blobench.contracts.errors import UserError
from blobench.execution.harness import Cell, cell_version, plan
from blobench.execution.registry import Registry, get_registry
from blobench.execution.runner import run_cells
from blobench.execution.store import ResultsStore
from blobench.reporting.results import flatten
from blobench.workflows.reproduce import mehra2021, vicol2022
from blobench.workflows.reproduce.claims import SIZES, Experiment, Reproduction, Verdict
from blobench.workflows.reproduce.page import write_page

DEFAULT_OUT = "leaderboards/reproductions"
#: the registered reproductions, by the name ``blobench reproduce NAME`` takes
REPRODUCTIONS: dict[str, Reproduction] = {
    "vicol2022": vicol2022.REPRODUCTION,
    "mehra2021": mehra2021.REPRODUCTION,
}


def run_experiments(registry: Registry, experiments: list[Experiment], store: ResultsStore,
                    size: str, seeds: list[int], n_jobs: int, progress: bool, isolate: bool
                    ) -> dict[str, pd.DataFrame]:
    """Run every experiment's cells; per experiment, one row per cell (with its trace)."""
    planned: dict[str, list[Cell]] = {}
    problem_size = "full" if size == "full" else "quick"
    scale = 3 if size == "full" else 1
    for exp in experiments:
        if size not in exp.sizes:
            continue
        cells, _ = plan(registry, exp.problems, exp.algorithms, seeds, size=problem_size,
                        steps=exp.steps * scale, eval_every=exp.eval_every * scale)
        planned[exp.key] = cells
    every = [c for cells in planned.values() for c in cells]
    summary = run_cells(registry, every, store, n_jobs=n_jobs, progress=progress,
                        isolate=isolate)
    if summary.failures:
        print(summary.text())
    frames = {}
    for key, cells in planned.items():
        rows = []
        for cell in cells:
            record = store.load(cell.key(cell_version(registry, cell)))
            if record is None:
                continue
            row = flatten(record)
            row["trace"] = record["trace"]
            rows.append(row)
        frames[key] = pd.DataFrame(rows)
    return frames


def reproduce(name: str, out: Path | str = DEFAULT_OUT, results: Path | str = "results",
              size: str = "default", n_jobs: int = 1, progress: bool = True,
              isolate: bool = True, registry: Registry | None = None,
              command: str | None = None) -> tuple[Path, list[Verdict]]:
    """Run reproduction ``name`` and write its page; returns the page and the verdicts."""
    if name not in REPRODUCTIONS:
        raise UserError(f"unknown reproduction {name!r}; valid: {', '.join(REPRODUCTIONS)}")
    if size not in SIZES:
        raise UserError(f"unknown reproduction size {size!r}; valid: {', '.join(SIZES)}")
    repro = REPRODUCTIONS[name]
    registry = registry or get_registry()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(5 if size == "full" else 3))
    t0 = time.perf_counter()
    frames = run_experiments(registry, repro.experiments(), ResultsStore(results), size, seeds,
                             n_jobs, progress, isolate)
    stem = name if size != "full" else f"{name}-full"
    rep = repro.report(frames, out, stem)
    page = write_page(out / f"{stem}.md", title=repro.title, citation=repro.citation,
                      command=command or f"blobench reproduce {name}", size=size, seeds=seeds,
                      n_cells=sum(len(f) for f in frames.values()), results=results,
                      wall=time.perf_counter() - t0, verdicts=rep.verdicts,
                      sections=rep.sections)
    return page, rep.verdicts
