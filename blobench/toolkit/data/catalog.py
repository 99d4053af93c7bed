"""The dataset registry: what each dataset is, where it comes from, and how it is read.

Each :class:`Dataset` declares its files (name, canonical URL, SHA-256), license, citation,
canonical source page, the folders of system-wide copies (Debian's ``dataset-fashion-mnist``
installs Fashion-MNIST under ``/usr/share/datasets/fashion-mnist/``) and a parser mapping
the folder holding the files to a dict of tensors:

- images (IDX, CIFAR): ``x_train`` / ``x_test`` uint8 (n × 28 × 28, or n × 3 × 32 × 32),
  ``y_train`` / ``y_test`` int64 class indices;
- svmlight: ``x_train`` (and ``x_test`` when the dataset has a test file) float64 sparse CSR,
  ``y_train`` / ``y_test`` float64 labels as written in the file;
- image folders (Omniglot, miniImageNet): one :class:`~blobench.toolkit.data.formats.ImageSet`
  per split (``background`` / ``evaluation``; ``train`` / ``val`` / ``test``), the images
  decoded on demand (:meth:`ImageSet.load`), their class labels and class names at hand.

**Omniglot** (Lake, Salakhutdinov & Tenenbaum 2015): the two archives of the authors'
repository, ``images_background.zip`` (30 alphabets, 964 characters) and
``images_evaluation.zip`` (20 alphabets, 659 characters), 20 drawings of every character,
105 × 105 black-and-white PNGs, laid out ``images_{background,evaluation}/<alphabet>/
<character>/<drawing>.png``. Either the archives or their extracted folders (the canonical
layout) are read. The source publishes no SHA-256; the archives' MD5s
(``68d2efa1b9178cc56df9314c21c6e718``, ``6b91aef0f799c5bb55b94e3f2daec811``) are the ones
torchvision's Omniglot loader pins, so an archive is checked against them; an extracted
copy has no checksum and its structure is verified instead (alphabet, character and
drawing counts, image size: :func:`~blobench.toolkit.data.formats.read_omniglot`).

**miniImageNet** (Vinyals et al. 2016; the split of Ravi & Larochelle 2017): the split
files ``train.csv`` / ``val.csv`` / ``test.csv`` (``filename,label`` rows; 64 / 16 / 20
ImageNet classes, 600 images each) of Ravi & Larochelle's repository (their SHA-256 pinned
here are those of the files in that repository as last changed in commit 468bda8,
2017-02-06) and the folder
``images/`` holding the 60,000 images, resized to 84 × 84, named as in the csvs
(``n0153282900000005.jpg``: the layout of the commonly distributed archive; the pickle
layouts are not read — no pickle, ever). The images come from ImageNet (ILSVRC-2012),
whose terms of access forbid redistribution: blobench cannot download them, the csvs it
can. No checksums of the images exist: their structure is verified
(:func:`~blobench.toolkit.data.formats.read_mini_imagenet`).

A file whose ``sha256`` is None is not pinned here (the LIBSVM site publishes no checksums):
:func:`blobench.toolkit.data.fetch.fetch` records the SHA-256 of what it downloaded in the dataset
folder's ``SHA256SUMS`` and every later read verifies against that record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from blobench.contracts.errors import unknown_name
from blobench.toolkit.data import formats

Tensors = dict[str, torch.Tensor]
#: what a parser returns: tensors, or for folders of image files (Omniglot, miniImageNet)
#: :class:`~blobench.toolkit.data.formats.ImageSet`s decoded on demand
Data = dict[str, "torch.Tensor | formats.ImageSet"]


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its name in the dataset folder, canonical URL, SHA-256; the MD5
    when the source publishes only that (``md5``); for an archive, the folder it extracts
    to (``unpacked``): either the archive or that folder makes the file present (the
    extracted copy has no checksum; its parser verifies its structure instead)."""

    name: str
    url: str
    sha256: str | None
    md5: str | None = None
    unpacked: str | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    files: tuple[DataFile, ...]
    license: str
    citation: str
    source: str
    parser: Callable[[Path], Data]
    system_dirs: tuple[str, ...] = field(default_factory=tuple)
    #: folders that must exist beside the files and that ``blobench data fetch`` cannot
    #: download (miniImageNet's images: ImageNet's terms of access)
    folders: tuple[str, ...] = field(default_factory=tuple)
    #: how to get what fetch cannot download (one line; the DataMissing message)
    manual: str = ""


def _idx_pair(folder: Path) -> Tensors:
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        out[f"x_{split}"] = formats.read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        out[f"y_{split}"] = formats.read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").long()
        if out[f"x_{split}"].shape[0] != out[f"y_{split}"].shape[0]:
            raise formats.DataFormatError(f"{folder}: {split} images and labels differ in count")
    return out


def _cifar10(folder: Path) -> Tensors:
    archive = folder / "cifar-10-binary.tar.gz"
    x_tr, y_tr = formats.read_cifar_binary(archive, [f"data_batch_{k}.bin" for k in range(1, 6)])
    x_te, y_te = formats.read_cifar_binary(archive, ["test_batch.bin"])
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def _svmlight(train: str, test: str | None = None) -> Callable[[Path], Tensors]:
    def parse(folder: Path) -> Tensors:
        x, y = formats.read_svmlight(folder / train)
        out = {"x_train": x, "y_train": y}
        if test is not None:
            out["x_test"], out["y_test"] = formats.read_svmlight(folder / test, x.shape[1])
        return out
    return parse


