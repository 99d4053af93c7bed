"""distill_linear (Vicol et al. 2022, T2): ground truth checked independently of its code.

The exact hypergradient (autodiff through the closed-form cold start) against central finite
differences of F(λ) = f(θ_cs(λ)); the cold-start solution against gradient descent from θ₀ and
its defining properties; the pseudo-inverse IFT formula differs from it exactly when the
synthetic inputs are learned (the rotation term).
"""

from __future__ import annotations

import pytest
import torch

from blobench import autodiff
from blobench.contracts.errors import UserError
from blobench.execution.registry import get_registry

REG = get_registry()


def make(**kw):
    return REG.problem("distill_linear")(seed=0, **kw)


def perturbed(prob, scale=0.2):
    g = torch.Generator().manual_seed(3)
    lam0 = prob.init_outer(None)
    return lam0 + scale * torch.randn(lam0.shape, generator=g, dtype=lam0.dtype)


def finite_differences(prob, lam, eps=1e-6):
    out = torch.zeros_like(lam)
    for i in range(lam.numel()):
        e = torch.zeros_like(lam)
        e[i] = eps
        out[i] = (prob.value(lam + e) - prob.value(lam - e)) / (2 * eps)
    return out


@pytest.mark.parametrize("kw", [{}, {"n_synthetic": 5}, {"n_synthetic": 5,
                                                         "learn_inputs": False}])
def test_exact_hypergradient_matches_finite_differences(kw):
    prob = make(**kw)
    lam = perturbed(prob)
    exact = prob.exact_hypergradient(lam)
    fd = finite_differences(prob, lam)
    assert exact.shape == lam.shape
    assert float((exact - fd).norm() / fd.norm()) < 1e-6


def test_cold_start_is_gradient_descent_limit_and_min_norm():
    prob = make(n_synthetic=3)
    lam = perturbed(prob)
    theta0 = prob.init_inner(lam, torch.Generator().manual_seed(0))
    w = prob.min_norm_inner(lam, theta0)
    gd = autodiff.gradient_descent(prob, theta0, lam, 3000, prob.inner_step_size(lam))
    assert float((gd - w).norm()) < 1e-8
    phi = prob.phi(lam)
    _, y_s = prob.split(lam)
    assert float((phi @ w - y_s).norm()) < 1e-10  # on the solution set
    # θ − θ₀ in the row space of Φ: orthogonal to the null space
    null = torch.linalg.svd(phi, full_matrices=True).Vh[phi.shape[0]:]
    assert float((null @ (w - theta0)).norm()) < 1e-10
    # any other solution is farther from θ₀
    other = w + null[0]
    assert float((other - theta0).norm()) > float((w - theta0).norm())


def _ift_pinv(prob, lam):
    theta = prob.min_norm_inner(lam, prob.theta0)
    ops = autodiff.InnerDerivatives(prob, theta, lam)
    f_theta, f_lam = autodiff.outer_grads(prob, theta, lam)
    v = torch.linalg.pinv(ops.dense_hessian()) @ f_theta
    return f_lam - ops.mixed(v)


def test_ift_pinv_misses_the_rotation_term_only_when_inputs_move():
    fixed = make(n_synthetic=4, learn_inputs=False)
    lam = perturbed(fixed)
    assert torch.allclose(_ift_pinv(fixed, lam), fixed.exact_hypergradient(lam), atol=1e-9)
    moving = make(n_synthetic=4)
    lam = perturbed(moving)
    exact = moving.exact_hypergradient(lam)
    assert float((_ift_pinv(moving, lam) - exact).norm() / exact.norm()) > 1e-3


def test_one_point_unit_features_and_determinism():
    prob = make()
    lam = perturbed(prob)
    assert abs(prob.inner_step_size(lam) - 1.0) < 1e-12  # ‖φ(x)‖ = 1 for odd D
    again = make()
    assert torch.equal(prob.theta0, again.theta0) and torch.equal(prob.y_real, again.y_real)
    metrics = prob.evaluate(prob.theta0, lam)
    assert set(metrics) >= {"test_mse", "train_mse", "retrain_test_mse"}


def test_bad_sizes_raise_user_error():
    with pytest.raises(UserError):
        make(n_synthetic=10, dim_features=10)
    with pytest.raises(UserError):
        make(n_synthetic=0)
