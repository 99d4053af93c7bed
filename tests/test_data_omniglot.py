"""Omniglot in the data layer and in fewshot_conv4 (issue 20), on a tiny copy generated here.

The copy is written in the canonical layout of Lake et al.'s repository —
``images_background/<alphabet>/<character>/<drawing>.png`` and ``images_evaluation/...``,
105 × 105 black-and-white PNGs — as folders and as the two zip archives. Every drawing
carries its (character, drawing) in its pixels so the parser's order and labels are
checked against what was written. The layout counts of the real dataset (30 / 964, 20 / 659,
20 drawings) are patched to the tiny copy's (2 / 4, 1 / 3, 3 drawings) except in the test
that checks they reject an incomplete copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from blobench.contracts.errors import DataMissing
from blobench.toolkit import fewshot
from blobench.toolkit.data import catalog, checksum, formats, load

LAYOUT = {"images_background": {"Alpha": 2, "Beta": 2}, "images_evaluation": {"Gamma": 3}}
DRAWINGS = 3


@pytest.fixture(autouse=True)
def _fresh_caches():
    load._cache.clear()
    checksum._verified.clear()
    yield
    load._cache.clear()
    checksum._verified.clear()


@pytest.fixture
def tiny_layout(monkeypatch):
    monkeypatch.setattr(formats, "OMNIGLOT_LAYOUT",
                        {"images_background": (2, 4), "images_evaluation": (1, 3)})
    monkeypatch.setattr(formats, "OMNIGLOT_DRAWINGS", DRAWINGS)


def drawing(character: int, index: int) -> np.ndarray:
    """A 105 × 105 white page (True) with black marks (False): row 0 holds character + 1
    black pixels, row 1 index + 1, and a black block whose position depends on both."""
    page = np.ones((105, 105), dtype=bool)
    page[0, :character + 1] = False
    page[1, :index + 1] = False
    top = 10 + 8 * character
    page[top:top + 20, 10 + 25 * index:30 + 25 * index] = False
    return page


def write_omniglot(folder: Path, zipped: bool = False) -> Path:
    """The tiny copy (characters numbered in sorted order across both parts)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    character = 0
    for part, alphabets in LAYOUT.items():
        for alphabet, n_chars in alphabets.items():
            for c in range(n_chars):
                where = folder / part / alphabet / f"character{c + 1:02d}"
                where.mkdir(parents=True)
                for d in range(DRAWINGS):
                    Image.fromarray(drawing(character, d)).save(
                        where / f"{character:04d}_{d + 1:02d}.png")
                character += 1
        if zipped:
            with zipfile.ZipFile(folder / f"{part}.zip", "w") as archive:
                for png in sorted((folder / part).rglob("*.png")):
                    archive.write(png, png.relative_to(folder).as_posix())
            for png in sorted((folder / part).rglob("*.png"), reverse=True):
                png.unlink()
            for sub in sorted((folder / part).rglob("*"), reverse=True):
                sub.rmdir()
            (folder / part).rmdir()
    return folder


def decode(image: torch.Tensor) -> tuple[int, int]:
    """(character, drawing) written by :func:`drawing` into a 1 × 105 × 105 uint8 image."""
    black = image[0] == 0
    return int(black[0].sum()) - 1, int(black[1].sum()) - 1


def test_catalog_entry():
    ds = catalog.dataset("omniglot")
    assert "MIT" in ds.license and "Lake" in ds.citation and "brendenlake" in ds.source
    assert [f.name for f in ds.files] == ["images_background.zip", "images_evaluation.zip"]
    assert [f.unpacked for f in ds.files] == ["images_background", "images_evaluation"]
    # torchvision's pinned MD5s; the source publishes no SHA-256
    assert [f.md5 for f in ds.files] == ["68d2efa1b9178cc56df9314c21c6e718",
                                         "6b91aef0f799c5bb55b94e3f2daec811"]
    assert all(f.sha256 is None for f in ds.files)


@pytest.mark.parametrize("zipped", [False, True])
def test_parser_reads_the_canonical_layout(tmp_path, tiny_layout, zipped):
    folder = write_omniglot(tmp_path / "omniglot", zipped)
    background = formats.read_omniglot(folder, "images_background")
    evaluation = formats.read_omniglot(folder, "images_evaluation")
    assert background.classes == ("Alpha/character01", "Alpha/character02",
                                  "Beta/character01", "Beta/character02")
    assert len(background) == 4 * DRAWINGS and len(evaluation) == 3 * DRAWINGS
    assert background.labels.tolist() == [k for k in range(4) for _ in range(DRAWINGS)]
    images = background.load(range(len(background)))
    assert images.dtype == torch.uint8 and images.shape == (12, 1, 105, 105)
    assert set(torch.unique(images).tolist()) == {0, 255}
    written = [decode(im) for im in images]
    assert written == [(k, d) for k in range(4) for d in range(DRAWINGS)]
    assert [decode(im) for im in evaluation.load([0, 8])] == [(4, 0), (6, 2)]
    small = background.load([5], side=28)
    assert small.shape == (1, 1, 28, 28) and 0 < float(small.float().mean()) < 255


