"""Where datasets live: the data root and the folder of each dataset.

The data root is, in order of precedence: the ``--data-dir`` option (``data_dir``
argument), the ``$BLOBENCH_DATA`` environment variable, the per-user cache
``$XDG_CACHE_HOME/blobench/data`` (``~/.cache/blobench/data`` when ``XDG_CACHE_HOME`` is
unset). Dataset ``X`` is read from ``<root>/X/`` when all its files are there, otherwise
from the first of its system-wide folders (e.g. ``/usr/share/datasets/fashion-mnist/``)
that holds them all.
"""

from __future__ import annotations

import os
from pathlib import Path

from blobench.toolkit.data.catalog import Dataset

ENV = "BLOBENCH_DATA"


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data root (see the module docstring); not created here."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "blobench" / "data"


def user_folder(ds: Dataset, data_dir: str | Path | None = None) -> Path:
    """``<root>/<name>``: where ``blobench data fetch`` writes the dataset."""
    return data_root(data_dir) / ds.name


def candidates(ds: Dataset, data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for the dataset, in order."""
    return [user_folder(ds, data_dir), *(Path(p) for p in ds.system_dirs)]


def locate(ds: Dataset, data_dir: str | Path | None = None) -> Path | None:
    """The first candidate folder holding every file of ``ds``, or None."""
    for folder in candidates(ds, data_dir):
        if all((folder / f.name).is_file() for f in ds.files):
            return folder
    return None
