"""The data layer (blobench/toolkit/data/): parsers on tiny files written here in each real format,
checksums, atomic fetch, data-root precedence, and the not_applicable path of missing data."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from blobench.contracts.errors import DataMissing, NotApplicable
from blobench.toolkit.data import catalog, checksum, formats, load, root
from blobench.toolkit.data.catalog import DataFile, Dataset
from blobench.toolkit.data.fetch import FetchError, fetch

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written from the format's definition (magic, big-endian dims, values)."""
    codes = {np.dtype("uint8"): 0x08, np.dtype("int32"): 0x0C, np.dtype("float64"): 0x0E}
    head = bytes([0, 0, codes[array.dtype], array.ndim])
    head += b"".join(struct.pack(">I", n) for n in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(autouse=True)
def _fresh_caches():
    load._cache.clear()
    checksum._verified.clear()
    yield
    load._cache.clear()
    checksum._verified.clear()


# ---------------------------------------------------------------------------- parsers
@pytest.mark.parametrize("dtype", ["uint8", "int32", "float64"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.integers(0, 255, (3, 4, 5)) if dtype != "float64"
             else rng.normal(size=(3, 4, 5))).astype(dtype)
    blob = idx_bytes(array)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    out = formats.read_idx(path)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out.numpy(), array)


def test_idx_truncated_names_the_file(tmp_path):
    blob = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 20))
    path = tmp_path / "cut.idx"
    path.write_bytes(blob[:-7])
    with pytest.raises(formats.DataFormatError, match=r"cut\.idx.*truncated"):
        formats.read_idx(path)
    gz = tmp_path / "cut.idx.gz"
    gz.write_bytes(gzip.compress(blob)[:-10])
    with pytest.raises(formats.DataFormatError, match=r"cut\.idx\.gz.*truncated"):
        formats.read_idx(gz)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(formats.DataFormatError, match="not an IDX"):
        formats.read_idx(path)


def test_svmlight(tmp_path):
    path = tmp_path / "d.svm"
    path.write_text("+1 1:0.5 3:2\n-1 2:1.5\n+1 1:1 4:-1\n")
    x, y = formats.read_svmlight(path)
    assert x.layout == torch.sparse_csr
    np.testing.assert_array_equal(x.to_dense().numpy(), [[0.5, 0, 2, 0], [0, 1.5, 0, 0],
                                                          [1, 0, 0, -1]])
    np.testing.assert_array_equal(y.numpy(), [1, -1, 1])
    x, _ = formats.read_svmlight(path, n_features=6)
    assert x.shape == (3, 6)
    bad = tmp_path / "bad.svm"
    bad.write_text("+1 1:0.5 3:\n")
    with pytest.raises(formats.DataFormatError, match=r"bad\.svm"):
        formats.read_svmlight(bad)


def _cifar_archive(path: Path, batches: dict[str, np.ndarray]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, records in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = records.nbytes
            tar.addfile(info, io.BytesIO(records.tobytes()))


def test_cifar_binary(tmp_path):
    rng = np.random.default_rng(1)
    records = rng.integers(0, 256, (4, formats.CIFAR_RECORD)).astype(np.uint8)
    records[:, 0] = [3, 0, 9, 1]
    archive = tmp_path / "c.tar.gz"
    _cifar_archive(archive, {"data_batch_1.bin": records[:3], "test_batch.bin": records[3:]})
    x, y = formats.read_cifar_binary(archive, ["data_batch_1.bin", "test_batch.bin"])
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [3, 0, 9, 1]
    # channel-major: the 1,024 red bytes come first, row by row
    assert int(x[2, 0, 0, 1]) == records[2, 2] and int(x[2, 1, 0, 0]) == records[2, 1 + 1024]
    cut = tmp_path / "cut.tar.gz"
    _cifar_archive(cut, {"data_batch_1.bin": records[:, :-5]})
    with pytest.raises(formats.DataFormatError, match=r"cut\.tar\.gz:data_batch_1\.bin"):
        formats.read_cifar_binary(cut, ["data_batch_1.bin"])


# ------------------------------------------------------------- data root and loading
def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(root.ENV, raising=False)
    assert root.data_root() == tmp_path / "xdg" / "blobench" / "data"
    monkeypatch.setenv(root.ENV, str(tmp_path / "env"))
    assert root.data_root() == tmp_path / "env"
    assert root.data_root(tmp_path / "cli") == tmp_path / "cli"


def _tiny_dataset(tmp_path: Path, digest_ok: bool = True) -> tuple[Dataset, Path]:
    """A registered-like IDX dataset whose canonical source is a file:// folder."""
    src = tmp_path / "source"
    src.mkdir()
    files = []
    arrays = {"train-images-idx3-ubyte.gz": np.arange(2 * 28 * 28, dtype=np.uint8) % 251,
              "train-labels-idx1-ubyte.gz": np.array([4, 7], dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": np.zeros(28 * 28, dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": np.array([1], dtype=np.uint8)}
    for name, flat in arrays.items():
        shaped = flat.reshape(-1, 28, 28) if "images" in name else flat
        blob = gzip.compress(idx_bytes(shaped), mtime=0)
        (src / name).write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest() if digest_ok else "0" * 64
        files.append(DataFile(name, (src / name).as_uri(), digest))
    ds = Dataset("tiny", "test", tuple(files), "MIT", "-", "nowhere", catalog._idx_pair)
    return ds, src


def test_fetch_verifies_and_writes_atomically(tmp_path, monkeypatch):
    ds, _ = _tiny_dataset(tmp_path)
    monkeypatch.setitem(catalog.DATASETS, "tiny", ds)
    with pytest.raises(DataMissing, match=r"data missing: run `blobench data fetch tiny`"):
        load.load_dataset("tiny", tmp_path / "root")
    folder = fetch(ds, tmp_path / "root", progress=False)
    assert folder == tmp_path / "root" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in ds.files)
    data = load.load_dataset("tiny", tmp_path / "root")
    assert data["x_train"].shape == (2, 28, 28) and data["y_train"].tolist() == [4, 7]
    data["y_train"][0] = 0  # a copy: the cache is not changed
    assert load.load_dataset("tiny", tmp_path / "root")["y_train"].tolist() == [4, 7]


def test_fetch_wrong_checksum_writes_nothing(tmp_path):
    ds, _ = _tiny_dataset(tmp_path, digest_ok=False)
    with pytest.raises(checksum.ChecksumError,
                       match=r"train-images-idx3-ubyte\.gz: downloaded SHA-256 .* nothing"):
        fetch(ds, tmp_path / "root", progress=False)
    assert list((tmp_path / "root" / "tiny").iterdir()) == []


def test_fetch_offline_says_where_to_put_files(tmp_path):
    ds, src = _tiny_dataset(tmp_path)
    for f in src.iterdir():
        f.unlink()
    with pytest.raises(FetchError) as err:
        fetch(ds, tmp_path / "root", progress=False)
    message = str(err.value)
    assert "\n" not in message and "by hand" in message
    assert str(tmp_path / "root" / "tiny") in message
    assert list((tmp_path / "root" / "tiny").iterdir()) == []


def test_corrupted_file_in_place_is_named(tmp_path, monkeypatch):
    ds, _ = _tiny_dataset(tmp_path)
    monkeypatch.setitem(catalog.DATASETS, "tiny", ds)
    folder = fetch(ds, tmp_path / "root", progress=False)
    target = folder / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-4])  # truncated after the download
    with pytest.raises(checksum.ChecksumError, match=r"t10k-images-idx3-ubyte\.gz: SHA-256"):
        load.load_dataset("tiny", tmp_path / "root")


