"""Issue 21: ``pzobo`` (Sow, Ji, Liang 2022), the Gaussian-smoothing Jacobian estimate.

Expected values written here: the Jacobian of N gradient steps on ``quadratic`` by its matrix
recursion Z_{t+1} = (I − ηA) Z_t + ηB (θ_N is affine in λ there, so the finite difference is
exact for any μ), and on ``ridge_ho`` (θ_N not affine in λ) by forward-mode autodiff.
"""

from __future__ import annotations

import sys

import torch
from conftest import rel_error

from blobench import autodiff


def _state(registry, problem, lam, **params):
    alg = registry.algorithm("pzobo")(**params)
    gen = torch.Generator().manual_seed(0)
    return alg, alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)


def _directions(state, q, n):
    """The Gaussian vectors the next outer step will draw (a copy of the run's generator)."""
    gen = torch.Generator()
    gen.set_state(state.extra["generator"].get_state())
    return torch.randn(q, n, generator=gen)


def _pzobo_module(registry):
    return sys.modules[registry.algorithm("pzobo").__module__]


def test_pzobo_is_the_projected_unrolled_hypergradient_on_quadratic(registry):
    prob = registry.problem("quadratic")(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(1))
    n_steps, q = 25, 7
    alg, state = _state(registry, prob, lam, inner_steps=n_steps, directions=q, smoothing=0.5)
    u = _directions(state, q, prob.dim_outer)
    theta0, eta = state.theta.clone(), prob.inner_step_size(lam)
    state = alg.step(prob, state)
    # θ_N and Z_N = ∂θ_N/∂λ by the affine recursion of gradient descent on g
    step = torch.eye(prob.dim_inner) - eta * prob.a_mat
    theta, z = theta0, torch.zeros(prob.dim_inner, prob.dim_outer)
    for _ in range(n_steps):
        theta = step @ theta + eta * (prob.b_mat @ lam + prob.a_vec)
        z = step @ z + eta * prob.b_mat
    f_theta = prob.c_mat.T @ (prob.c_mat @ theta - prob.c_vec) / prob.config["n_outer"]
    expected = prob.rho * lam + u.T @ (u @ (z.T @ f_theta)) / q
    assert rel_error(state.hypergrad, expected) < 1e-9


def test_pzobo_finite_difference_error_vanishes_with_mu_on_ridge(registry):
    prob = registry.problem("ridge_ho")(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(2))
    errors = []
    for mu in (1e-1, 1e-2, 1e-3):
        alg, state = _state(registry, prob, lam, inner_steps=20, directions=5, smoothing=mu)
        u = _directions(state, 5, prob.dim_outer)
        theta0, eta = state.theta.clone(), prob.inner_step_size(lam)
        state = alg.step(prob, state)
        theta, z = autodiff.forward_unroll(prob, theta0, lam, 20, eta)
        f_theta, f_lam = autodiff.outer_grads(prob, theta, lam)
        errors.append(rel_error(state.hypergrad, f_lam + u.T @ (u @ (z.T @ f_theta)) / 5))
    assert errors[0] > 5 * errors[1] > 25 * errors[2], errors  # O(μ)
    assert errors[-1] < 1e-3, errors


def test_pzobo_tends_to_exact_with_many_directions(registry):
    prob = registry.problem("quadratic")(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(1))
    exact = prob.exact_hypergradient(lam)
    cosines = []
    for q in (3, 100):
        alg, state = _state(registry, prob, lam, inner_steps=60, directions=q)
        state = alg.step(prob, state)
        cosines.append(float(state.hypergrad @ exact / state.hypergrad.norm() / exact.norm()))
    # measured 0.49 at Q=3, 0.97 at Q=100
    assert cosines[-1] > 0.93 and cosines[-1] > cosines[0], cosines


def test_pzobo_mutant_flipped_difference_fails(registry, monkeypatch):
    module = _pzobo_module(registry)
    good = module.smoothed_vjp
    monkeypatch.setattr(module, "smoothed_vjp", lambda *a: -good(*a))
    prob = registry.problem("quadratic")(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(1))
    alg, state = _state(registry, prob, lam, inner_steps=60, directions=100)
    state = alg.step(prob, state)
    exact = prob.exact_hypergradient(lam)
    assert float(state.hypergrad @ exact / state.hypergrad.norm() / exact.norm()) < 0.5


def test_pzobo_is_first_order(registry):
    prob = registry.problem("ridge_ho")(seed=0)
    alg, state = _state(registry, prob, prob.init_outer(torch.Generator()), directions=3)
    autodiff.oracle_counts.clear()
    alg.step(prob, state)
    counts = autodiff.oracle_counts
    assert counts["hvp"] == 0 and counts["mixed"] == 0
    assert counts["grad_inner"] == 4 * 10 and counts["grad_outer"] == 1
