"""Issue 21: ``meta_sgd`` (Li et al. 2017). The meta-gradients in λ (initialization) and α
(per-parameter step sizes) are compared with central finite differences of the T-step
adapted outer loss F_T(λ, α) = f(θ_T, λ), θ_{t+1} = θ_t − θ₀(α) ∘ ∇_θ g(θ_t, λ), written out
here with plain autograd gradient steps on a tiny sinusoid instance."""

from __future__ import annotations

import sys

import pytest
import torch

TINY = {"n_tasks": 2, "k_shot": 5, "hidden": 8, "n_test_tasks": 2}
STEPS, LR = 2, 0.01


@pytest.fixture(scope="module")
def sine(registry):
    return registry.problem("sinusoid")(seed=0, **TINY)


def _adapted_loss(problem, lam, alpha, steps=STEPS):
    theta, rates = problem.init_inner(lam, None), problem.init_inner(alpha, None)
    for _ in range(steps):
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(problem.inner_loss(theta, lam), theta)
        theta = theta - rates * grad
    return float(problem.outer_loss(theta, lam))


def _one_step(registry, problem):
    """(λ₀, α₀, hypergradient in λ, gradient in α read off one SGD step of size LR on α)."""
    alg = registry.algorithm("meta_sgd")(inner_steps=STEPS, outer_optimizer="sgd", outer_lr=LR)
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam, gen), lam, gen)
    alpha0 = state.extra["alpha"].clone()
    state = alg.step(problem, state)
    return lam, alpha0, state.hypergrad, (alpha0 - state.extra["alpha"]) / LR


def _directional(fun, x, u, eps=1e-5):
    return (fun(x + eps * u) - fun(x - eps * u)) / (2 * eps)


def test_meta_gradients_match_finite_differences(registry, sine):
    lam, alpha, g_lam, g_alpha = _one_step(registry, sine)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        u = torch.randn(sine.dim_outer, generator=gen)
        fd_lam = _directional(lambda x: _adapted_loss(sine, x, alpha), lam, u)
        fd_alpha = _directional(lambda a: _adapted_loss(sine, lam, a), alpha, u)
        assert abs(float(g_lam @ u) - fd_lam) < 1e-6 * max(1.0, abs(fd_lam))
        assert abs(float(g_alpha @ u) - fd_alpha) < 1e-6 * max(1.0, abs(fd_alpha))
    assert float(g_alpha.norm()) > 0  # the step sizes are learned


def test_mutant_alpha_gradient_sign_fails(registry, sine, monkeypatch):
    module = sys.modules[registry.algorithm("meta_sgd").__module__]
    good = module.meta_sgd_grads

    def mutant(*args):
        g_lam, g_alpha = good(*args)
        return g_lam, -g_alpha

    monkeypatch.setattr(module, "meta_sgd_grads", mutant)
    lam, alpha, _, g_alpha = _one_step(registry, sine)
    u = torch.randn(sine.dim_outer, generator=torch.Generator().manual_seed(3))
    fd_alpha = _directional(lambda a: _adapted_loss(sine, lam, a), alpha, u)
    assert abs(float(g_alpha @ u) - fd_alpha) > 0.5 * abs(fd_alpha)


def test_meta_sgd_decreases_the_adapted_loss(registry, sine):
    alg = registry.algorithm("meta_sgd")(inner_steps=STEPS, outer_lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    lam = sine.init_outer(gen)
    state = alg.init(sine, sine.init_inner(lam, gen), lam, gen)
    before = _adapted_loss(sine, lam, state.extra["alpha"])
    for _ in range(30):
        state = alg.step(sine, state)
    after = _adapted_loss(sine, state.lam, state.extra["alpha"])
    assert after < 0.8 * before, (before, after)


def test_meta_sgd_needs_an_initialization_problem(registry):
    alg = registry.algorithm("meta_sgd")()
    assert "inner_init_is_outer" in alg.applies_to(registry.problem("quadratic"))
    from blobench.contracts.errors import UserError
    with pytest.raises(UserError):
        registry.algorithm("meta_sgd")(warm_start=True)
