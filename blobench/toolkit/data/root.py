"""Where datasets live: the data root and the folder of each dataset.

The data root is, in order of precedence: the ``--data-dir`` option (``data_dir``
argument), the ``$BLOBENCH_DATA`` environment variable, the per-user cache
``$XDG_CACHE_HOME/blobench/data`` (``~/.cache/blobench/data`` when ``XDG_CACHE_HOME`` is
unset). Dataset ``X`` is read from ``<root>/X/`` when all its files are there, otherwise
from the first of its system-wide folders (e.g. ``/usr/share/datasets/fashion-mnist/``)
that holds them all. An archive counts as there when its extracted folder is (Omniglot's
``images_background/``), and a dataset's required folders (miniImageNet's ``images/``)
must be there too.
"""

from __future__ import annotations

import os
from pathlib import Path

from blobench.toolkit.data.catalog import DataFile, Dataset

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


def present(folder: Path, file: DataFile) -> bool:
    """``file`` is in ``folder``: the file itself or, for an archive, its extracted folder."""
    return (folder / file.name).is_file() or (
        file.unpacked is not None and (folder / file.unpacked).is_dir())


def locate(ds: Dataset, data_dir: str | Path | None = None) -> Path | None:
    """The first candidate folder holding every file (:func:`present`) and every required
    folder of ``ds``, or None."""
    for folder in candidates(ds, data_dir):
        if (all(present(folder, f) for f in ds.files)
                and all((folder / d).is_dir() for d in ds.folders)):
            return folder
    return None
