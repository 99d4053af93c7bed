"""Train / validation / test splits of a loaded dataset, for the problems.

:func:`three_way` draws the split from the problem's generator: a permutation of the
dataset's training file gives ``n_train`` training points, then ``n_val`` validation points
from the rest of it when enough are left (else from the test file, as benchopt does for
ijcnn1: inner on the training file, outer on the test file); the test points are the first
``n_test`` (0 = all) of a permutation of what remains of the test file (of the training file
for datasets with one file). :func:`rows` selects rows of a dense or sparse CSR matrix;
:func:`image_features` maps uint8 images to pixels / 255, flattened, with an intercept column.
"""

from __future__ import annotations

import torch

from blobench.contracts.errors import UserError
from blobench.toolkit.datasets import with_intercept

Part = tuple[torch.Tensor, torch.Tensor]  # (features, labels)


def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[index] for a dense or sparse CSR matrix (repeated indices allowed)."""
    if x.layout != torch.sparse_csr:
        return x[index]
    crow, col, val = x.crow_indices(), x.col_indices(), x.values()
    start, count = crow[index], crow[index + 1] - crow[index]
    new_crow = torch.zeros(len(index) + 1, dtype=crow.dtype, device=crow.device)
    new_crow[1:] = count.cumsum(0)
    # position of every kept entry: start of its row + its rank within the row
    row_of = torch.repeat_interleave(torch.arange(len(index), device=crow.device), count)
    pos = start[row_of] + torch.arange(int(new_crow[-1]), device=crow.device) - new_crow[row_of]
    return torch.sparse_csr_tensor(new_crow, col[pos], val[pos], size=(len(index), x.shape[1]),
                                   check_invariants=False)


def three_way(data: dict[str, torch.Tensor], n_train: int, n_val: int, n_test: int,
              generator: torch.Generator, who: str, dataset: str) -> list[Part]:
    """[(x, y) train, validation, test] as described in the module docstring."""
    x_tr, y_tr = data["x_train"], data["y_train"]
    has_test = "x_test" in data
    perm = torch.randperm(x_tr.shape[0], generator=generator)
    if n_train > len(perm):
        raise UserError(f"{who}: n_train={n_train} > {len(perm)} training points of {dataset}")
    train, rest = perm[:n_train], perm[n_train:]
    parts = [(rows(x_tr, train), y_tr[train])]
    if not has_test or n_val <= len(rest):
        val, rest = rest[:n_val], rest[n_val:]
        parts.append((rows(x_tr, val), y_tr[val]))
        test_x, test_y = (data["x_test"], data["y_test"]) if has_test else (x_tr, y_tr)
        pool = torch.randperm(test_x.shape[0], generator=generator) if has_test else rest
    else:
        test_x, test_y = data["x_test"], data["y_test"]
        pool = torch.randperm(test_x.shape[0], generator=generator)
        if n_val > len(pool):
            raise UserError(f"{who}: n_val={n_val} > {len(pool)} validation points of "
                            f"{dataset}")
        val, pool = pool[:n_val], pool[n_val:]
        parts.append((rows(test_x, val), test_y[val]))
    if n_test > len(pool) or len(pool) == 0:
        raise UserError(f"{who}: n_test={n_test} but {len(pool)} test points are left in "
                        f"{dataset} after n_train={n_train}, n_val={n_val}")
    test = pool[:n_test] if n_test else pool
    parts.append((rows(test_x, test), test_y[test]))
    return parts


def image_features(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 images (n × ...) → (n × (pixels + 1)): pixels / 255 flattened, then a constant
    column (the intercept)."""
    return with_intercept(images.reshape(images.shape[0], -1).to(dtype) / 255.0)
