"""Issue 21: ``v_pbgd`` (Shen & Chen 2023), the value-function penalty. Ground truth: the
closed-form hypergradient and λ* of ``quadratic`` (condition 4, as the penalty tests use)."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import rel_error


@pytest.fixture(scope="module")
def quad4(registry):
    return registry.problem("quadratic")(seed=1, condition=4.0)


def _penalty_gradient_at_stationarity(registry, problem, lam, gamma):
    """∇_λ F_γ once ẑ = θ*(λ) and θ is stationary for F_γ(λ, ·)."""
    alg = registry.algorithm("v_pbgd")(penalty=gamma)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    state.extra["z"] = problem.inner_solution(lam)
    alg.theta_phase(problem, state, 300)  # contraction ≤ 1 − γ/(4(1 + γ)) per step
    module = sys.modules[type(alg).__module__]
    grad_lam, grad_theta = module.value_penalty_grads(problem, state.theta, state.extra["z"],
                                                      lam, gamma)
    assert float(grad_theta.norm()) < 1e-8 * (1 + gamma)
    return grad_lam


def test_value_penalty_gradient_tends_to_exact_as_gamma_grows(registry, quad4):
    lam = 0.5 * torch.randn(quad4.dim_outer, generator=torch.Generator().manual_seed(0))
    exact = quad4.exact_hypergradient(lam)
    errors = [rel_error(_penalty_gradient_at_stationarity(registry, quad4, lam, g), exact)
              for g in (1.0, 10.0, 100.0)]
    # O(1/γ): measured 0.43, 0.080, 0.0088
    assert errors[0] > 4 * errors[1] > 16 * errors[2], errors
    assert errors[-1] < 1.5e-2, errors


def test_gradient_mode_g_pbgd_tends_to_exact_as_gamma_grows(registry, quad4):
    lam = 0.5 * torch.randn(quad4.dim_outer, generator=torch.Generator().manual_seed(0))
    exact = quad4.exact_hypergradient(lam)
    module = sys.modules[registry.algorithm("v_pbgd").__module__]
    errors = []
    for gamma in (1.0, 10.0, 100.0):
        alg = registry.algorithm("v_pbgd")(penalty=gamma, mode="gradient")
        gen = torch.Generator().manual_seed(0)
        state = alg.init(quad4, quad4.init_inner(lam, gen), lam.clone(), gen)
        alg.theta_phase(quad4, state, 800)
        grad_lam, grad_theta = module.gradient_penalty_grads(quad4, state.theta, lam, gamma)
        assert float(grad_theta.norm()) < 1e-8 * (1 + gamma)
        errors.append(rel_error(grad_lam, exact))
    # O(1/γ): measured 0.22, 0.029, 0.0030
    assert errors[0] > 4 * errors[1] > 16 * errors[2], errors
    assert errors[-1] < 5e-3, errors


def test_mutant_value_function_sign_fails(registry, quad4, monkeypatch):
    module = sys.modules[registry.algorithm("v_pbgd").__module__]
    good = module.value_penalty_grads

    def mutant(problem, theta, z, lam, gamma):  # + γ ∇_λ g(ẑ) instead of −
        from blobench import autodiff
        grad_lam, grad_theta = good(problem, theta, z, lam, gamma)
        _, g_lam_z = autodiff.inner_grads(problem, z, lam)
        return grad_lam + 2 * gamma * g_lam_z, grad_theta

    monkeypatch.setattr(module, "value_penalty_grads", mutant)
    lam = 0.5 * torch.randn(quad4.dim_outer, generator=torch.Generator().manual_seed(0))
    est = _penalty_gradient_at_stationarity(registry, quad4, lam, 10.0)
    assert rel_error(est, quad4.exact_hypergradient(lam)) > 0.5


def _lam_error(registry, problem, steps, **params):
    alg = registry.algorithm("v_pbgd")(**params)
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam, gen), lam, gen)
    for _ in range(steps):
        state = alg.step(problem, state)
    return rel_error(state.lam, problem.lam_star)


def test_v_pbgd_reaches_the_penalized_optimum(registry, quad4):
    # γ = 10: within the O(1/γ) bias of λ* (measured 4.3e-2 after 90 steps)
    err = _lam_error(registry, quad4, 90, penalty=10.0, inner_steps=60, theta_steps=60,
                     outer_lr=0.5)
    assert err < 6e-2, err


@pytest.mark.slow
def test_v_pbgd_bias_shrinks_with_gamma(registry, quad4):
    err = _lam_error(registry, quad4, 150, penalty=100.0, inner_steps=60, theta_steps=300,
                     outer_lr=0.5)
    assert err < 8e-3, err  # measured 4.5e-3 (γ = 10: 4.2e-2)


def test_v_pbgd_is_first_order(registry, quad4):
    from blobench import autodiff
    alg = registry.algorithm("v_pbgd")()
    gen = torch.Generator().manual_seed(0)
    lam = quad4.init_outer(gen)
    state = alg.init(quad4, quad4.init_inner(lam, gen), lam, gen)
    autodiff.oracle_counts.clear()
    alg.step(quad4, state)
    assert autodiff.oracle_counts["hvp"] == 0 and autodiff.oracle_counts["mixed"] == 0