def test_structure_is_verified(tmp_path, monkeypatch):
    """The real counts reject the tiny copy; a missing drawing and a wrong image size are
    named."""
    folder = write_omniglot(tmp_path / "omniglot")
    with pytest.raises(formats.DataFormatError, match=r"2 alphabets / 4 characters, "
                                                      r"expected 30 / 964"):
        formats.read_omniglot(folder, "images_background")
    monkeypatch.setattr(formats, "OMNIGLOT_LAYOUT",
                        {"images_background": (2, 4), "images_evaluation": (1, 3)})
    monkeypatch.setattr(formats, "OMNIGLOT_DRAWINGS", DRAWINGS)
    next((folder / "images_evaluation" / "Gamma" / "character02").glob("*.png")).unlink()
    with pytest.raises(formats.DataFormatError, match=r"1 characters of images_evaluation "
                                                      r"do not have 3 drawings"):
        formats.read_omniglot(folder, "images_evaluation")
    monkeypatch.setattr(formats, "OMNIGLOT_SIDE", 100)
    with pytest.raises(formats.DataFormatError, match=r"expected \(1, 100, 100\)"):
        formats.read_omniglot(folder, "images_background")


def test_archive_md5_is_checked(tmp_path, monkeypatch, tiny_layout):
    """A generated archive is not the real one: its MD5 fails the pinned one; with the pin
    replaced by the archive's own MD5 it loads. An extracted copy has nothing to hash."""
    root = tmp_path / "root"
    folder = write_omniglot(root / "omniglot", zipped=True)
    with pytest.raises(checksum.ChecksumError, match=r"images_background\.zip: MD5 .* "
                                                     r"68d2efa1b9178cc56df9314c21c6e718"):
        load.load_dataset("omniglot", root)
    ds = catalog.dataset("omniglot")
    files = tuple(dataclasses.replace(f, md5=hashlib.md5((folder / f.name).read_bytes())
                                      .hexdigest()) for f in ds.files)
    monkeypatch.setitem(catalog.DATASETS, "omniglot", dataclasses.replace(ds, files=files))
    data = load.load_dataset("omniglot", root)
    assert len(data["background"].classes) == 4 and len(data["evaluation"].classes) == 3


def test_missing_omniglot_is_not_applicable_with_how_to_get_it(registry, monkeypatch,
                                                                tmp_path):
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    with pytest.raises(DataMissing) as err:
        registry.problem("fewshot_conv4")(size="quick", dataset="omniglot")
    message = str(err.value)
    assert message.startswith("data missing: run `blobench data fetch omniglot`")
    assert "\n" not in message


def test_pool_follows_the_finn_protocol(tmp_path, monkeypatch, tiny_layout):
    """Characters in catalog order (background, then evaluation); the first n_train_base
    (× 4 rotations) are the meta-training classes; drawings resized to 28 × 28 and
    standardized; a rotated class is the rotated drawings of its character."""
    write_omniglot(tmp_path / "omniglot")
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    gen = torch.Generator().manual_seed(0)
    pool, train, test = fewshot.class_pool("omniglot", DRAWINGS, 5, 0, gen, torch.float64)
    assert pool.shape == (7 * 4, DRAWINGS, 1, 28, 28)
    assert train == list(range(20)) and test == list(range(20, 28))
    assert torch.allclose(pool[1], torch.rot90(pool[0], 1, dims=(2, 3)))
    data = load.load_dataset("omniglot")
    raw = torch.cat([data["background"].load(range(12), 28),
                     data["evaluation"].load(range(9), 28)]).double() / 255
    # the pool is standardized over all 4 rotations of every drawing: the same mean, and
    # the unbiased std of 4n values whose sums are 4× those of the n drawn here
    n = raw.numel()
    std4 = raw.std() * ((n - 1) / n * 4 * n / (4 * n - 1)) ** 0.5
    standardized = (raw - raw.mean()) / std4
    for k in (0, 4, 6):  # characters of both parts
        drawn = pool[4 * k]
        for image in drawn:
            distances = (standardized[DRAWINGS * k:DRAWINGS * (k + 1)] - image).abs().amax(
                dim=(1, 2, 3))
            assert float(distances.min()) < 1e-10
    with pytest.raises(Exception, match="per_class=4 exceeds the 3 images"):
        fewshot.class_pool("omniglot", 4, 5, 0, gen, torch.float64)


def test_fewshot_conv4_builds_omniglot_episodes(registry, tmp_path, monkeypatch, tiny_layout):
    """5-way 1-shot episodes (of the 20 meta-training classes: 5 characters × 4 rotations)
    of 28 × 28 drawings, MAML's Conv-4 on one channel; one MAML outer step runs;
    fewshot_ridge builds on the same data."""
    from blobench.bases.algorithm import cell_theta0

    write_omniglot(tmp_path / "omniglot")
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    kw = {"size": "quick", "seed": 0, "dataset": "omniglot", "per_class": 3, "n_query": 2,
          "n_tasks": 2, "n_test_tasks": 3, "width": 4, "n_train_base": 5}
    p = registry.problem("fewshot_conv4")(**kw)
    assert p.support[0].shape == (2, 5, 1, 28, 28) and p.query[0].shape == (2, 10, 1, 28, 28)
    assert p.test_support[0].shape == (3, 5, 1, 28, 28)
    assert p.support[1][0].tolist() == [0, 1, 2, 3, 4]
    assert p.model.module[0].in_channels == 1
    lam = p.init_outer(torch.Generator().manual_seed(0))
    alg = registry.algorithm("maml")()
    state = alg.step(p, alg.init(p, cell_theta0(p, lam), lam, torch.Generator()))
    assert torch.isfinite(state.lam).all() and not torch.equal(state.lam, lam)
    assert 0.0 <= p.evaluate(state.theta, state.lam)["test_accuracy"] <= 1.0
    ridge = registry.problem("fewshot_ridge")(**kw)
    assert ridge.n_features == 4 + 1
