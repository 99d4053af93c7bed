"""Few-shot task pools from image datasets of the data layer (toolkit for problem files).

Datasets (``dataset``):

- ``fashion_mnist``, ``mnist``, ``both`` (offline by default: Fashion-MNIST ships with
  Debian): every class of the chosen datasets under each of ``rotations`` rotations by
  multiples of 90° — a rotated class is a new class, the augmentation of the Omniglot
  protocol (Santoro et al. 2016; Finn et al. 2017 MAML §5.2). Base classes are split, not
  rotations: the first ``n_train_base`` base classes of each dataset (all their rotations)
  are the meta-training classes, the others the meta-test classes, so meta-test tasks never
  show a class, in any rotation, seen in meta-training. Fashion-MNIST alone with the
  defaults (7 base classes, 4 rotations): 28 meta-training, 12 meta-test classes
  (C(28, 5) = 98,280 distinct 5-way class sets). Images 28 × 28 grey.
- ``omniglot`` (Lake et al. 2015; data layer: the catalog's ``omniglot``): the 1,623
  characters, background set then evaluation set in the catalog's sorted order; the first
  ``n_train_base`` (default 1,200) are the meta-training characters, the other 423 the
  meta-test characters, each under 4 rotations — the protocol of Vinyals et al. 2016 and
  Finn et al. 2017 §5.2 (their 1,200 characters are a random draw; here the first 1,200 of
  the catalog order: all 964 background characters and 236 of the evaluation set).
  Drawings resized from 105 × 105 to ``OMNIGLOT_SIDE`` = 28 × 28 (Lanczos), as MAML.
- ``miniimagenet`` (Vinyals et al. 2016 with the split of Ravi & Larochelle 2017): the 64
  classes of ``train.csv`` are the meta-training classes, the 20 of ``test.csv`` the
  meta-test classes (``val.csv`` is not used), 84 × 84 colour images, no rotations (MAML
  §5.2); its split is fixed, so ``n_train_base`` must be left at 0.

``n_train_base = 0`` and ``rotations = 0`` mean the dataset's default (``DEFAULTS``).

:func:`class_pool` draws ``per_class`` images of every class (from the training file of
the IDX datasets, from all drawings of an Omniglot character, from the 600 images of a
miniImageNet class) by the generator as an array (classes × per_class × C × H × W),
pixels / 255 standardized by the mean / std of the drawn images (over all channels);
:func:`sample_tasks` draws N-way K-shot tasks: N classes without replacement, a random
class-to-label assignment, K support and Q query images per class without replacement from
the pool.
"""

from __future__ import annotations

import torch

from blobench.contracts.errors import UserError
from blobench.toolkit.data import load_dataset

Tensor = torch.Tensor
Split = tuple[Tensor, Tensor]  # (images with a leading task dimension, labels)

DATASETS = {"fashion_mnist": ("fashion_mnist",), "mnist": ("mnist",),
            "both": ("fashion_mnist", "mnist"), "omniglot": ("omniglot",),
            "miniimagenet": ("miniimagenet",)}
#: {dataset: (n_train_base, rotations)} used when the parameters are 0
DEFAULTS = {"fashion_mnist": (7, 4), "mnist": (7, 4), "both": (7, 4), "omniglot": (1200, 4),
            "miniimagenet": (0, 1)}
#: side of the Omniglot drawings after resizing (MAML: 28 × 28)
OMNIGLOT_SIDE = 28


def _draw(n: int, per_class: int, generator: torch.Generator, what: str) -> torch.Tensor:
    if per_class > n:
        raise UserError(f"per_class={per_class} exceeds the {n} images of each {what}")
    return torch.randperm(n, generator=generator)[:per_class]


