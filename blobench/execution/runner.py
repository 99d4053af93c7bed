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
- Progress (:class:`Progress`): a bar on a terminal, one line per finished cell otherwise,
  with an ETA that weights each cell by its expected seconds (its earlier record, else the
  mean of its problem's finished cells); cells with earlier timings run longest first.

``isolate=False`` runs cells in this process instead (for debugging and profiling).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TextIO

from blobench.contracts.errors import UserError
from blobench.execution.harness import Cell, cell_version, new_record, run_cell
from blobench.execution.lifeline import cell_lifeline
from blobench.execution.registry import Registry, get_registry
from blobench.execution.store import ResultsStore

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


# -------------------------------------------------------------------- progress
def progress_mode(enabled: bool = True, verbose: bool = False,
                  stream: TextIO | None = None) -> str:
    """How to show progress: "bar" on a terminal, "lines" (one per finished cell) otherwise,
    "both" with ``verbose`` on a terminal, "off" when disabled or ``TQDM_DISABLE`` is set."""
    stream = stream or sys.stderr
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return "off"
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return "lines"
    return "both" if verbose else "bar"


def _clock(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _record_seconds(record: dict[str, Any]) -> float:
    """A record's wall seconds as its supervisor saw them (process start to record)."""
    if record.get("cell_seconds") is not None:
        return float(record["cell_seconds"])
    return max(0.0, record.get("finished", 0.0) - record.get("started", 0.0))


class Progress:
    """Finished cells with an ETA that weights each cell by its expected seconds.

    A cell's expected seconds: its ``prior`` (an earlier record of the same configuration),
    else the mean of the finished or prior cells of its problem, else of all finished cells.
    ETA = (expected seconds of the cells left − seconds the running ones already ran) /
    cells at once. Shown as a tqdm bar ("bar"), one line per finished cell with its label and
    status ("lines"; what logs and CI get: no carriage-return frames), both, or nothing.
    """

    def __init__(self, cells: list[Cell], prior: dict[str, float], n_jobs: int, mode: str,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter):
        self.cells = {c.config_id(): c for c in cells}
        self.prior = prior
        self.n_jobs = n_jobs
        self.mode = mode
        self.stream = stream or sys.stderr
        self.done: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.clock = clock
        self.t0 = clock()
        self.color = mode in ("bar", "both") and "NO_COLOR" not in os.environ
        self.bar = None
        if mode in ("bar", "both"):
            from tqdm import tqdm

            self.bar = tqdm(total=len(cells), desc="cells", unit="cell", file=self.stream,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def started(self, cell: Cell) -> None:
        self.running[cell.config_id()] = self.clock()

    def eta(self) -> float | None:
        """Seconds left (None until something is known about the cells left).

        A cell without an earlier record is expected to cost overall × (its problem's mean /
        overall) × (its algorithm's mean / overall), the means over the known cells (a
        factor is 1 until its problem or algorithm has one): cost ≈ problem × algorithm."""
        groups: dict[tuple[str, str], list[float]] = {}
        for cid, seconds in [*self.prior.items(), *self.done.items()]:
            cell = self.cells.get(cid)
            if cell is not None:
                groups.setdefault(("p", cell.problem), []).append(seconds)
                groups.setdefault(("a", cell.algorithm), []).append(seconds)
        known = [*self.done.values(), *self.prior.values()]
        if not known:
            return None
        overall = sum(known) / len(known)
        factor = {k: sum(v) / len(v) / overall if overall > 0 else 1.0
                  for k, v in groups.items()}
        now, left = self.clock(), 0.0
        for cid, cell in self.cells.items():
            if cid in self.done:
                continue
            expected = self.prior.get(cid, overall * factor.get(("p", cell.problem), 1.0)
                                      * factor.get(("a", cell.algorithm), 1.0))
            if cid in self.running:
                expected = max(0.0, expected - (now - self.running[cid]))
            left += expected
        jobs = self.n_jobs if self.n_jobs > 0 else max(1, len(self.running))
        return left / jobs

    def finished(self, cell: Cell, record: dict[str, Any]) -> None:
        cid = cell.config_id()
        self.running.pop(cid, None)
        self.done[cid] = _record_seconds(record)
        if self.mode == "off":
            return
        eta = self.eta()
        when = f"elapsed {_clock(self.clock() - self.t0)}, ETA " + (
            "?" if eta is None else _clock(eta))
        status = record["status"]
        if self.color:
            status = f"\033[{32 if status == 'ok' else 33 if status == 'not_applicable' else 31}m" \
                     f"{status}\033[0m"
        if self.mode in ("lines", "both"):
            n = len(self.done)
            width = len(str(len(self.cells)))
            line = (f"[{n:{width}d}/{len(self.cells)}] {cell.problem} × {record['label']} seed "
                    f"{cell.seed}: {status} {self.done[cid]:.1f} s ({when})")
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.set_postfix_str(when.split(", ")[1], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def order_cells(cells: list[Cell], prior: dict[str, float]) -> list[Cell]:
    """Longest first when every cell has an earlier timing (fewer idle cores at the end);
    otherwise a fixed shuffle, so that the cells done at any time are a fair sample of
    problems and algorithms alike and the ETA learns both early (in name order the cheap
    algorithms came first: the ETA was 85 % short at half the run)."""
    if cells and all(c.config_id() in prior for c in cells):
        return sorted(cells, key=lambda c: -prior[c.config_id()])
    import random

    out = list(cells)
    random.Random(0).shuffle(out)
    return out


# ------------------------------------------------------------------ isolation
_CONTEXTS: dict[str, Any] = {}
_CONTEXT_LOCK = threading.Lock()


def _context(device: str) -> Any:
    kind = "spawn" if device.startswith("cuda") or os.name != "posix" else "forkserver"
    with _CONTEXT_LOCK:
        if kind not in _CONTEXTS:
            ctx = mp.get_context(kind)
            if kind == "forkserver":  # "__main__": see the module docstring
                ctx.set_forkserver_preload(["blobench.execution.lifeline", "__main__",
                                            "blobench.execution._forkserver_preload"])
            _CONTEXTS[kind] = ctx
    return _CONTEXTS[kind]


def start_server(device: str = "cpu") -> None:
    """Start the fork server if it is not running, and wait until its preload (torch, the
    engine: seconds) is done, by starting one empty process: that one-off cost is then no
    cell's ``cell_seconds`` (nor the progress bar's per-cell estimate)."""
    ctx = _context(device)
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
        ping = ctx.Process(target=int, daemon=True)  # returns once the server is ready
        with _children_allowed():
            ping.start()
        ping.join()


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


def _child_main(cell: Cell, conn: Connection, cell_timeout: float | None = None) -> None:
    cell_lifeline(conn.fileno(), cell_timeout)  # dies with the run, even after kill -9 of it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when a cell stops
    try:
        record = run_cell(get_registry(cell.plugins), cell,
                          report=lambda progress: conn.send(("progress", progress)),
                          contain_exits=True)
        record["cpu_seconds"] = time.process_time()  # this cell process's CPU since its fork
        conn.send(record)
    finally:
        conn.close()


def _died(code: int | None) -> str:
    if code is not None and code < 0:
        if -code == signal.SIGALRM:
            return "stopped by its own --cell-timeout alarm (its supervisor did not answer)"
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _so_far(record: dict[str, Any], trace: list[dict[str, Any]], step: int) -> dict[str, Any]:
    """A timeout / crashed record with the last step the cell reported and its trace so far."""
    record.update(failed_step=step, steps_done=step, trace=trace,
                  solver_seconds=trace[-1].get("seconds", 0.0) if trace else 0.0)
    return record


def run_cell_isolated(cell: Cell, cell_timeout: float | None = None) -> dict[str, Any]:
    """Run ``cell`` in a child process; ``timeout`` / ``crashed`` records if it does not answer
    (with the last step and the trace it reported before)."""
    registry = get_registry(cell.plugins)
    ctx = _context(cell.device)
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(cell, sender, cell_timeout), daemon=True)
    with _children_allowed():
        proc.start()
    sender.close()
    deadline = None if cell_timeout is None else time.monotonic() + cell_timeout
    record, trace, step = None, [], 0
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not receiver.poll(left):
                proc.kill()
                proc.join()
                return _so_far(new_record(
                    registry, cell, "timeout",
                    f"cell exceeded --cell-timeout {cell_timeout:g} s and was stopped"),
                    trace, step)
            try:
                message = receiver.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, tuple) and message[0] == "progress":
                step = message[1]["step"]
                if "row" in message[1]:
                    trace.append(message[1]["row"])
                continue
            record = message
            break
    finally:
        receiver.close()
        if record is None:
            proc.join(5.0)  # a child that is exiting: let it report its own exit code
        if proc.is_alive() and record is None:
            proc.kill()
        proc.join()
    if record is None:
        return _so_far(new_record(registry, cell, "crashed",
                                  f"worker process died ({_died(proc.exitcode)})"), trace, step)
    return record


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
            found[cid] = (record.get("finished", 0), _record_seconds(record))
    return {cid: seconds for cid, (_, seconds) in found.items()}


def run_cells(registry: Registry, cells: Iterable[Cell], store: ResultsStore, *,
              force: bool = False, retry_failed: bool = False, n_jobs: int = 1,
              backend: str = "local",
              scheduler: str | None = None, cell_timeout: float | None = None,
              isolate: bool = True, progress: bool | str = True,
              on_record: Callable[[dict[str, Any]], None] | None = None,
              provenance: dict[str, Any] | None = None) -> Summary:
    """Run every cell not already in ``store`` (all of them with ``force``; with
    ``retry_failed`` also those whose stored record failed: error, diverged, timeout, crashed).

    ``n_jobs``: cells at once (joblib's convention: -1 = as many as the backend has).
    ``progress``: a mode of :func:`progress_mode` ("bar", "lines", "both", "off"), or a bool
    (True: the terminal decides). ``provenance`` (the run's spec, see :mod:`blobench.workflows.api`)
    is stored in each new record as ``run``.
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
    todo = order_cells(todo, prior)
    bar = Progress(todo, prior, n_jobs, mode)
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
    return summary
