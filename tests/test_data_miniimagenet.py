"""miniImageNet in the data layer and in fewshot_conv4 (issue 20), on a tiny copy generated here.

The copy is written in the layout of Ravi & Larochelle's split files: ``train.csv`` /
``val.csv`` / ``test.csv`` with the header ``filename,label`` and rows such as
``n0153282900000005.jpg,n01532829``, and the images in ``images/`` as 84 × 84 RGB JPEGs.
Each class's images are one solid colour (JPEG keeps a flat colour to within a few levels),
so labels and order are checked against what was written. The real layout (64 / 16 / 20
classes of 600 images) is patched to the tiny copy's (3 / 1 / 2 classes of 4) except where
the test checks that it rejects an incomplete copy; the pinned SHA-256 of the real csvs
reject the generated ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from blobench.contracts.errors import DataMissing
from blobench.toolkit import fewshot
from blobench.toolkit.data import catalog, checksum, formats, load

SPLITS = {"train": 3, "val": 1, "test": 2}
PER_CLASS = 4


@pytest.fixture(autouse=True)
def _fresh_caches():
    load._cache.clear()
    checksum._verified.clear()
    yield
    load._cache.clear()
    checksum._verified.clear()


@pytest.fixture
def tiny_layout(monkeypatch):
    monkeypatch.setattr(formats, "MINI_IMAGENET_LAYOUT", SPLITS)
    monkeypatch.setattr(formats, "MINI_IMAGENET_PER_CLASS", PER_CLASS)


@pytest.fixture
def unpinned(monkeypatch):
    """The catalog entry without the real csvs' SHA-256 (the generated csvs differ)."""
    ds = catalog.dataset("miniimagenet")
    files = tuple(dataclasses.replace(f, sha256=None) for f in ds.files)
    monkeypatch.setitem(catalog.DATASETS, "miniimagenet", dataclasses.replace(ds, files=files))


def colour(k: int) -> tuple[int, int, int]:
    return (40 * k + 20, 200 - 30 * k, 60 + 25 * k)