def test_unpinned_file_is_recorded_then_verified(tmp_path, monkeypatch):
    ds, _ = _tiny_dataset(tmp_path)
    ds = Dataset("tiny", "test", tuple(DataFile(f.name, f.url, None) for f in ds.files),
                 "MIT", "-", "nowhere", catalog._idx_pair)
    monkeypatch.setitem(catalog.DATASETS, "tiny", ds)
    folder = fetch(ds, tmp_path / "root", progress=False)
    sums = checksum.recorded(folder)
    assert set(sums) == {f.name for f in ds.files}
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(checksum.ChecksumError, match="train-labels"):
        load.load_dataset("tiny", tmp_path / "root")


def test_missing_dataset_is_not_applicable_not_a_crash():
    assert issubclass(DataMissing, NotApplicable)
    from blobench.execution.harness import plan, run_cell
    from blobench.execution.registry import get_registry

    registry = get_registry()
    cells, _ = plan(registry, ["large_n_ho[dataset=covtype]"], ["implicit_cg"], [0])
    if load.status("covtype") is not None:
        pytest.skip("covtype is present on this machine")
    record = run_cell(registry, cells[0])
    assert record["status"] == "not_applicable"
    assert "data missing: run `blobench data fetch covtype`" in record["message"]


def test_cli_data_list(capsys, tmp_path):
    from blobench.cli import main

    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in catalog.DATASETS:
        assert name in out
    assert "MIT" in out and str(tmp_path) in out
    assert main(["data", "fetch", "nope"]) == 2


# ------------------------------------------------------------ the real Fashion-MNIST
@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    data = load.load_dataset("fashion_mnist")
    assert data["x_train"].shape == (60000, 28, 28) and data["x_test"].shape == (10000, 28, 28)
    assert torch.bincount(data["y_train"]).tolist() == [6000] * 10
    assert torch.bincount(data["y_test"]).tolist() == [1000] * 10


def test_run_data_dir_option_sets_the_data_root_the_cells_inherit(tmp_path, monkeypatch):
    """``blobench run --data-dir D`` (RunSpec.data_dir): the cells, forked after planning,
    read the data root from $BLOBENCH_DATA, so the option must set it before planning."""
    from blobench.cli import build_parser, run_spec
    from blobench.toolkit.data.root import ENV, data_root
    from blobench.workflows.api import RunSpec, prepare

    monkeypatch.delenv(ENV, raising=False)
    argv = ["run", "-p", "ridge_ho", "-a", "exact", "--data-dir", str(tmp_path / "d"),
            "--results", str(tmp_path / "r"), "--dry-run"]
    args = build_parser(argv).parse_args(argv)
    for key in ("config", "save_config"):
        setattr(args, key, getattr(args, key, None))
    spec = run_spec(args)
    assert spec.data_dir == str(tmp_path / "d")
    prepare(spec)
    assert data_root() == (tmp_path / "d").resolve()
    monkeypatch.delenv(ENV, raising=False)
    prepare(RunSpec(problems=["ridge_ho"], algorithms=["exact"], results=str(tmp_path / "r")))
    assert data_root() != (tmp_path / "d").resolve()
