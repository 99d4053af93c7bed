"""Parsers of the on-disk formats of the datasets (no pickle, ever).

- **IDX** (LeCun et al., the MNIST format; also Fashion-MNIST), plain or gzipped: a 4-byte
  magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the
  values in C order, big-endian. Types: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
  0x0D float32, 0x0E float64.
- **svmlight / libsvm** (``label idx:value ...`` per line, 1-based indices), plain, ``.gz``
  or ``.bz2``: read by :func:`sklearn.datasets.load_svmlight_file`, returned as a torch
  sparse CSR matrix and a float label vector.
- **CIFAR-10 binary version** (Krizhevsky 2009, ``cifar-10-binary.tar.gz``): records of
  1 label byte + 3 072 pixel bytes (1 024 red, 1 024 green, 1 024 blue, row-major 32 × 32),
  10 000 records per ``data_batch_k.bin`` / ``test_batch.bin``; read from the tar archive
  member by member, never extracted.

Every parser checks that the file holds exactly what its header (or record layout) says and
raises :class:`DataFormatError` naming the file otherwise (a truncated download, say).
"""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch

from blobench.contracts.errors import UserError

_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CIFAR_RECORD = 1 + 3 * 32 * 32
# torch's CSR tensors work for what we use (products, row selection, transpose)
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


class DataFormatError(UserError):
    """A data file that does not parse (truncated, corrupted or not the expected format)."""


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz or .bz2."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        if path.suffix == ".bz2":
            with bz2.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DataFormatError(f"{path}: cannot decompress ({exc}); the file is truncated or "
                              "corrupted: delete it and fetch it again") from None


def read_idx(path: str | Path) -> torch.Tensor:
    """The array stored in an IDX file (see the module docstring) as a torch tensor
    (uint8 stays uint8; the other types become their native-endian torch dtype)."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataFormatError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(f"{path}: IDX header says {shape} ({expected} bytes) but the "
                              f"file holds {len(raw)} bytes (truncated or corrupted)")
    values = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return torch.from_numpy(values.astype(dtype.newbyteorder("=")))


def read_svmlight(path: str | Path, n_features: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(X as a float64 sparse CSR tensor of shape n × d, labels as float64) of a
    svmlight/libsvm file; ``n_features`` fixes d (e.g. to align a test file with its
    training file)."""
    from sklearn.datasets import load_svmlight_file

    path = Path(path)
    try:
        x, y = load_svmlight_file(io.BytesIO(_read_bytes(path)), n_features=n_features,
                                  dtype=np.float64)
    except ValueError as exc:
        raise DataFormatError(f"{path}: not a valid svmlight/libsvm file ({exc})") from None
    x.sort_indices()
    crow = torch.from_numpy(x.indptr.astype(np.int64))
    col = torch.from_numpy(x.indices.astype(np.int64))
    return (torch.sparse_csr_tensor(crow, col, torch.from_numpy(x.data), size=x.shape,
                                    check_invariants=False),
            torch.from_numpy(np.asarray(y, dtype=np.float64)))


def _cifar_records(blob: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if len(blob) == 0 or len(blob) % CIFAR_RECORD:
        raise DataFormatError(f"{where}: {len(blob)} bytes is not a whole number of CIFAR "
                              f"records of {CIFAR_RECORD} bytes (truncated or corrupted)")
    rec = np.frombuffer(blob, np.uint8).reshape(-1, CIFAR_RECORD)
    images = rec[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), torch.from_numpy(rec[:, 0].astype(np.int64))


def read_cifar_binary(path: str | Path, members: list[str]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 n × 3 × 32 × 32, labels int64) of the named ``members`` (file names
    such as ``data_batch_1.bin``, looked up by base name) of a CIFAR-10 binary tar archive,
    concatenated in the given order."""
    path = Path(path)
    parts = []
    try:
        with tarfile.open(path, "r:*") as tar:
            by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for name in members:
                if name not in by_name:
                    raise DataFormatError(f"{path}: archive has no member {name!r}")
                fh = tar.extractfile(by_name[name])
                parts.append(_cifar_records(fh.read(), f"{path}:{name}"))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read the tar archive ({exc}); the file is "
                              "truncated or corrupted: delete it and fetch it again") from None
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
