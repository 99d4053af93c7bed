"""Running many cells: skip what the store has, run the rest in isolation, write each record.

Execution, one code path for every backend:

- Each cell runs in its **own child process** (``multiprocessing`` "forkserver" context on CPU,
  with torch and the engine preloaded in the server so a child starts in milliseconds;
  "spawn" for CUDA). The supervisor waits on the child's pipe: past ``cell_timeout`` seconds
  it kills the child and records ``timeout``; a child that dies without answering (killed,
  out of memory, segfault) gives ``crashed``. Nothing a cell does can stop the other cells.
- Supervisors are scheduled by joblib: ``n_jobs`` threads locally (a thread only waits on its
  child, so N threads give N cells running at once in N processes), or tasks on a Dask
  cluster through joblib's ``dask`` backend (``backend="dask"``): the same supervisor runs on
  the Dask workers, which fork the cells there.
- Records come back to this (the client) process, which writes each one to the results store
  as soon as it arrives. One writer means no shared file system is needed on a cluster, and an
  interrupted run loses only the cells in flight: a rerun does only the missing ones.
- Fixed cost per cell: the fork server imports the engine once, and the launching script
  (``__main__``) once, in the server (``"__main__"`` in the preload list), so a forked cell
  does not re-import it as ``__mp_main__`` (for the ``blobench`` console script that cost
  seconds per cell when the CLI imported the plotting stack; it now imports nothing heavy).
- Progress (:class:`~blobench.execution.progress.Progress`): a bar on a terminal, one line
  per finished cell otherwise, with an ETA that weights each cell by its expected seconds
  (its earlier record, else the mean of its problem's finished cells); cells with earlier
  timings run longest first.

``isolate=False`` runs cells in this process instead (for debugging and profiling).

Where things are: this module (what to run, the backends, the records written as they come
back: :func:`run_cells`), :mod:`blobench.execution.isolation` (one cell in a child process and
its supervisor), :mod:`blobench.execution.progress` (the bar / lines and the ETA).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from blobench.contracts.errors import UserError
from blobench.execution.harness import Cell, cell_version, run_cell
from blobench.execution.isolation import run_cell_isolated, shutdown_workers, start_server
from blobench.execution.progress import Progress, order_cells, progress_mode, record_seconds
from blobench.execution.registry import Registry
from blobench.execution.store import ResultsStore

__all__ = ["FAILED", "Progress", "Summary", "prior_seconds", "progress_mode", "run_cell_isolated",
           "run_cells", "start_server"]

FAILED = ("error", "diverged", "timeout", "crashed")


@dataclass
class Summary:
    """What a run did: counts by status, and the failures with their messages."""

    cached: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: failures read from the store (recorded by an earlier run), not rerun
    cached_failures: list[tuple[str, str]] = field(default_factory=list)
    #: Σ solver seconds of the cells run, the run's wall seconds and its cells at once
    solver_seconds: float = 0.0
    wall_seconds: float = 0.0
    n_jobs: int = 1

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    @property
    def efficiency(self) -> float | None:
        """Σ solver time / (wall time × cells at once): 1 = no time outside the solvers."""
        if not self.wall_seconds or self.n_jobs < 1:
            return None
        return self.solver_seconds / (self.wall_seconds * self.n_jobs)

    @staticmethod
    def _failure(record: dict[str, Any]) -> tuple[str, str] | None:
        if record["status"] not in FAILED:
            return None
        cfg = record["config"]
        step = f" at step {record['failed_step']}" if record["failed_step"] else ""
        return (record["status"], f"{cfg['problem']} × {record['label']} "
                f"seed {cfg['seed']}{step}: {record['message']}")

    def add(self, record: dict[str, Any]) -> None:
        self.statuses[record["status"]] += 1
        self.solver_seconds += record.get("solver_seconds") or 0.0
        failure = self._failure(record)
        if failure:
            self.failures.append(failure)

    def add_cached(self, record: dict[str, Any]) -> None:
        self.cached += 1
        failure = self._failure(record)
        if failure:
            self.cached_failures.append(failure)

    def text(self) -> str:
        parts = [f"{self.ran} cell(s) run", f"{self.cached} cached (skipped)"]
        parts += [f"{n} {status}" for status, n in sorted(self.statuses.items())]
        lines = [", ".join(parts)]
        lines += [f"  {status}: {msg}" for status, msg in self.failures]
        if self.cached_failures:
            lines.append(f"{len(self.cached_failures)} cached cell(s) failed in an earlier "
                         "run, reused (--retry-failed reruns them):")
            lines += [f"  {status} (cached): {msg}" for status, msg in self.cached_failures]
        return "\n".join(lines)


# -------------------------------------------------------------------- backends
def _timed(run: Callable[[], dict[str, Any]], on_start: Callable[[], None] | None = None
           ) -> dict[str, Any]:
    """``run()``'s record with ``cell_seconds``: its wall time as the supervisor saw it
    (process start, set-up, solver, evaluation, record transfer)."""
    if on_start is not None:
        on_start()
    t0 = time.perf_counter()
    record = run()
    record["cell_seconds"] = time.perf_counter() - t0
    return record


def _results(todo: list[Cell], registry: Registry, n_jobs: int, backend: str,
             scheduler: str | None, cell_timeout: float | None, isolate: bool,
             on_start: Callable[[Cell], None] | None = None) -> Iterator[dict[str, Any]]:
    if not isolate:
        if cell_timeout is not None or n_jobs != 1 or backend != "local":
            raise UserError("--in-process runs one cell at a time locally, without "
                            "--cell-timeout, --n-jobs or --backend dask")
        for cell in todo:
            yield _timed(lambda cell=cell: run_cell(registry, cell),
                         on_start and (lambda cell=cell: on_start(cell)))
        return
    from joblib import Parallel, delayed, parallel_config

    if backend == "local":
        tasks = (delayed(_timed)(lambda cell=cell: run_cell_isolated(cell, cell_timeout),
                                 on_start and (lambda cell=cell: on_start(cell)))
                 for cell in todo)
        with parallel_config(backend="threading", n_jobs=n_jobs):
            yield from Parallel(return_as="generator_unordered")(tasks)
        return
    tasks = (delayed(run_cell_isolated)(cell, cell_timeout) for cell in todo)
    client = _dask_client(scheduler)
    try:
        with parallel_config(backend="dask", n_jobs=n_jobs):
            yield from Parallel(return_as="generator_unordered")(tasks)
    finally:
        client.close()


def _dask_client(scheduler: str | None) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--backend dask needs the 'distributed' package: "
                        "pip install -e '.[dask]'") from None
    if not scheduler:
        raise UserError("--backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def prior_seconds(store: ResultsStore, cells: Iterable[Cell]) -> dict[str, float]:
    """Wall seconds of the latest earlier record (any code version) of each cell config."""
    wanted = {c.config_id() for c in cells}
    found: dict[str, tuple[float, float]] = {}
    for record in store.records():
        cid = record.get("config_id")
        if cid in wanted and record.get("finished", 0) >= found.get(cid, (-1.0, 0.0))[0]:
            found[cid] = (record.get("finished", 0), record_seconds(record))
    return {cid: seconds for cid, (_, seconds) in found.items()}


def run_cells(registry: Registry, cells: Iterable[Cell], store: ResultsStore, *,
              force: bool = False, retry_failed: bool = False, n_jobs: int = 1,
              backend: str = "local",
              scheduler: str | None = None, cell_timeout: float | None = None,
              isolate: bool = True, progress: bool | str = True,
              on_record: Callable[[dict[str, Any]], None] | None = None,
              provenance: dict[str, Any] | None = None,
              shipped_seconds: dict[str, float] | None = None) -> Summary:
    """Run every cell not already in ``store`` (all of them with ``force``; with
    ``retry_failed`` also those whose stored record failed: error, diverged, timeout, crashed).

    ``n_jobs``: cells at once (joblib's convention: -1 = as many as the backend has).
    ``progress``: a mode of :func:`progress_mode` ("bar", "lines", "both", "off"), or a bool
    (True: the terminal decides). ``provenance`` (the run's spec, see
    :mod:`blobench.workflows.api`) is stored in each new record as ``run``.
    ``shipped_seconds``: timings of another run of these cells
    (:func:`blobench.execution.progress.cell_seconds_table`) for the order and the ETA.
    """
    summary = Summary(n_jobs=n_jobs)
    todo = []
    for cell in cells:
        cached = None if force else store.load(cell.key(cell_version(registry, cell)))
        if cached is not None and retry_failed and cached["status"] in FAILED:
            cached = None
        if cached is not None:
            summary.add_cached(cached)
        else:
            todo.append(cell)
    if not todo:
        return summary
    if isolate and backend == "local":
        start_server(todo[0].device)  # its one-off start-up is no cell's time
    mode = progress if isinstance(progress, str) else progress_mode(progress)
    prior = prior_seconds(store, todo) if mode != "off" or n_jobs != 1 else {}
    todo = order_cells(todo, prior, shipped_seconds)
    bar = Progress(todo, prior, n_jobs, mode, shipped=shipped_seconds)
    t0 = time.perf_counter()
    try:
        for record in _results(todo, registry, n_jobs, backend, scheduler, cell_timeout,
                               isolate, on_start=bar.started):
            if provenance is not None:
                record["run"] = provenance
            store.write(record)
            summary.add(record)
            if on_record is not None:
                on_record(record)
            bar.finished(bar.cells[record["config_id"]], record)
    finally:
        bar.close()
        summary.wall_seconds = time.perf_counter() - t0
        shutdown_workers()
    return summary
