"""Engine helpers shared by the problems: blobench.toolkit.glm (closed forms checked against
autodiff),
blobench.toolkit.datasets (splits, corruption, detection metrics) and Problem.index_batch."""

from __future__ import annotations

import pytest
import torch

from blobench.contracts.errors import UserError
from blobench.execution.registry import get_registry
from blobench.toolkit import datasets, glm


def _data(n: int = 40, d: int = 5, k: int = 0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    if k:
        y = torch.randint(k, (n,), generator=g)
    else:
        y = torch.randint(2, (n,), generator=g).double() * 2 - 1
    w = torch.rand(n, generator=g, dtype=torch.float64)
    theta = torch.randn(d * max(k, 1), generator=g, dtype=torch.float64)
    return x, y, w, theta


@pytest.mark.parametrize("model", ["logistic", "softmax"])
@pytest.mark.parametrize("weighted", [False, True])
def test_closed_forms_equal_autodiff(model, weighted):
    k = 3 if model == "softmax" else 0
    x, y, w, theta = _data(k=k)
    w = w if weighted else None
    loss, grad, hess, dots = (getattr(glm, f"{model}_{s}")
                              for s in ("loss", "grad", "hessian", "example_dots"))
    auto_grad = torch.func.grad(lambda t: loss(t, x, y, w))(theta)
    auto_hess = torch.func.hessian(lambda t: loss(t, x, y, w))(theta)
    assert torch.allclose(grad(theta, x, y, w), auto_grad, rtol=1e-12, atol=1e-14)
    h = hess(theta, x, y, w) if model == "logistic" else hess(theta, x, w)
    assert torch.allclose(h, auto_hess, rtol=1e-12, atol=1e-14)
    # per-example gradients: ⟨∇ℓ_i, v⟩
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    per_example = torch.stack([torch.func.grad(lambda t, i=i: loss(t, x[i:i + 1], y[i:i + 1]))(
        theta) @ v for i in range(x.shape[0])])
    assert torch.allclose(dots(theta, x, y, v), per_example, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("ridge", [0.1, "vector"])
def test_newton_solutions_are_stationary(ridge):
    x, y, w, _ = _data()
    mu = torch.linspace(0.05, 0.5, x.shape[1], dtype=x.dtype) if ridge == "vector" else ridge
    theta = glm.newton_logistic(x, y, mu, w)
    g = torch.func.grad(lambda t: glm.logistic_loss(t, x, y, w) + glm.ridge_penalty(t, mu))(theta)
    assert float(g.norm()) < 1e-12
    xs, ys, ws, _ = _data(n=30, d=4, k=3, seed=1)
    theta = glm.newton_softmax(xs, ys, 0.01, 3, ws)
    g = torch.func.grad(lambda t: glm.softmax_loss(t, xs, ys, ws) + 0.005 * (t @ t))(theta)
    assert theta.shape == (12,) and float(g.norm()) < 1e-11


def test_smoothness_bounds_the_hessian():
    x, y, _, theta = _data()

    def top(h: torch.Tensor) -> float:
        return float(torch.linalg.eigvalsh(h)[-1])

    bound = glm.logistic_smoothness(x)
    assert top(glm.logistic_hessian(theta, x, y)) < bound
    assert top(glm.logistic_hessian(theta * 0, x, y)) == pytest.approx(bound, rel=1e-12)  # σ'(0)=¼
    xs, _, _, theta = _data(k=3)
    assert top(glm.softmax_hessian(theta, xs)) <= glm.softmax_smoothness(xs) * (1 + 1e-12)


def test_detection_metrics_by_hand():
    a = torch.tensor([0.05, 0.5, 0.09, 0.9, 0.3])
    corrupted = torch.tensor([True, True, False, False, False])
    m = datasets.detection_metrics(a, corrupted, 0.1)
    assert m == {"precision": 0.5, "recall": 0.5, "corrupt_downweighted": 0.5,
                 "kept_fraction": 0.6}
    none = datasets.detection_metrics(a, torch.zeros(5, dtype=torch.bool), 0.01)
    assert none["precision"] == none["recall"] == none["corrupt_downweighted"] == 0.0


def test_split_and_corruption():
    g = torch.Generator().manual_seed(0)
    tr, va, te = datasets.split(10, {"n_train": 4, "n_val": 3}, g, "p", "toy")
    assert (len(tr), len(va), len(te)) == (4, 3, 3)
    assert sorted(torch.cat([tr, va, te]).tolist()) == list(range(10))
    with pytest.raises(UserError, match=r"p: n_train \+ n_val must be < 10"):
        datasets.split(10, {"n_train": 7, "n_val": 3}, g, "p", "toy")
    bad, mask = datasets.choose_corrupted(20, 0.25, g)
    assert len(bad) == 5 and int(mask.sum()) == 5 and bool(mask[bad].all())
    z = torch.linspace(-2, 2, 7, dtype=torch.float64)
    auto = torch.func.vmap(torch.func.grad(datasets.example_weights))(z)
    assert torch.allclose(datasets.example_weights_derivative(z), auto)


def test_index_batch():
    prob = get_registry().problem("ridge_ho")(seed=0)
    g = torch.Generator().manual_seed(0)
    assert prob.index_batch(10, 0, g) is None and prob.index_batch(10, 10, g) is None
    batch = prob.index_batch(10, 4, g)
    assert batch.dtype == torch.long and batch.shape == (4,) and batch.device == prob.device
    assert int(batch.min()) >= 0 and int(batch.max()) < 10
    again = prob.index_batch(10, 4, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)
