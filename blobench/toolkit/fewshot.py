"""Few-shot task pools from image datasets of the data layer (toolkit for problem files).

Classes: every class of the chosen datasets (Fashion-MNIST; MNIST; or both, 20 base
classes) under each of ``rotations`` rotations by multiples of 90° — a rotated class is a
new class, the augmentation of the Omniglot protocol (Santoro et al. 2016; Finn et al. 2017
MAML §5.2). Base classes are split, not rotations: the first ``n_train_base`` base classes of
each dataset (all their rotations) are the meta-training classes, the others the meta-test
classes, so meta-test tasks never show a class, in any rotation, seen in meta-training.
Fashion-MNIST alone with the defaults: 7 × 4 = 28 meta-training classes, 3 × 4 = 12
meta-test classes (C(28, 5) = 98,280 distinct 5-way class sets).

:func:`class_pool` draws ``per_class`` images of every class from the training file (by
the generator) as an array (classes × per_class × 1 × 28 × 28), pixels / 255 standardized
by the mean / std of the drawn images; :func:`sample_tasks` draws N-way K-shot tasks: N
classes without replacement, a random class-to-label assignment, K support and Q query
images per class without replacement from the pool.
"""

from __future__ import annotations

import torch

from blobench.contracts.errors import UserError
from blobench.toolkit.data import load_dataset

Tensor = torch.Tensor
Split = tuple[Tensor, Tensor]  # (images with a leading task dimension, labels)

DATASETS = {"fashion_mnist": ("fashion_mnist",), "mnist": ("mnist",),
            "both": ("fashion_mnist", "mnist")}


def class_pool(dataset: str, per_class: int, n_train_base: int, rotations: int,
               generator: torch.Generator, dtype: torch.dtype
               ) -> tuple[Tensor, list[int], list[int]]:
    """(pool, meta-training class ids, meta-test class ids); see the module docstring.
    Raises :class:`~blobench.contracts.errors.DataMissing` when a dataset is absent."""
    if dataset not in DATASETS:
        raise UserError(f"unknown few-shot dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    blocks, train, test = [], [], []
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
            for r in range(rotations):
                (train if base < n_train_base else test).append(len(blocks))
                blocks.append(torch.rot90(x[pick], r, dims=(1, 2)))
    pool = torch.stack(blocks).unsqueeze(2).to(torch.float64) / 255.0
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
