"""Cells in worker processes: the fork server, the workers, their supervisor.

Each cell runs in a worker process, never in the process that runs the suite. Workers are
children of a ``multiprocessing`` "forkserver" (CPU; torch and the engine are preloaded in the
server, so a worker starts in tens of milliseconds; "spawn" for CUDA). A worker runs cells one
after the other (:data:`CELLS_PER_WORKER` at most, then a fresh one): forking and tearing
down a process with torch loaded costs 50–150 ms on a small VM (measured, ``blobench bench``),
more than a quick cell's whole solver time, so a process per cell made that the suite's
bottleneck (issue 15). Between cells a worker releases what the cell left (garbage
collection, ``malloc_trim``), so that the next cell's resident-memory peak
(:class:`blobench.execution.memory.PeakMemory`) starts from a baseline like a fresh process's;
every cell builds its problem, algorithm and generators from its seed, so its numbers do not
depend on the cells the worker ran before (tested).

The supervisor (:func:`run_cell_isolated`) waits on the worker's pipe: past ``cell_timeout``
seconds it kills the worker and records ``timeout``; a worker that dies without answering
(killed, out of memory, segfault) gives ``crashed``, with the last step and the trace it
reported. Either way the next cell gets a fresh worker: nothing a cell does can stop the other
cells. The launching script (``__main__``) is preloaded in the server too (see
:mod:`blobench.execution.runner`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from blobench.execution.harness import Cell, new_record, run_cell
from blobench.execution.lifeline import arm_alarm, cell_lifeline
from blobench.execution.registry import get_registry

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


#: cells a worker runs before it is replaced by a fresh process (bounds what a long run's
#: allocator fragmentation or a cell's stray global state could carry)
CELLS_PER_WORKER = 32


def _release_memory() -> None:
    """Give back to the OS what the finished cell freed (Python's cycles, then glibc's free
    pages via ``malloc_trim(0)``), so the next cell's RSS peak is measured from a low base."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def _worker_main(conn: Connection) -> None:
    """A worker: receive ``(cell, cell_timeout)``, run it, send its record; until ``None`` or
    the supervisor is gone."""
    cell_lifeline(conn.fileno(), None)  # dies with the run, even after kill -9 of it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when a cell stops
    gc.freeze()  # the preloaded modules' objects: a collection between cells skips them (~0.5 s)
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            cell, cell_timeout = message
            arm_alarm(cell_timeout)  # the timeout holds even without a supervisor
            cpu0 = time.process_time()
            record = run_cell(get_registry(cell.plugins), cell,
                              report=lambda progress: conn.send(("progress", progress)),
                              contain_exits=True)
            record["cpu_seconds"] = time.process_time() - cpu0  # this cell's CPU alone
            arm_alarm(None)
            conn.send(record)
            del record
            _release_memory()
    finally:
        conn.close()


class _Worker:
    """One worker process and the supervisor's end of its pipe."""

    def __init__(self, device: str) -> None:
        ctx = _context(device)
        self.device = device
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        with _children_allowed():
            self.proc.start()
        child.close()
        self.cells = 0

    def close(self) -> None:
        """Ask the worker to exit; kill it if it does not within a few seconds."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.proc.join(5.0)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


_IDLE: list[_Worker] = []  # workers between cells, shared by the supervisor threads
_IDLE_LOCK = threading.Lock()


def _take_worker(device: str) -> _Worker:
    with _IDLE_LOCK:
        for i, worker in enumerate(_IDLE):
            if worker.device == device:
                del _IDLE[i]
                if worker.proc.is_alive():
                    return worker
                worker.kill()
                break
    return _Worker(device)


def _give_back(worker: _Worker) -> None:
    worker.cells += 1
    if worker.cells >= CELLS_PER_WORKER:
        worker.close()
        return
    with _IDLE_LOCK:
        _IDLE.append(worker)


def worker_start_seconds(device: str = "cpu") -> float:
    """Wall seconds to start a worker and stop it again (what a cell pays when no worker is
    idle: the first cell of each supervisor thread, and one in :data:`CELLS_PER_WORKER`)."""
    t0 = time.perf_counter()
    _Worker(device).close()
    return time.perf_counter() - t0


def shutdown_workers() -> None:
    """Stop the idle workers (the end of a run: a long-lived process, e.g. a notebook calling
    :func:`blobench.run`, keeps no idle worker holding memory)."""
    with _IDLE_LOCK:
        workers = list(_IDLE)
        _IDLE.clear()
    for worker in workers:
        worker.close()


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
    """Run ``cell`` in a worker process; ``timeout`` / ``crashed`` records if it does not answer
    (with the last step and the trace it reported before)."""
    registry = get_registry(cell.plugins)
    worker = _take_worker(cell.device)
    try:
        worker.conn.send((cell, cell_timeout))
    except OSError:  # the idle worker died meanwhile: a fresh one
        worker.kill()
        worker = _Worker(cell.device)
        worker.conn.send((cell, cell_timeout))
    deadline = None if cell_timeout is None else time.monotonic() + cell_timeout
    record, trace, step = None, [], 0
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not worker.conn.poll(left):
                worker.kill()
                return _so_far(new_record(
                    registry, cell, "timeout",
                    f"cell exceeded --cell-timeout {cell_timeout:g} s and was stopped"),
                    trace, step)
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, tuple) and message[0] == "progress":
                step = message[1]["step"]
                if "row" in message[1]:
                    trace.append(message[1]["row"])
                continue
            record = message
            break
    except BaseException:
        worker.kill()
        raise
    if record is None:
        worker.proc.join(5.0)  # a worker that is exiting: let it report its own exit code
        code = worker.proc.exitcode
        worker.kill()
        return _so_far(new_record(registry, cell, "crashed",
                                  f"worker process died ({_died(code)})"), trace, step)
    _give_back(worker)
    return record
