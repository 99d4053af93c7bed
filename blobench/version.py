"""Code versions: results are keyed by what actually ran, not by one file.

A cell's code version hashes every engine source file that can change its numbers
(``blobench/*.py`` but the command line, reports, scheduling and storage modules) together with
the source files of its problem and algorithm entries, so an edit to a shared helper
invalidates every cached result it could affect (the stale-cache pitfall seen in benchopt).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent
#: engine modules that cannot change a cell's numbers (command line, reports, scheduling,
#: storage): left out of the hash so editing a report does not rerun every cached cell.
#: Any other module — including a new one — is hashed: the safe default.
NOT_RESULT_AFFECTING = frozenset({
    "__main__.py", "_forkserver_preload.py", "bench.py", "check.py", "cli.py",
    "leaderboard.py", "plots.py", "reproduce.py", "results.py", "runner.py", "scaffold.py",
    "store.py", "tuning.py",
})


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def engine_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        if path.name in NOT_RESULT_AFFECTING:
            continue
        h.update(path.relative_to(ENGINE_DIR).as_posix().encode())
        h.update(_file_hash(path).encode())
    return h.hexdigest()[:12]


def code_version(*entry_files: Path) -> str:
    """Hash of the engine and the given entry files (12 hex digits)."""
    h = hashlib.sha256(engine_hash().encode())
    for path in entry_files:
        h.update(_file_hash(Path(path)).encode())
    return h.hexdigest()[:12]


@functools.cache
def git_describe() -> str:
    """``git describe --always --dirty`` of the repository, or 'unknown'."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ENGINE_DIR,
                             capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
