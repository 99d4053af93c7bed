"""The processes of a run die with it, even after ``kill -9`` of the main process (issue 18).

A cell runs in a worker process, a child of multiprocessing's fork server that runs cells one
after the other (:mod:`blobench.execution.isolation`). Left alone, ``kill -9`` of the main
process orphans everything: each child inherits the write end of the fork server's "alive"
pipe (the server exits only when every copy is closed) and of the resource tracker's pipe,
nobody kills a hung cell, and the fork server's ``pymp-*`` temporary folder stays. Here:

- :func:`cell_lifeline`, first thing in a cell's process: closes its copy of the alive pipe
  (so the fork server sees end-of-file when the main process dies, and exits), asks the kernel
  to SIGKILL the cell when its parent — the fork server, single-threaded — dies
  (``prctl(PR_SET_PDEATHSIG)``, Linux), watches its result pipe from a thread (the main process
  gone ⇒ the pipe has no reader ⇒ ``poll`` reports an error ⇒ SIGKILL itself: covers the other
  platforms and a fork server that outlives it), and arms ``alarm()`` a little after
  ``--cell-timeout`` so that the timeout holds without any supervisor (SIGALRM's default action
  kills the process in the kernel: no Python code, GIL or parent is needed).
- Imported by the fork server (first in the server's preload list), this module watches the
  alive pipe from a thread: once the main process is gone, the server removes its socket and
  the ``pymp-*`` folder that held it, if nothing else is left there, and exits — even while it
  is still importing torch, before its own loop could notice; its cells die with it. The
  folder is shared: it is the temporary folder of the process that started the server, which
  its spawned children (e.g. Dask workers, whose own fork servers put their sockets there)
  inherit — so a server never removes what is not its own.
- The resource tracker then exits by itself: every holder of its pipe is gone.
"""

from __future__ import annotations

import atexit
import ctypes
import math
import os
import select
import signal
import socket
import sys
import threading
from typing import Any

PR_SET_PDEATHSIG = 1
#: seconds after --cell-timeout at which a cell stops itself (its supervisor kills it first)
ALARM_GRACE = 5.0


def die_with_parent() -> bool:
    """SIGKILL this process when the thread that forked it exits (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _release_forkserver_pipe() -> None:
    """Close this child's copy of the fork server's alive pipe (see the module docstring);
    nothing in a child not started by a fork server."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # private: the fd has no public handle
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        server._forkserver_alive_fd = None
        try:
            os.close(fd)
        except OSError:
            pass


def _watch(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: poll returns only on POLLERR / POLLHUP
    while True:
        try:
            if poller.poll():
                os.kill(os.getpid(), signal.SIGKILL)
        except InterruptedError:
            continue
        except OSError:
            return


def watch_reader(fd: int) -> threading.Thread:
    """A daemon thread that SIGKILLs this process once the pipe ``fd`` (write end) has no
    reader left, i.e. the process that collects the result is gone."""
    thread = threading.Thread(target=_watch, args=(fd,), name="blobench-lifeline", daemon=True)
    thread.start()
    return thread


def cell_lifeline(result_fd: int, cell_timeout: float | None) -> None:
    """Everything a cell's process does first so that it dies with its run (module docstring).
    ``result_fd``: the write end of the pipe that carries the record to the supervisor."""
    die_with_parent()
    _release_forkserver_pipe()
    watch_reader(result_fd)
    arm_alarm(cell_timeout)


def arm_alarm(cell_timeout: float | None) -> None:
    """Kill this process in the kernel (SIGALRM's default action) :data:`ALARM_GRACE` seconds
    after ``cell_timeout``; None (or infinite) disarms it. A worker that runs cell after cell
    re-arms it for each cell and disarms it between cells."""
    if cell_timeout is not None and math.isfinite(cell_timeout):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(max(1, math.ceil(cell_timeout + ALARM_GRACE)))
    else:
        signal.alarm(0)


# ------------------------------------------------------------- in the fork server only
def _server_frame() -> Any:
    """The frame of ``multiprocessing.forkserver.main`` when this module is imported by the
    fork server's preload, else None."""
    from multiprocessing import forkserver

    frame = sys._getframe()
    while frame is not None and frame.f_code is not forkserver.main.__code__:
        frame = frame.f_back
    return frame


def _listener_address(listener_fd: int) -> str | None:
    """The path of the server's socket when it lies in a ``pymp-*`` folder, else None."""
    try:
        with socket.socket(fileno=os.dup(listener_fd)) as sock:
            address = sock.getsockname()
    except OSError:
        return None
    folder = os.path.dirname(address) if isinstance(address, str) else ""
    return address if os.path.basename(folder).startswith("pymp-") else None


def _remove_socket(address: str) -> None:
    """Remove the server's socket, then its folder if that left it empty (module docstring)."""
    for remove, path in ((os.unlink, address), (os.rmdir, os.path.dirname(address))):
        try:
            remove(path)
        except OSError:  # gone already, or the folder still holds someone else's files
            return


def _server_exits_with_its_run(alive_r: int, address: str | None) -> None:
    """In the fork server: once every writer of the alive pipe is gone (the main process
    died; cells closed their copies), remove the server's socket (and its folder, if empty) and
    exit — also while the
    server is still importing its preload, before its own loop could notice."""
    poller = select.poll()
    poller.register(alive_r, select.POLLHUP)
    while True:
        try:
            if poller.poll():
                break
        except InterruptedError:
            continue
    if address is not None:
        _remove_socket(address)
    os._exit(0)  # its cells die with it (PR_SET_PDEATHSIG)


def _remove_in_process(address: str, pid: int) -> None:
    """At exit of the fork server only: every cell is forked from the server and inherits its
    exit handlers, and a cell that leaves through the interpreter's exit (``sys.exit`` inside a
    cell) must not remove the socket of the server that is still serving the run."""
    if os.getpid() == pid:
        _remove_socket(address)


def _in_server() -> None:
    frame = _server_frame()
    if frame is None:
        return
    address = _listener_address(frame.f_locals["listener_fd"])
    if address is not None:
        atexit.register(_remove_in_process, address, os.getpid())
    threading.Thread(target=_server_exits_with_its_run, args=(frame.f_locals["alive_r"], address),
                     name="blobench-lifeline", daemon=True).start()


_in_server()
