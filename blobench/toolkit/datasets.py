"""Small real datasets of the problems, and the metrics of label-corruption experiments.

The datasets ship with scikit-learn (no download) and are returned as float64 CPU tensors
(problems move them to their device):

- :func:`breast_cancer`: 569 points, 30 features, labels y ∈ {−1, +1}; features standardized
  with the mean and standard deviation of the *first* (training) split, a constant column
  appended (the intercept), d = 31.
- :func:`digits`: 1797 8×8 images, labels 0..9; pixels scaled to [0, 1], a constant column
  appended (x̃ ∈ ℝ^65).

Both are read from the files scikit-learn ships (``sklearn/datasets/data``) with numpy, without
importing scikit-learn (its import costs 3–4 CPU-s — it brings scipy — and every command that
builds these problems, ``blobench list`` included, paid it: issue 15); the values are
scikit-learn's ``load_breast_cancer`` / ``load_digits`` bit for bit (tests/test_datasets.py),
and where the files are not where this expects them, those loaders are used.

Both are split by one permutation drawn from the problem's generator (:func:`split`): the
requested sizes in order, then every remaining point in the last (test) part.
:func:`choose_corrupted` draws the training points whose label a problem corrupts,
:func:`example_weights` maps outer variables to per-example weights a = ½(tanh z + 1), and
:func:`detection_metrics` scores learned weights against the corrupted set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from blobench.contracts.errors import UserError

Split = tuple[torch.Tensor, torch.Tensor]  # (features, labels)


def split(n_total: int, sizes: dict[str, int], generator: torch.Generator, who: str,
          dataset: str) -> list[torch.Tensor]:
    """Index sets of consecutive pieces of ``randperm(n_total)``: one per entry of ``sizes``
    (in order), then the rest. Raises UserError when nothing would be left for the rest."""
    if sum(sizes.values()) >= n_total:
        raise UserError(f"{who}: {' + '.join(sizes)} must be < {n_total} ({dataset} size) "
                        "to leave test points")
    perm = torch.randperm(n_total, generator=generator)
    parts, start = [], 0
    for n in sizes.values():
        parts.append(perm[start:start + n])
        start += n
    return [*parts, perm[start:]]


def with_intercept(x: torch.Tensor) -> torch.Tensor:
    """[x, 1]: the rows of x with a constant column appended."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)


def _bundled_file(name: str) -> Path | None:
    """scikit-learn's bundled data file ``name``, located without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def load_breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(features 569 × 30 float64, labels 0/1 int64) of scikit-learn's breast_cancer (module
    docstring): ``breast_cancer.csv`` is a header line (n, d, class names), then d features
    and the label per row."""
    path = _bundled_file("breast_cancer.csv")
    if path is None:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        return data.data, data.target
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(pixels 1797 × 64 float64 in 0..16, labels 0..9 int64) of scikit-learn's digits
    (module docstring): ``digits.csv.gz`` holds 64 pixels and the label per row."""
    path = _bundled_file("digits.csv.gz")
    if path is None:
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.data, data.target
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(np.int64)


def breast_cancer(sizes: dict[str, int], generator: torch.Generator, who: str) -> list[Split]:
    """scikit-learn's breast_cancer split as in :func:`split`, standardized with the first
    part's statistics, intercept appended, labels ±1 (float64)."""
    features, target = load_breast_cancer_arrays()
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(target, dtype=torch.float64) * 2 - 1
    parts = split(x.shape[0], sizes, generator, who, "breast_cancer")
    mean, std = x[parts[0]].mean(0), x[parts[0]].std(0).clamp_min(1e-12)
    return [(with_intercept((x[idx] - mean) / std), y[idx]) for idx in parts]


def digits(sizes: dict[str, int], generator: torch.Generator, who: str) -> list[Split]:
    """scikit-learn's digits split as in :func:`split`: pixels / 16 with an intercept column
    (float64), labels 0..9 (int64)."""
    pixels, target = load_digits_arrays()
    x = with_intercept(torch.as_tensor(pixels, dtype=torch.float64) / 16.0)
    y = torch.as_tensor(target, dtype=torch.long)
    return [(x[idx], y[idx]) for idx in split(x.shape[0], sizes, generator, who, "digits")]


def choose_corrupted(n: int, rate: float, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, boolean mask) of exactly round(rate · n) of n points, drawn from ``generator``."""
    bad = torch.randperm(n, generator=generator)[:round(rate * n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[bad] = True
    return bad, mask


def example_weights(z: torch.Tensor) -> torch.Tensor:
    """a = ½(tanh z + 1) ∈ (0, 1): per-example weights from unconstrained outer variables z
    (z = 0 gives a = ½)."""
    return 0.5 * (torch.tanh(z) + 1)


def example_weights_derivative(z: torch.Tensor) -> torch.Tensor:
    """a'(z) = ½(1 − tanh² z), elementwise derivative of :func:`example_weights`."""
    return 0.5 * (1 - torch.tanh(z) ** 2)


def detection_metrics(weights: torch.Tensor, corrupted: torch.Tensor, threshold: float
                      ) -> dict[str, float]:
    """How well per-example weights a ∈ (0, 1) single out the corrupted points.

    A point is *flagged* when a_i ≤ ``threshold``. ``precision`` and ``recall`` of the flagged
    set against the corrupted set (0 when the flagged, resp. corrupted, set is empty),
    ``corrupt_downweighted`` = fraction of corrupted points with a_i < ½ (below the start
    a = ½), ``kept_fraction`` = fraction of points not flagged.
    """
    flagged = weights <= threshold
    hits = float((flagged & corrupted).sum())
    n_flag, n_bad = float(flagged.sum()), float(corrupted.sum())
    return {"precision": hits / n_flag if n_flag else 0.0,
            "recall": hits / n_bad if n_bad else 0.0,
            "corrupt_downweighted": float((weights[corrupted] < 0.5).double().mean())
            if n_bad else 0.0,
            "kept_fraction": float((~flagged).double().mean())}
