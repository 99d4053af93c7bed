"""Issue 21: ``sama`` (Choe et al. 2023). Expected values by hand on ``quadratic``
(g = ½θᵀAθ − θᵀBλ − aᵀθ, J = −Bᵀ, ∇_λ f = ρλ): the T base-optimizer steps written out (SGD,
and Adam's moment recursions), then ∇_λ f − J (P ∘ ∇_θ f) with SAMA's P = ∂u/∂g."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import rel_error

STEPS = 7


@pytest.fixture(scope="module")
def quad(registry):
    return registry.problem("quadratic")(seed=0)


def _sama_step(registry, problem, lam, **params):
    alg = registry.algorithm("sama")(inner_steps=STEPS, **params)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    return alg.step(problem, state)


def _expected(problem, lam, theta, precond):
    f_theta = problem.c_mat.T @ (problem.c_mat @ theta - problem.c_vec) / problem.config["n_outer"]
    return problem.rho * lam + problem.b_mat.T @ (precond * f_theta)


def _grad(problem, theta, lam):
    return problem.a_mat @ theta - problem.b_mat @ lam - problem.a_vec


def test_sama_with_sgd_is_the_identity_hessian_step(registry, quad):
    lam = 0.3 * torch.randn(quad.dim_outer, generator=torch.Generator().manual_seed(1))
    eta = quad.inner_step_size(lam)
    theta = torch.zeros(quad.dim_inner)
    for _ in range(STEPS):
        theta = theta - eta * _grad(quad, theta, lam)
    state = _sama_step(registry, quad, lam, base_optimizer="sgd")
    assert rel_error(state.theta, theta) < 1e-12
    assert rel_error(state.hypergrad, _expected(quad, lam, theta, eta)) < 1e-7


def _adam_by_hand(problem, lam, lr, steps, betas=(0.9, 0.999), eps=1e-8):
    theta = torch.zeros(problem.dim_inner)
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t in range(1, steps + 1):
        g = _grad(problem, theta, lam)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
    return theta, lr / (v_hat.sqrt() + eps)


def test_sama_with_adam_uses_adams_jacobian(registry, quad):
    lam = 0.3 * torch.randn(quad.dim_outer, generator=torch.Generator().manual_seed(1))
    theta, precond = _adam_by_hand(quad, lam, quad.inner_step_size(lam), STEPS)
    state = _sama_step(registry, quad, lam)  # base_optimizer = adam (default)
    assert rel_error(state.theta, theta) < 1e-10
    assert rel_error(state.hypergrad, _expected(quad, lam, theta, precond)) < 1e-7


def test_mutant_inverted_preconditioner_fails(registry, quad, monkeypatch):
    module = sys.modules[registry.algorithm("sama").__module__]
    good = module.preconditioner
    monkeypatch.setattr(module, "preconditioner", lambda *a: 1.0 / good(*a))
    lam = 0.3 * torch.randn(quad.dim_outer, generator=torch.Generator().manual_seed(1))
    theta, precond = _adam_by_hand(quad, lam, quad.inner_step_size(lam), STEPS)
    state = _sama_step(registry, quad, lam)
    assert rel_error(state.hypergrad, _expected(quad, lam, theta, precond)) > 0.1


def test_sama_is_first_order(registry, quad):
    from blobench import autodiff
    autodiff.oracle_counts.clear()
    _sama_step(registry, quad, torch.zeros(quad.dim_outer))
    assert autodiff.oracle_counts["hvp"] == 0 and autodiff.oracle_counts["mixed"] == 0