def _idx_files(base: str, digests: tuple[str, str, str, str]) -> tuple[DataFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(DataFile(n, base + n, d) for n, d in zip(names, digests, strict=True))


def _omniglot(folder: Path) -> Data:
    return {split: formats.read_omniglot(folder, f"images_{split}")
            for split in ("background", "evaluation")}


def _mini_imagenet(folder: Path) -> Data:
    return formats.read_mini_imagenet(folder)


_OMNIGLOT = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
_RAVI = ("https://raw.githubusercontent.com/twitter/meta-learning-lstm/master/data/"
         "miniImagenet/")
_LIBSVM = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/"
_LIBSVM_CITE = ("Chang & Lin 2011, LIBSVM: a library for support vector machines, ACM TIST "
                "2(3); data page https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/")

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset(
        "fashion_mnist", "Zalando Fashion-MNIST: 60,000 + 10,000 grey 28×28 images, 10 classes",
        _idx_files("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")),
        "MIT", "Xiao, Rasul & Vollgraf 2017, Fashion-MNIST, arXiv:1708.07747",
        "https://github.com/zalandoresearch/fashion-mnist", _idx_pair,
        ("/usr/share/datasets/fashion-mnist",)),
    Dataset(
        "mnist", "MNIST handwritten digits: 60,000 + 10,000 grey 28×28 images, 10 classes",
        _idx_files("https://storage.googleapis.com/cvdf-datasets/mnist/", (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
        "CC BY-SA 3.0 (as stated by LeCun & Cortes)",
        "LeCun, Bottou, Bengio & Haffner 1998, Proc. IEEE 86(11)",
        "http://yann.lecun.com/exdb/mnist/", _idx_pair, ("/usr/share/datasets/mnist",)),
    Dataset(
        "cifar10", "CIFAR-10 binary version: 50,000 + 10,000 colour 32×32 images, 10 classes",
        (DataFile("cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary"
                  ".tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),),
        "no license stated by the authors (research use; cite the report)",
        "Krizhevsky 2009, Learning multiple layers of features from tiny images, tech. report",
        "https://www.cs.toronto.edu/~kriz/cifar.html", _cifar10),
    Dataset(
        "ijcnn1", "IJCNN 2001 challenge (LIBSVM binary): 49,990 train + 91,701 test, 22 features",
        (DataFile("ijcnn1.bz2", _LIBSVM + "binary/ijcnn1.bz2", None),
         DataFile("ijcnn1.t.bz2", _LIBSVM + "binary/ijcnn1.t.bz2", None)),
        "no license stated (LIBSVM data page; research use, cite the sources)",
        "Prokhorov 2001, IJCNN 2001 neural network competition; " + _LIBSVM_CITE,
        _LIBSVM + "binary.html#ijcnn1", _svmlight("ijcnn1.bz2", "ijcnn1.t.bz2")),
    Dataset(
        "covtype", "UCI forest cover type (LIBSVM multiclass, scaled to [0, 1]): 581,012 × 54, "
        "7 classes", (DataFile("covtype.scale01.bz2", _LIBSVM + "multiclass/covtype.scale01.bz2",
                               None),),
        "CC BY 4.0 (UCI Machine Learning Repository)",
        "Blackard & Dean 1999, Computers and Electronics in Agriculture 24(3); " + _LIBSVM_CITE,
        _LIBSVM + "multiclass.html#covtype", _svmlight("covtype.scale01.bz2")),
    Dataset(
        "news20", "20 Newsgroups, binary, tf-idf (LIBSVM news20.binary): 19,996 × 1,355,191 "
        "sparse", (DataFile("news20.binary.bz2", _LIBSVM + "binary/news20.binary.bz2", None),),
        "no license stated (LIBSVM data page; research use, cite the sources)",
        "Keerthi & DeCoste 2005, JMLR 6; Lang 1995 (20 Newsgroups); " + _LIBSVM_CITE,
        _LIBSVM + "binary.html#news20.binary", _svmlight("news20.binary.bz2")),
    Dataset(
        "omniglot", "Omniglot: 1,623 handwritten characters of 50 alphabets, 20 drawings each "
        "(105×105 PNG); background 964 / evaluation 659 characters",
        (DataFile("images_background.zip", _OMNIGLOT + "images_background.zip", None,
                  "68d2efa1b9178cc56df9314c21c6e718", "images_background"),
         DataFile("images_evaluation.zip", _OMNIGLOT + "images_evaluation.zip", None,
                  "6b91aef0f799c5bb55b94e3f2daec811", "images_evaluation")),
        "MIT (brendenlake/omniglot repository)",
        "Lake, Salakhutdinov & Tenenbaum 2015, Human-level concept learning through "
        "probabilistic program induction, Science 350(6266)",
        "https://github.com/brendenlake/omniglot", _omniglot),
    Dataset(
        "miniimagenet", "miniImageNet (Ravi & Larochelle split): 100 ImageNet classes × 600 "
        "images 84×84; 64 train / 16 val / 20 test classes",
        tuple(DataFile(f"{split}.csv", _RAVI + f"{split}.csv", digest) for split, digest in (
            ("train", "498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f"),
            ("val", "5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9"),
            ("test", "2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa"))),
        "split csvs: MIT (Twitter, twitter/meta-learning-lstm); images: ImageNet terms of "
        "access (non-commercial research, no redistribution)",
        "Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, Matching networks for one "
        "shot learning, NeurIPS; split: Ravi & Larochelle 2017, Optimization as a model for "
        "few-shot learning, ICLR",
        "https://github.com/twitter/meta-learning-lstm/tree/master/data/miniImagenet",
        _mini_imagenet, folders=("images",),
        manual="put the 60,000 miniImageNet images (84×84, named as in the csvs) in "
        "images/ by hand — ImageNet's terms forbid redistribution (https://image-net.org); "
        "`blobench data fetch miniimagenet` gets the split csvs"),
)}


def dataset(name: str) -> Dataset:
    """The registered dataset ``name`` (UserError listing the valid names otherwise)."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]