def _base_classes(dataset: str, per_class: int, n_train_base: int,
                  generator: torch.Generator) -> tuple[list[Tensor], list[bool]]:
    """(images of every base class (per_class × C × H × W, uint8), is it meta-training)."""
    blocks, is_train = [], []
    if dataset == "omniglot":
        data = load_dataset("omniglot")
        sets = [data["background"], data["evaluation"]]
        n_base = sum(len(s.classes) for s in sets)
        if not 1 <= n_train_base < n_base:
            raise UserError(f"n_train_base={n_train_base}: needs 1..{n_base - 1} of the "
                            f"{n_base} Omniglot characters")
        for images in sets:
            for k in range(len(images.classes)):
                rows = torch.nonzero(images.labels == k).flatten()
                pick = rows[_draw(len(rows), per_class, generator, "Omniglot character")]
                is_train.append(len(blocks) < n_train_base)
                blocks.append(images.load(pick, OMNIGLOT_SIDE))
        return blocks, is_train
    if dataset == "miniimagenet":
        if n_train_base:
            raise UserError("n_train_base must be 0 for miniimagenet: its meta-training / "
                            "meta-test classes are fixed by the Ravi & Larochelle split")
        data = load_dataset("miniimagenet")
        for split, train in (("train", True), ("test", False)):
            images = data[split]
            for k in range(len(images.classes)):
                rows = torch.nonzero(images.labels == k).flatten()
                pick = rows[_draw(len(rows), per_class, generator, "miniImageNet class")]
                is_train.append(train)
                blocks.append(images.load(pick))
        return blocks, is_train
    for name in DATASETS[dataset]:
        data = load_dataset(name)
        x, y = data["x_train"], data["y_train"]
        n_base = int(y.max()) + 1
        if not 1 <= n_train_base < n_base:
            raise UserError(f"n_train_base={n_train_base}: needs 1..{n_base - 1} of the "
                            f"{n_base} classes of {name}")
        for base in range(n_base):
            rows = torch.nonzero(y == base).flatten()
            pick = rows[torch.randperm(len(rows), generator=generator)[:per_class]]
            is_train.append(base < n_train_base)
            blocks.append(x[pick].unsqueeze(1))
    return blocks, is_train


def class_pool(dataset: str, per_class: int, n_train_base: int, rotations: int,
               generator: torch.Generator, dtype: torch.dtype
               ) -> tuple[Tensor, list[int], list[int]]:
    """(pool, meta-training class ids, meta-test class ids); see the module docstring.
    Raises :class:`~blobench.contracts.errors.DataMissing` when a dataset is absent."""
    if dataset not in DATASETS:
        raise UserError(f"unknown few-shot dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    default_base, default_rotations = DEFAULTS[dataset]
    rotations = rotations or default_rotations
    if not 1 <= rotations <= 4:
        raise UserError(f"rotations={rotations}: needs 1..4 (0 = the dataset's default)")
    blocks, is_train = _base_classes(dataset, per_class, n_train_base or default_base,
                                     generator)
    rotated, train, test = [], [], []
    for block, in_train in zip(blocks, is_train, strict=True):
        for r in range(rotations):
            (train if in_train else test).append(len(rotated))
            rotated.append(torch.rot90(block, r, dims=(-2, -1)))
    pool = torch.stack(rotated).to(torch.float64) / 255.0
    pool = ((pool - pool.mean()) / pool.std()).to(dtype)
    return pool, train, test


def sample_tasks(pool: Tensor, classes: list[int], n_tasks: int, n_way: int, k_shot: int,
                 n_query: int, generator: torch.Generator) -> tuple[Split, Split]:
    """((support x, y), (query x, y)): x (n_tasks × N·K (or N·Q) × 1 × H × W), y the labels
    0..N−1 (n_tasks × N·K), see the module docstring."""
    if n_way > len(classes):
        raise UserError(f"n_way={n_way} exceeds the {len(classes)} classes available")
    if k_shot + n_query > pool.shape[1]:
        raise UserError(f"k_shot + n_query = {k_shot + n_query} exceeds the {pool.shape[1]} "
                        f"images drawn per class")
    ids = torch.as_tensor(classes)
    xs, xq = [], []
    for _ in range(n_tasks):
        chosen = ids[torch.randperm(len(ids), generator=generator)[:n_way]]
        images = torch.stack([pool[c, torch.randperm(pool.shape[1], generator=generator)
                                   [:k_shot + n_query]] for c in chosen.tolist()])
        xs.append(images[:, :k_shot].flatten(0, 1))
        xq.append(images[:, k_shot:].flatten(0, 1))
    labels = torch.arange(n_way)
    ys = labels.repeat_interleave(k_shot).expand(n_tasks, -1)
    yq = labels.repeat_interleave(n_query).expand(n_tasks, -1)
    return (torch.stack(xs), ys.contiguous()), (torch.stack(xq), yq.contiguous())
