"""Learnable soft labels of distill_convnet (issue 20): λ = (images, label logits L, s).

Expected values from the definitions in problems/distill_convnet.py: q₀ = softmax(L₀) is the
label-smoothed one-hot target (ε = 0.1), g is the cross-entropy with soft targets, and the
unrolled hypergradient w.r.t. L is the derivative of F_T(λ) = f(θ_T(λ), λ), θ_T = T gradient
steps on g from θ₀ (the cold start's objective; the inner problem is non-convex, so this
is the objective the estimator differentiates) — checked against central finite
differences of F_T in float64.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blobench import autodiff
from blobench.bases.algorithm import cell_theta0

TINY = {"size": "quick", "seed": 0, "width": 3, "depth": 1, "n_train": 20, "n_test": 20,
        "dtype": "float64"}
T = 3


@pytest.fixture(scope="module")
def labelled(registry):
    return registry.problem("distill_convnet")(learn_labels=True, learn_lr=True, **TINY)


def test_layout_and_initial_soft_labels(registry, labelled):
    """λ = 10 images, 10 × 10 logits, s; q₀ = 0.9 on the class j mod 10 + 0.01 everywhere."""
    p = labelled
    lam = p.init_outer(torch.Generator())
    assert lam.numel() == p.n_pixels + 100 + 1 == 10 * 784 + 101
    q = p.soft_labels(lam)
    expected = torch.full((10, 10), 0.01, dtype=torch.float64) + 0.9 * torch.eye(10)
    assert torch.allclose(q, expected, atol=1e-12)
    hard = registry.problem("distill_convnet")(**TINY)
    assert hard.soft_labels(hard.init_outer(torch.Generator())) is None


def test_inner_loss_is_the_soft_target_cross_entropy(labelled):
    """g = e^s · mean_j −Σ_c q_jc log softmax(z_j)_c, written here by hand."""
    p = labelled
    gen = torch.Generator().manual_seed(3)
    lam = p.init_outer(gen)
    lam[p.n_pixels:-1] = torch.randn(100, generator=gen, dtype=torch.float64)
    lam[-1] = 0.3
    theta = cell_theta0(p, lam)
    logits = p.model(theta, p.synthetic(lam))
    q = torch.softmax(lam[p.n_pixels:-1].view(10, 10), -1)
    by_hand = torch.exp(torch.tensor(0.3, dtype=torch.float64)) * (
        -(q * torch.log_softmax(logits, -1)).sum(-1).mean())
    assert float(p.inner_loss(theta, lam)) == pytest.approx(float(by_hand), rel=1e-12)
    # a different target changes g (the labels enter the loss, not only the layout)
    other = lam.clone()
    other[p.n_pixels] += 1.0
    assert float(p.inner_loss(theta, other)) != pytest.approx(float(by_hand), rel=1e-6)


def test_label_hypergradient_equals_finite_differences(registry, labelled):
    """Cold-start unrolled (T = 3) hypergradient in the label coordinates = central finite
    differences of F_T; a wrong sign or a dropped mixed term fails the tolerance."""
    p = labelled
    gen = torch.Generator().manual_seed(1)
    lam = p.init_outer(gen)
    lam[p.n_pixels:-1] += 0.5 * torch.randn(100, generator=gen, dtype=torch.float64)
    alg = registry.algorithm("unrolled")(inner_steps=T, warm_start=False)
    state = alg.step(p, alg.init(p, cell_theta0(p, lam), lam, torch.Generator()))
    grad_labels = state.hypergrad[p.n_pixels:-1]
    lr = p.inner_step_size(lam)

    def value(at: torch.Tensor) -> float:
        theta = autodiff.gradient_descent(p, cell_theta0(p, at), at, T, lr)
        return float(p.outer_loss(theta, at))

    # the labels' hypergradient is not trivially zero: the test can fail
    assert float(grad_labels.norm()) > 1e-4
    directions = torch.randn(4, 100, generator=torch.Generator().manual_seed(2),
                             dtype=torch.float64)
    for d in [*directions, torch.nn.functional.one_hot(torch.tensor(7), 100).double()]:
        e = torch.zeros_like(lam)
        e[p.n_pixels:-1] = 1e-5 * d
        fd = (value(lam + e) - value(lam - e)) / 2e-5
        assert float(grad_labels @ d) == pytest.approx(fd, rel=1e-5, abs=1e-10)
    # the whole softmax row sums to one: shifting one image's logits by a constant is flat
    shift = torch.zeros(10, 10, dtype=torch.float64)
    shift[4] = 1.0
    assert float(grad_labels @ shift.reshape(-1)) == pytest.approx(0.0, abs=1e-12)


def test_retrain_uses_the_learned_labels(labelled):
    """The re-trained θ*(λ) (fixed budget from θ₀) follows the soft targets: one step by hand."""
    from blobench.execution import metrics

    p = labelled
    lam = p.init_outer(torch.Generator())
    lam[p.n_pixels:-1] = torch.randn(100, generator=torch.Generator().manual_seed(5),
                                     dtype=torch.float64)
    theta = cell_theta0(p, lam).detach()
    q = p.soft_labels(lam)
    for _ in range(p.retrain_steps):
        w = theta.requires_grad_(True)
        loss = nn.functional.cross_entropy(p.model(w, p.synthetic(lam)), q)
        (grad,) = torch.autograd.grad(loss, w)
        theta = (w - p.config["inner_lr"] * grad).detach()
    restart, _ = metrics.cold_restart(p, lam)
    assert torch.allclose(restart, theta, atol=1e-10)
