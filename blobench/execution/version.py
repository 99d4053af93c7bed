"""Code versions: results are keyed by what actually ran, not by one file.

A cell's code version hashes every engine source file that can change its numbers
(``blobench/**/*.py`` but the command line, reports, workflows, scheduling and storage) together
with
the source files of its problem and algorithm entries, so an edit to a shared helper
invalidates every cached result it could affect (the stale-cache pitfall seen in benchopt).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parents[1]
#: engine files that cannot change a cell's numbers: the command line, the reporting and
#: workflow layers (reports, planning, tuning, reproductions), and the scheduling / storage
#: modules of the execution layer; left out of the hash so editing a report does not rerun
#: every cached cell. Any other file — including a new one — is hashed: the safe default.
NOT_RESULT_AFFECTING = frozenset({
    "__main__.py", "execution/_forkserver_preload.py", "execution/runner.py",
    "execution/isolation.py", "execution/progress.py", "execution/store.py",
})
NOT_RESULT_AFFECTING_LAYERS = frozenset({"cli", "reporting", "workflows"})


def _result_affecting(rel: Path) -> bool:
    return (rel.as_posix() not in NOT_RESULT_AFFECTING
            and rel.parts[0] not in NOT_RESULT_AFFECTING_LAYERS)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def engine_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(ENGINE_DIR.rglob("*.py")):
        rel = path.relative_to(ENGINE_DIR)
        if not _result_affecting(rel):
            continue
        h.update(rel.as_posix().encode())
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
