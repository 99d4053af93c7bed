"""``load_dataset(name)``: a registered dataset as tensors, or :class:`DataMissing`.

The dataset's folder is found as in :mod:`blobench.toolkit.data.root`, each file verified
(:mod:`blobench.toolkit.data.checksum`), then parsed by the registry's parser. Parsed tensors are
kept for the life of the process (one cell builds train, validation and test splits from
one load); callers get copies, so changing them in place changes nothing else.
"""

from __future__ import annotations

from pathlib import Path

import torch

from blobench.contracts.errors import DataMissing
from blobench.toolkit.data import checksum
from blobench.toolkit.data.catalog import Data, dataset
from blobench.toolkit.data.root import candidates, locate

_cache: dict[tuple[str, str], Data] = {}


def status(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The folder holding every file of dataset ``name``, or None when it is missing."""
    return locate(dataset(name), data_dir)


def load_dataset(name: str, data_dir: str | Path | None = None) -> Data:
    """The tensors of dataset ``name`` (see :mod:`blobench.toolkit.data.catalog` for the keys).

    Raises :class:`~blobench.contracts.errors.DataMissing` ("data missing: run `blobench data fetch
    <name>`", or the dataset's ``manual`` line for what fetch cannot download) when no
    candidate folder holds all its files. Image folders come back as
    :class:`~blobench.toolkit.data.formats.ImageSet`s (immutable, shared)."""
    ds = dataset(name)
    folder = locate(ds, data_dir)
    if folder is None:
        looked = ", ".join(map(str, candidates(ds, data_dir)))
        if ds.manual:
            raise DataMissing(f"data missing: {ds.manual} (looked in {looked})")
        raise DataMissing.of(name, looked)
    key = (name, str(folder.resolve()))
    if key not in _cache:
        for file in ds.files:
            checksum.verify(folder, file)
        _cache[key] = ds.parser(folder)
    return {k: v.clone() if isinstance(v, torch.Tensor) and v.layout == torch.strided else v
            for k, v in _cache[key].items()}
