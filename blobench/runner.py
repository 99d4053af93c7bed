"""Running many cells: skip what the store already has, run the rest, write each record.

Cells already in the results store (same config, same code version) are skipped unless
``force``. The rest run in this process (``n_jobs=1``) or in joblib worker processes; each
finished record is written by this (the parent) process as soon as it arrives, so an
interrupted run loses only the cells in flight and a rerun does only the missing ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from blobench.harness import Cell, cell_version, run_cell
from blobench.registry import Registry, get_registry
from blobench.store import ResultsStore


@dataclass
class Summary:
    """What a run did: counts by status, and the failures with their messages."""

    cached: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    def text(self) -> str:
        parts = [f"{self.ran} cell(s) run", f"{self.cached} cached (skipped)"]
        parts += [f"{n} {status}" for status, n in sorted(self.statuses.items())]
        lines = [", ".join(parts)]
        lines += [f"  {status}: {msg}" for status, msg in self.failures]
        return "\n".join(lines)


def _run_in_worker(cell: Cell) -> dict[str, Any]:
    return run_cell(get_registry(cell.plugins), cell)


def run_cells(registry: Registry, cells: Iterable[Cell], store: ResultsStore, *,
              force: bool = False, n_jobs: int = 1, progress: bool = True,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """Run every cell not already in ``store`` (all of them with ``force``)."""
    summary = Summary()
    todo = []
    for cell in cells:
        if not force and store.load(cell.key(cell_version(registry, cell))) is not None:
            summary.cached += 1
        else:
            todo.append(cell)
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress or not todo)
    if n_jobs == 1:
        results: Iterable[dict[str, Any]] = (run_cell(registry, c) for c in todo)
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_run_in_worker)(c) for c in todo)
    for record in results:
        store.write(record)
        summary.statuses[record["status"]] += 1
        if record["status"] != "ok":
            cfg = record["config"]
            summary.failures.append((record["status"], f"{cfg['problem']} × {record['label']} "
                                     f"seed {cfg['seed']}: {record['message']}"))
        if on_record is not None:
            on_record(record)
        bar.update(1)
    bar.close()
    return summary
