"""``blobench data fetch NAME``: download a dataset from its canonical source.

Each missing file of the dataset is streamed from its URL into a temporary file beside its
destination (``.<name>.part``) with a tqdm progress bar, hashed on the way, checked against
the registry's SHA-256 (files the registry does not pin get their digest recorded in
``SHA256SUMS``, see :mod:`blobench.toolkit.data.checksum`) and only then renamed into place
(``os.replace``, atomic on one file system): an interrupted or corrupted download never
leaves a file under the final name. Files the registry pins only by MD5 (Omniglot) are
checked against it. What a dataset needs and fetch cannot download (miniImageNet's
images) is named by the dataset's ``manual`` line in the error. Without network the error
is one line saying which files to put where by hand.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from blobench.contracts.errors import UserError
from blobench.toolkit.data import checksum
from blobench.toolkit.data.catalog import DataFile, Dataset
from blobench.toolkit.data.root import locate, present, user_folder

TIMEOUT = 30.0
_CHUNK = 1 << 16


class FetchError(UserError):
    """A download that could not be made (no network, HTTP error)."""


def _by_hand(ds: Dataset, folder: Path) -> str:
    names = ", ".join(f.name for f in ds.files)
    return f"put {names} in {folder} by hand (from {ds.source})"


def download(file: DataFile, folder: Path, progress: bool = True) -> Path:
    """Fetch one file into ``folder`` atomically and verify it; returns its path."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / file.name, folder / f".{file.name}.part"
    digest, md5 = hashlib.sha256(), hashlib.md5()
    try:
        with urllib.request.urlopen(file.url, timeout=TIMEOUT) as response, \
                open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=file.name,
                      disable=not progress) as bar:
                while block := response.read(_CHUNK):
                    out.write(block)
                    digest.update(block)
                    md5.update(block)
                    bar.update(len(block))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    got = digest.hexdigest()
    if file.sha256 is not None and got != file.sha256:
        part.unlink(missing_ok=True)
        raise checksum.ChecksumError(
            f"{final}: downloaded SHA-256 {got} does not match the expected {file.sha256} "
            f"(from {file.url}); nothing was written")
    if file.sha256 is None and file.md5 is not None and md5.hexdigest() != file.md5:
        part.unlink(missing_ok=True)
        raise checksum.ChecksumError(
            f"{final}: downloaded MD5 {md5.hexdigest()} does not match the expected {file.md5} "
            f"(from {file.url}); nothing was written")
    os.replace(part, final)
    if file.sha256 is None:
        checksum.record(folder, file.name, got)
    return final


def fetch(ds: Dataset, data_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Make every file of ``ds`` present and verified; returns the folder holding them.

    A dataset already present (in the data root or a system-wide copy) is only verified."""
    found = locate(ds, data_dir)
    if found is not None:
        for file in ds.files:
            checksum.verify(found, file)
        return found
    folder = user_folder(ds, data_dir)
    for file in ds.files:
        if present(folder, file):
            checksum.verify(folder, file)
            continue
        try:
            download(file, folder, progress)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FetchError(f"cannot download {file.url} ({reason}); "
                             f"{_by_hand(ds, folder)}") from None
    missing = [d for d in ds.folders if not (folder / d).is_dir()]
    if missing:
        raise FetchError(f"{ds.name}: the split files are in {folder}; {ds.manual}")
    return folder
