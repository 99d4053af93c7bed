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

``isolate=False`` runs cells in this process instead (for debugging and profiling).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tqdm import tqdm

from blobench.errors import UserError
from blobench.harness import Cell, cell_version, new_record, run_cell
from blobench.registry import Registry, get_registry
from blobench.store import ResultsStore

FAILED = ("error", "diverged", "timeout", "crashed")


@dataclass
class Summary:
    """What a run did: counts by status, and the failures with their messages."""

    cached: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    def add(self, record: dict[str, Any]) -> None:
        self.statuses[record["status"]] += 1
        if record["status"] in FAILED:
            cfg = record["config"]
            step = f" at step {record['failed_step']}" if record["failed_step"] else ""
            self.failures.append((record["status"], f"{cfg['problem']} × {record['label']} "
                                  f"seed {cfg['seed']}{step}: {record['message']}"))

    def text(self) -> str:
        parts = [f"{self.ran} cell(s) run", f"{self.cached} cached (skipped)"]
        parts += [f"{n} {status}" for status, n in sorted(self.statuses.items())]
        lines = [", ".join(parts)]
        lines += [f"  {status}: {msg}" for status, msg in self.failures]
        return "\n".join(lines)


# ------------------------------------------------------------------ isolation
_CONTEXTS: dict[str, Any] = {}
_CONTEXT_LOCK = threading.Lock()


def _context(device: str) -> Any:
    kind = "spawn" if device.startswith("cuda") or os.name != "posix" else "forkserver"
    with _CONTEXT_LOCK:
        if kind not in _CONTEXTS:
            ctx = mp.get_context(kind)
            if kind == "forkserver":
                ctx.set_forkserver_preload(["blobench._forkserver_preload"])
            _CONTEXTS[kind] = ctx
    return _CONTEXTS[kind]


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """Let a daemonic process (a Dask worker is one) start the cell's child process.

    multiprocessing refuses children in daemonic processes so that they are not orphaned when
    the daemon is killed; here the supervisor always kills or joins its child itself.
    """
    config = mp.current_process()._config  # private: there is no public API for this flag
    daemonic = config.get("daemon", False)
    config["daemon"] = False
    try:
        yield
    finally:
        config["daemon"] = daemonic


def _child_main(cell: Cell, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when a cell stops
    try:
        record = run_cell(get_registry(cell.plugins), cell)
        conn.send(record)
    finally:
        conn.close()


def run_cell_isolated(cell: Cell, cell_timeout: float | None = None) -> dict[str, Any]:
    """Run ``cell`` in a child process; ``timeout`` / ``crashed`` records if it does not answer."""
    registry = get_registry(cell.plugins)
    ctx = _context(cell.device)
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(cell, sender), daemon=True)
    with _children_allowed():
        proc.start()
    sender.close()
    record = None
    try:
        if receiver.poll(cell_timeout):
            try:
                record = receiver.recv()
            except (EOFError, OSError):
                record = None
        else:
            proc.kill()
            proc.join()
            return new_record(registry, cell, "timeout",
                              f"cell exceeded --cell-timeout {cell_timeout:g} s and was stopped")
    finally:
        receiver.close()
        if proc.is_alive() and record is None:
            proc.kill()
        proc.join()
    if record is None:
        code = proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return new_record(registry, cell, "crashed", f"worker process died ({how})")
    return record


# -------------------------------------------------------------------- backends
def _results(todo: list[Cell], registry: Registry, n_jobs: int, backend: str,
             scheduler: str | None, cell_timeout: float | None, isolate: bool
             ) -> Iterator[dict[str, Any]]:
    if not isolate:
        if cell_timeout is not None or n_jobs != 1 or backend != "local":
            raise UserError("--in-process runs one cell at a time locally, without "
                            "--cell-timeout, --n-jobs or --backend dask")
        for cell in todo:
            yield run_cell(registry, cell)
        return
    from joblib import Parallel, delayed, parallel_config

    tasks = (delayed(run_cell_isolated)(cell, cell_timeout) for cell in todo)
    if backend == "local":
        with parallel_config(backend="threading", n_jobs=n_jobs):
            yield from Parallel(return_as="generator_unordered")(tasks)
        return
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


def run_cells(registry: Registry, cells: Iterable[Cell], store: ResultsStore, *,
              force: bool = False, n_jobs: int = 1, backend: str = "local",
              scheduler: str | None = None, cell_timeout: float | None = None,
              isolate: bool = True, progress: bool = True,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> Summary:
    """Run every cell not already in ``store`` (all of them with ``force``).

    ``n_jobs``: cells at once (joblib's convention: -1 = as many as the backend has).
    """
    summary = Summary()
    todo = []
    for cell in cells:
        if not force and store.load(cell.key(cell_version(registry, cell))) is not None:
            summary.cached += 1
        else:
            todo.append(cell)
    if not todo:
        return summary
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress)
    try:
        for record in _results(todo, registry, n_jobs, backend, scheduler, cell_timeout,
                               isolate):
            store.write(record)
            summary.add(record)
            if on_record is not None:
                on_record(record)
            bar.update(1)
    finally:
        bar.close()
    return summary
