"""SHA-256 verification of dataset files.

A file is accepted when its SHA-256 equals the one the registry pins, or — for files the
registry does not pin (``sha256=None``) — the one recorded in the folder's ``SHA256SUMS``
when it was fetched, or else the MD5 the registry pins where the source publishes only
that (Omniglot's archives) (``<hex>  <name>`` lines, the ``sha256sum`` format). A verified
(path, size, mtime) is remembered for the life of the process so repeated loads do not
re-hash hundreds of megabytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from blobench.contracts.errors import UserError
from blobench.toolkit.data.catalog import DataFile

SUMS = "SHA256SUMS"
_verified: set[tuple[str, int, int]] = set()


class ChecksumError(UserError):
    """A dataset file whose content is not the expected one."""


def sha256(path: Path, chunk: int = 1 << 20, algorithm: str = "sha256") -> str:
    """Hex digest of the file (``algorithm``: any of :mod:`hashlib`'s, e.g. ``md5``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def recorded(folder: Path) -> dict[str, str]:
    """{file name: SHA-256} from ``folder/SHA256SUMS`` ({} when absent)."""
    sums = folder / SUMS
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def record(folder: Path, name: str, digest: str) -> None:
    """Add or replace ``name``'s line of ``folder/SHA256SUMS``."""
    sums = recorded(folder)
    sums[name] = digest
    (folder / SUMS).write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))


def expected(folder: Path, file: DataFile) -> str | None:
    """The SHA-256 ``file`` must have in ``folder``: pinned, else recorded, else None."""
    return file.sha256 or recorded(folder).get(file.name)


def verify(folder: Path, file: DataFile) -> None:
    """Raise :class:`ChecksumError` naming the file when its SHA-256 (or, where the source
    publishes only that, its MD5) is not the expected one. A file with no expected digest
    is accepted as is; an archive present only as its extracted folder has nothing to hash
    (its parser checks its structure)."""
    path = folder / file.name
    if not path.is_file() and file.unpacked is not None:
        return
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    want, algorithm = expected(folder, file), "sha256"
    if want is None and file.md5 is not None:
        want, algorithm = file.md5, "md5"
    if want is None or key in _verified:
        return
    got = sha256(path, algorithm=algorithm)
    if got != want.lower():
        label = "SHA-256" if algorithm == "sha256" else algorithm.upper()
        raise ChecksumError(f"{path}: {label} {got} does not match the expected "
                            f"{want} (truncated or corrupted download: delete it and fetch it "
                            "again)")
    _verified.add(key)
