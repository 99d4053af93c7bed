"""One cell in its own child process: the fork server, the child, its supervisor.

Each cell runs in a child process (``multiprocessing`` "forkserver" context on CPU, with
torch and the engine preloaded in the server so a child starts in milliseconds; "spawn" for
CUDA). The supervisor (:func:`run_cell_isolated`) waits on the child's pipe: past
``cell_timeout`` seconds it kills the child and records ``timeout``; a child that dies without
answering (killed, out of memory, segfault) gives ``crashed``, with the last step and the
trace it reported. Nothing a cell does can stop the other cells. The launching script
(``__main__``) is preloaded in the server too (see :mod:`blobench.execution.runner`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from blobench.execution.harness import Cell, new_record, run_cell
from blobench.execution.lifeline import cell_lifeline
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
