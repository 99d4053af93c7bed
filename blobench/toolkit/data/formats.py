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

- **Image folders** (Omniglot, miniImageNet): PNG / JPEG files named by a layout (below),
  listed and checked eagerly, decoded on demand by Pillow (:class:`ImageSet`): a dataset of
  60,000 84 × 84 colour images is 1.3 GB decoded, and a few-shot pool needs a few thousand.

  - Omniglot (:func:`read_omniglot`): ``images_background/<alphabet>/<character>/*.png``
    (and ``images_evaluation/...``), from the extracted folder or straight from the zip
    archive of the same name. Checked: the alphabet and character counts of
    ``OMNIGLOT_LAYOUT`` (30 / 964 background, 20 / 659 evaluation), ``OMNIGLOT_DRAWINGS``
    = 20 drawings of every character, ``OMNIGLOT_SIDE`` = 105 pixels (first image).
  - miniImageNet (:func:`read_mini_imagenet`): ``train.csv`` / ``val.csv`` / ``test.csv``
    with the header ``filename,label`` (Ravi & Larochelle 2017) and ``images/<filename>``.
    Checked: ``MINI_IMAGENET_LAYOUT`` classes per split (64 / 16 / 20), ``MINI_IMAGENET_PER_CLASS``
    = 600 rows per class, no class in two splits, every listed image present, the first
    image ``MINI_IMAGENET_SIDE`` = 84 pixels square, RGB.

Every parser checks that the file holds exactly what its header (or record layout) says and
raises :class:`DataFormatError` naming the file otherwise (a truncated download, say).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from blobench.contracts.errors import UserError

_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CIFAR_RECORD = 1 + 3 * 32 * 32
#: {folder: (alphabets, characters)} of Omniglot (Lake et al. 2015)
OMNIGLOT_LAYOUT = {"images_background": (30, 964), "images_evaluation": (20, 659)}
OMNIGLOT_DRAWINGS = 20
OMNIGLOT_SIDE = 105
#: {split: classes} of miniImageNet (Ravi & Larochelle 2017)
MINI_IMAGENET_LAYOUT = {"train": 64, "val": 16, "test": 20}
MINI_IMAGENET_PER_CLASS = 600
MINI_IMAGENET_SIDE = 84
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


# ------------------------------------------------------------------ image folders
@dataclass(frozen=True)
class ImageSet:
    """Image files with integer class labels, decoded on demand.

    ``source`` is a folder or a zip archive; ``members`` the images' paths inside it (in
    the order of ``labels``); ``classes[k]`` the name of class k; ``mode`` the Pillow mode
    images are converted to (``"L"`` grey, ``"RGB"`` colour)."""

    source: Path
    members: tuple[str, ...]
    labels: torch.Tensor
    classes: tuple[str, ...]
    mode: str

    def __len__(self) -> int:
        return len(self.members)

    def load(self, index: torch.Tensor | list[int], side: int | None = None) -> torch.Tensor:
        """The images at ``index`` as uint8 (n × C × H × W); resized to ``side`` × ``side``
        with Lanczos resampling when given (MAML's Omniglot protocol: 105 → 28)."""
        from PIL import Image

        archive = zipfile.ZipFile(self.source) if self.source.is_file() else None
        out = []
        try:
            for i in torch.as_tensor(index).tolist():
                name = self.members[i]
                try:
                    raw = archive.read(name) if archive else (self.source / name).read_bytes()
                    with Image.open(io.BytesIO(raw)) as image:
                        image = image.convert(self.mode)
                        if side is not None and image.size != (side, side):
                            image = image.resize((side, side), Image.Resampling.LANCZOS)
                        array = np.asarray(image, dtype=np.uint8)
                except (OSError, KeyError) as exc:
                    raise DataFormatError(f"{self.source}: cannot decode {name} ({exc})"
                                          ) from None
                out.append(torch.from_numpy(array.copy()))
        finally:
            if archive is not None:
                archive.close()
        images = torch.stack(out)
        return images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)


def _check_side(images: ImageSet, side: int, channels: int) -> None:
    first = images.load([0])
    if tuple(first.shape[1:]) != (channels, side, side):
        raise DataFormatError(f"{images.source}: {images.members[0]} is "
                              f"{tuple(first.shape[1:])} (C, H, W), expected "
                              f"{(channels, side, side)}")


def read_omniglot(folder: str | Path, part: str) -> ImageSet:
    """``part`` (``images_background`` or ``images_evaluation``) of an Omniglot copy in
    ``folder`` — the extracted folder ``folder/part/`` if present, else the archive
    ``folder/part.zip`` — checked against the layout of the module docstring. Classes are
    the characters, ``alphabet/character``, in sorted order; images sorted within each."""
    folder = Path(folder)
    if (folder / part).is_dir():
        source = folder
        names = [p.relative_to(folder).as_posix() for p in (folder / part).glob("*/*/*.png")]
    else:
        source = folder / f"{part}.zip"
        try:
            with zipfile.ZipFile(source) as archive:
                names = [n for n in archive.namelist() if n.endswith(".png")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataFormatError(f"{source}: cannot read the zip archive ({exc}); the file "
                                  "is truncated or corrupted: delete it and fetch it again"
                                  ) from None
    by_class: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != part:
            raise DataFormatError(f"{source}: {name} is not {part}/<alphabet>/<character>/"
                                  "<drawing>.png")
        by_class.setdefault(f"{parts[1]}/{parts[2]}", []).append(name)
    alphabets = {c.split("/")[0] for c in by_class}
    want = OMNIGLOT_LAYOUT[part]
    if (len(alphabets), len(by_class)) != want:
        raise DataFormatError(f"{source}: {part} holds {len(alphabets)} alphabets / "
                              f"{len(by_class)} characters, expected {want[0]} / {want[1]} "
                              "(an incomplete copy: fetch it again)")
    short = sorted(c for c, v in by_class.items() if len(v) != OMNIGLOT_DRAWINGS)
    if short:
        raise DataFormatError(f"{source}: {len(short)} characters of {part} do not have "
                              f"{OMNIGLOT_DRAWINGS} drawings (first: {short[0]})")
    classes = tuple(sorted(by_class))
    members = tuple(n for c in classes for n in sorted(by_class[c]))
    labels = torch.arange(len(classes)).repeat_interleave(OMNIGLOT_DRAWINGS)
    images = ImageSet(source, members, labels, classes, "L")
    _check_side(images, OMNIGLOT_SIDE, 1)
    return images


def read_mini_imagenet(folder: str | Path) -> dict[str, ImageSet]:
    """{"train", "val", "test": ImageSet} of a miniImageNet copy in ``folder`` (the csvs and
    ``images/``), checked against the layout of the module docstring. Classes are the
    ImageNet synsets of each split in sorted order; images in the csv's order within each."""
    folder = Path(folder)
    out, seen = {}, {}
    for split, n_classes in MINI_IMAGENET_LAYOUT.items():
        path = folder / f"{split}.csv"
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0] != ["filename", "label"]:
            raise DataFormatError(f"{path}: expected the header 'filename,label'")
        if any(len(r) != 2 for r in rows[1:]):
            raise DataFormatError(f"{path}: a row without exactly two fields")
        by_class: dict[str, list[str]] = {}
        for name, label in rows[1:]:
            by_class.setdefault(label, []).append(name)
        if len(by_class) != n_classes:
            raise DataFormatError(f"{path}: {len(by_class)} classes, expected {n_classes}")
        short = sorted(c for c, v in by_class.items() if len(v) != MINI_IMAGENET_PER_CLASS)
        if short:
            raise DataFormatError(f"{path}: {len(short)} classes do not have "
                                  f"{MINI_IMAGENET_PER_CLASS} images (first: {short[0]})")
        for label in by_class:
            if label in seen:
                raise DataFormatError(f"{path}: class {label} is also in {seen[label]}.csv")
            seen[label] = split
        classes = tuple(sorted(by_class))
        members = tuple(f"images/{n}" for c in classes for n in by_class[c])
        missing = [m for m in members if not (folder / m).is_file()]
        if missing:
            raise DataFormatError(f"{folder}: {len(missing)} images of {split}.csv are missing "
                                  f"(first: {missing[0]})")
        labels = torch.arange(len(classes)).repeat_interleave(MINI_IMAGENET_PER_CLASS)
        out[split] = ImageSet(folder, members, labels, classes, "RGB")
        _check_side(out[split], MINI_IMAGENET_SIDE, 3)
    return out
