"""The results store: one JSON record per finished cell, written atomically.

Each record is ``<root>/<key>.json`` where ``key`` hashes the cell's resolved config and the
code version. A write goes to a temporary file in the same folder, is flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX), so a reader never sees half a
record and two runs writing the same store do not corrupt it. Every record carries the
SHA-256 of its own payload; a record that fails to parse or to match it is reported as
corrupt and its cell is run again — never silently read. JSON holds no executable content.
Anyone can recompute that checksum, so a record is also checked against the fields and types
readers rely on (:func:`blobench.execution.validate.record_problem`) and its key against its file
name;
only regular files are read (a FIFO named ``*.json`` does not block a reader). A writer
killed mid-write leaves a ``.tmp-<pid>@<host>@*.json`` file, never a record; the next writer
on that host removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blobench.contracts.errors import UserError
from blobench.execution.validate import KEY, record_problem, writable_folder

CHECKSUM = "_sha256"
#: version of the record layout (field names and meanings: docs/results-schema.md); every
#: record written by the harness carries it as ``"schema"`` (records without it are version 1)
SCHEMA_VERSION = 2


#: every corrupt record (file -> reason) any store of this process met: a command reports
#: them once, whichever of its store objects read them (blobench.cli)
CORRUPT_MET: dict[str, str] = {}


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def _read_regular(path: Path) -> str:
    """The text of ``path`` if it is a regular file; never blocks on a FIFO or a device."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        return fh.read().decode()


def _tmp_prefix() -> str:
    """Temporary files are ``.tmp-<pid>@<host>@<random>.json``: their writer is known."""
    return f".tmp-{os.getpid()}@{socket.gethostname()}@"


def sweep_orphans(root: Path) -> bool:
    """Remove the temporary files left in ``root`` by writers of this host that died
    mid-write (``kill -9``); a live writer's file, or another host's, is left alone."""
    host = socket.gethostname()
    for path in root.glob(".tmp-*@*@*.json"):
        pid, _, rest = path.name[len(".tmp-"):].partition("@")
        if not pid.isdigit() or rest.partition("@")[0] != host:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:  # alive (another user's) or unknowable: keep it
            pass
    return True


class ResultsStore:
    """A folder of cell records; see the module docstring."""

    def __init__(self, root: Path | str):
        if not str(root).strip():
            raise UserError("results folder: empty name (give a folder, e.g. --results results)")
        self.root = writable_folder("results folder", root)  # created by the first write
        #: (file, reason) of every corrupt record met so far
        self.corrupt: list[tuple[str, str]] = []
        self._swept = False

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        """Write ``record`` (which must hold ``key``) atomically; returns its path."""
        payload = {k: v for k, v in record.items() if k != CHECKSUM}
        payload[CHECKSUM] = hashlib.sha256(_canonical(payload)).hexdigest()
        if not KEY.fullmatch(str(record["key"])):
            raise ValueError(f"record key {record['key']!r} is not a hexadecimal hash")
        target = self.path(record["key"])
        if not self._swept:
            self.root.mkdir(parents=True, exist_ok=True)
            self._swept = sweep_orphans(self.root)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=_tmp_prefix(), suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh, sort_keys=True, default=str)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def _reject(self, path: Path, reason: str) -> None:
        self.corrupt.append((str(path), reason))
        CORRUPT_MET.setdefault(str(path), reason)

    def load(self, key: str) -> dict[str, Any] | None:
        """The record for ``key``, or None if absent or corrupt (corrupt ones are reported)."""
        return self._read(self.path(key), key)

    def _read(self, path: Path, key: str | None = None) -> dict[str, Any] | None:
        try:
            text = _read_regular(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._reject(path, f"unreadable: {exc.strerror or exc}")
            return None
        except UnicodeDecodeError:
            self._reject(path, "not text (binary content)")
            return None
        try:
            payload = json.loads(text)
            stored = payload.pop(CHECKSUM)
        except (ValueError, KeyError, AttributeError, TypeError):
            self._reject(path, "not a complete JSON record")
            return None
        if hashlib.sha256(_canonical(payload)).hexdigest() != stored:
            self._reject(path, "checksum mismatch")
            return None
        problem = record_problem(payload)
        if problem is None and payload["key"] != (key or path.stem):
            problem = f"key {payload['key']!r} does not match the file name"
        if problem:
            self._reject(path, f"invalid record: {problem}")
            return None
        return payload

    def records(self) -> Iterator[dict[str, Any]]:
        """Every valid record (corrupt ones are reported in :attr:`corrupt`)."""
        for path in sorted(self.root.glob("*.json")):
            if path.name.startswith(".tmp-"):
                continue
            record = self._read(path)
            if record is not None:
                yield record