def write_mini_imagenet(folder: Path, images: bool = True) -> Path:
    """Class k (numbered over the splits in order) is synset n0{k+1:07d}0 in solid colour(k)."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n_classes in SPLITS.items():
        lines = ["filename,label"]
        for _ in range(n_classes):
            wnid = f"n{k + 1:07d}0"
            for i in range(PER_CLASS):
                name = f"{wnid}{i + 1:08d}.jpg"
                lines.append(f"{name},{wnid}")
                if images:
                    Image.new("RGB", (84, 84), colour(k)).save(folder / "images" / name,
                                                             quality=95)
            k += 1
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    if not images:
        (folder / "images").rmdir()
    return folder


def test_catalog_entry():
    ds = catalog.dataset("miniimagenet")
    assert [f.name for f in ds.files] == ["train.csv", "val.csv", "test.csv"]
    assert all(f.sha256 and len(f.sha256) == 64 for f in ds.files)
    assert ds.folders == ("images",) and "ImageNet" in ds.license
    assert "Ravi" in ds.citation and "Vinyals" in ds.citation
    assert "twitter/meta-learning-lstm" in ds.source and "by hand" in ds.manual


def test_parser_reads_the_csvs_and_images(tmp_path, tiny_layout):
    folder = write_mini_imagenet(tmp_path / "mini")
    data = formats.read_mini_imagenet(folder)
    assert set(data) == {"train", "val", "test"}
    train, test = data["train"], data["test"]
    assert train.classes == ("n00000010", "n00000020", "n00000030")
    assert test.classes == ("n00000050", "n00000060")
    assert train.labels.tolist() == [k for k in range(3) for _ in range(PER_CLASS)]
    images = test.load([0, 7])
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 84, 84)
    for image, k in zip(images, (4, 5), strict=True):
        mean = image.double().mean(dim=(1, 2))
        assert torch.allclose(mean, torch.tensor(colour(k), dtype=torch.float64), atol=3)


def test_structure_is_verified(tmp_path, monkeypatch):
    folder = write_mini_imagenet(tmp_path / "mini")
    with pytest.raises(formats.DataFormatError, match=r"train\.csv: 3 classes, expected 64"):
        formats.read_mini_imagenet(folder)
    monkeypatch.setattr(formats, "MINI_IMAGENET_LAYOUT", SPLITS)
    with pytest.raises(formats.DataFormatError, match="do not have 600 images"):
        formats.read_mini_imagenet(folder)
    monkeypatch.setattr(formats, "MINI_IMAGENET_PER_CLASS", PER_CLASS)
    (folder / "images" / "n0000006000000002.jpg").unlink()
    with pytest.raises(formats.DataFormatError, match=r"1 images of test\.csv are missing "
                                                      r"\(first: images/n0000006000000002"):
        formats.read_mini_imagenet(folder)
    val = folder / "val.csv"
    val.write_text(val.read_text().replace("n00000040", "n00000010"))
    with pytest.raises(formats.DataFormatError, match=r"class n00000010 is also in train\.csv"):
        formats.read_mini_imagenet(folder)


def test_pinned_csv_checksums_reject_other_files(tmp_path, tiny_layout):
    root = tmp_path / "root"
    write_mini_imagenet(root / "miniimagenet")
    with pytest.raises(checksum.ChecksumError, match=r"train\.csv: SHA-256 .* 498519cd"):
        load.load_dataset("miniimagenet", root)


def test_missing_images_are_not_applicable_with_how_to_get_them(registry, monkeypatch,
                                                                 tmp_path, unpinned):
    """The csvs alone are not the dataset: the one-line message says to put the images in
    images/ by hand (ImageNet's terms) and what fetch does get."""
    write_mini_imagenet(tmp_path / "miniimagenet", images=False)
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    with pytest.raises(DataMissing) as err:
        registry.problem("fewshot_conv4")(size="quick", dataset="miniimagenet")
    message = str(err.value)
    assert message.startswith("data missing: put the 60,000 miniImageNet images")
    assert "by hand" in message and "blobench data fetch miniimagenet" in message
    assert "\n" not in message


def test_fewshot_conv4_builds_mini_imagenet_episodes(registry, tmp_path, monkeypatch,
                                                     tiny_layout, unpinned):
    """Meta-training classes = train.csv's, meta-test = test.csv's, no rotations by default;
    84 × 84 colour episodes; Conv-4 with 3 input channels and 5 × 5 × width features."""
    from blobench.bases.algorithm import cell_theta0

    write_mini_imagenet(tmp_path / "miniimagenet")
    monkeypatch.setenv("BLOBENCH_DATA", str(tmp_path))
    gen = torch.Generator().manual_seed(0)
    pool, train, test = fewshot.class_pool("miniimagenet", 3, 0, 0, gen, torch.float32)
    assert pool.shape == (5, 3, 3, 84, 84) and train == [0, 1, 2] and test == [3, 4]
    with pytest.raises(Exception, match="n_train_base must be 0 for miniimagenet"):
        fewshot.class_pool("miniimagenet", 3, 2, 0, gen, torch.float32)
    kw = {"size": "quick", "seed": 0, "dataset": "miniimagenet", "n_way": 2, "per_class": 4,
          "n_query": 3, "n_tasks": 2, "n_test_tasks": 2, "width": 2}
    p = registry.problem("fewshot_conv4")(**kw)
    assert p.support[0].shape == (2, 2, 3, 84, 84) and p.query[0].shape == (2, 6, 3, 84, 84)
    assert p.model.module[0].in_channels == 3
    lam = p.init_outer(torch.Generator().manual_seed(0))
    theta = cell_theta0(p, lam)
    assert torch.isfinite(p.inner_loss(theta, lam)) and torch.isfinite(p.outer_loss(theta, lam))
    assert 0.0 <= p.evaluate(theta, lam)["test_accuracy"] <= 1.0
    ridge = registry.problem("fewshot_ridge")(**kw)
    assert ridge.n_features == 2 * 5 * 5 + 1
    lam = ridge.init_outer(torch.Generator().manual_seed(0))
    assert ridge.exact_hypergradient(lam).shape == lam.shape
