"""The results store: one JSON record per finished cell, written atomically.

Each record is ``<root>/<key>.json`` where ``key`` hashes the cell's resolved config and the
code version. A write goes to a temporary file in the same folder, is flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX), so a reader never sees half a
record and two runs writing the same store do not corrupt it. Every record carries the
SHA-256 of its own payload; a record that fails to parse or to match it is reported as
corrupt and its cell is run again — never silently read. JSON holds no executable content.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blobench.errors import UserError

CHECKSUM = "_sha256"
#: version of the record layout (field names and meanings: docs/results-schema.md); every
#: record written by the harness carries it as ``"schema"`` (records without it are version 1)
SCHEMA_VERSION = 2


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


class ResultsStore:
    """A folder of cell records; see the module docstring."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"results folder {str(self.root)!r} cannot be created: "
                            f"{exc.strerror or exc}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UserError(f"results folder {str(self.root)!r} is not writable")
        #: (file, reason) of every corrupt record met so far
        self.corrupt: list[tuple[str, str]] = []

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        """Write ``record`` (which must hold ``key``) atomically; returns its path."""
        payload = {k: v for k, v in record.items() if k != CHECKSUM}
        payload[CHECKSUM] = hashlib.sha256(_canonical(payload)).hexdigest()
        target = self.path(record["key"])
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
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

    def load(self, key: str) -> dict[str, Any] | None:
        """The record for ``key``, or None if absent or corrupt (corrupt ones are reported)."""
        return self._read(self.path(key))

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.corrupt.append((str(path), f"unreadable: {exc}"))
            return None
        try:
            payload = json.loads(text)
            stored = payload.pop(CHECKSUM)
        except (ValueError, KeyError, AttributeError, TypeError):
            self.corrupt.append((str(path), "not a complete JSON record"))
            return None
        if hashlib.sha256(_canonical(payload)).hexdigest() != stored:
            self.corrupt.append((str(path), "checksum mismatch"))
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
