"""``kill -9`` of a run's main process takes its whole process tree with it (issue 18 item 2):
fork server, resource tracker and running cells die within seconds, a hung cell too, and no
``pymp-*`` temporary folder is left; a cell stops itself past its timeout with no supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process tree from /proc")
PLUGINS = str(Path(__file__).parent / "fault_plugins")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_kill_9_of_the_run_leaves_no_process_and_no_temp_folder(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    res = tmp_path / "res"
    argv = [sys.executable, "-m", "blobench", "run", "--plugins", PLUGINS, "-p", "ridge_ho",
            "-a", "fault_hang", "--seeds", "2", "--steps", "5", "--eval-every", "1",
            "--n-jobs", "2", "--cell-timeout", "600", "--no-progress", "--no-tuned",
            "--results", str(res)]
    proc = subprocess.Popen(argv, env={**os.environ, "TMPDIR": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree: set[int] = set()
    try:
        # main → resource tracker, fork server → 2 cells (each hung in its second step);
        # generous: a loaded machine takes long to start the server (it imports torch)
        def running() -> bool:
            tree.update(descendants(proc.pid))
            return len(tree) >= 4 and proc.poll() is None
        assert _wait_until(running, 240), f"the run did not start its cells: {tree}"
        time.sleep(1.0)
        tree.update(descendants(proc.pid))
        assert list(tmp.glob("pymp-*")), "the fork server's folder should exist while it runs"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    survivors = lambda: {pid for pid in tree if _alive(pid)}  # noqa: E731
    assert _wait_until(lambda: not survivors(), 5.0), (
        f"still running 5 s after kill -9: {survivors()}")
    assert not list(tmp.glob("pymp-*"))
    assert not list(res.glob("*.json"))  # the hung cells never finished


def _child(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


def test_cell_stops_itself_past_its_timeout_without_a_supervisor():
    from blobench.execution.lifeline import ALARM_GRACE

    child = _child("import os, time\n"
                   "from blobench.execution.lifeline import cell_lifeline\n"
                   "r, w = os.pipe()\n"  # it holds its own reader: only the alarm can stop it
                   "cell_lifeline(w, 0.5)\n"
                   "time.sleep(120)\n")
    t0 = time.monotonic()
    try:
        code = child.wait(timeout=ALARM_GRACE + 60)
    finally:
        child.kill()
    assert code == -signal.SIGALRM, child.stderr.read()
    assert time.monotonic() - t0 >= ALARM_GRACE


def test_cell_dies_once_nobody_reads_its_result():
    r, w = os.pipe()
    child = _child("import sys, time\n"
                   "from blobench.execution.lifeline import cell_lifeline\n"
                   f"cell_lifeline({w}, None)\n"
                   "print('ready', file=sys.stderr, flush=True)\n"
                   "time.sleep(120)\n", pass_fds=(w,))
    os.close(w)
    try:
        assert child.stderr.readline().strip() == b"ready"
        os.close(r)  # the supervisor is gone
        code = child.wait(timeout=30)
    finally:
        child.kill()
    assert code == -signal.SIGKILL


def test_a_write_cut_by_kill_9_leaves_no_record_and_the_next_writer_sweeps_it(tmp_path):
    import socket

    from blobench.execution.store import ResultsStore

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    orphan = tmp_path / f".tmp-{dead.pid}@{host}@abc.json"  # a dead writer of this host
    live = tmp_path / f".tmp-{os.getpid()}@{host}@def.json"  # a write in progress
    remote = tmp_path / f".tmp-{dead.pid}@another-host@ghi.json"  # not ours to judge
    for path in (orphan, live, remote):
        path.write_text('{"half": ')
    store = ResultsStore(tmp_path)
    assert list(store.records()) == [] and store.corrupt == []  # never read as records
    store.write({"key": "ab" * 12, "status": "ok"})
    assert not orphan.exists() and live.exists() and remote.exists()


def test_a_server_removes_its_socket_and_only_an_empty_folder(tmp_path):
    """A fork server's socket lies in the temporary folder of the process that started it,
    which spawned children (Dask workers) inherit and put their own servers' sockets in: a
    server that exits removes its socket, and the folder only when nothing else is left — a
    Dask worker's server closing must not take the run's own server socket with it."""
    from blobench.execution.lifeline import _remove_socket

    folder = tmp_path / "pymp-shared"
    folder.mkdir()
    mine, other = folder / "listener-mine", folder / "listener-other"
    mine.touch()
    other.touch()
    _remove_socket(str(mine))
    assert not mine.exists() and other.exists()
    _remove_socket(str(other))
    assert not folder.exists()
    _remove_socket(str(other))  # already gone: nothing raised
