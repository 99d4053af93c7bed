"""Issue 21: ``anil`` (Raghu et al. 2020) and the backward-compatible ``Problem.head_mask``
declaration. The meta-gradient is compared with central finite differences of the head-only
adapted outer loss, written out here with plain autograd steps on a tiny sinusoid."""

from __future__ import annotations

import sys

import pytest
import torch

TINY = {"n_tasks": 2, "k_shot": 5, "hidden": 8, "n_test_tasks": 2}
STEPS = 2


@pytest.fixture(scope="module")
def sine(registry):
    return registry.problem("sinusoid")(seed=0, **TINY)


def _head_adapted_loss(problem, lam, steps=STEPS):
    lr = problem.inner_step_size(lam)
    mask = problem.init_inner(problem.head_mask().to(lam.dtype), None)
    theta = problem.init_inner(lam, None)
    for _ in range(steps):
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(problem.inner_loss(theta, lam), theta)
        theta = theta - lr * mask * grad
    return float(problem.outer_loss(theta, lam))


def _one_step(registry, problem):
    alg = registry.algorithm("anil")(inner_steps=STEPS)
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    state = alg.step(problem, state)
    return lam, state


def test_head_mask_is_the_last_layer_and_optional(registry, sine):
    mask = sine.head_mask()
    hidden = TINY["hidden"]
    assert mask.dtype == torch.bool and int(mask.sum()) == hidden + 1  # weight 1×h, bias 1
    assert bool(mask[-(hidden + 1):].all()) and not bool(mask[:-(hidden + 1)].any())
    assert registry.problem("quadratic")(seed=0).head_mask() is None  # the default


def test_anil_adapts_only_the_head(registry, sine):
    lam, state = _one_step(registry, sine)
    per_task = sine.per_task(state.theta)
    mask = sine.head_mask()
    assert torch.equal(per_task[:, ~mask], lam[~mask].expand(TINY["n_tasks"], -1))
    assert float((per_task[:, mask] - lam[mask]).abs().max()) > 0


def test_anil_meta_gradient_matches_finite_differences(registry, sine):
    lam, state = _one_step(registry, sine)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        u = torch.randn(sine.dim_outer, generator=gen)
        eps = 1e-5
        fd = (_head_adapted_loss(sine, lam + eps * u) - _head_adapted_loss(sine, lam - eps * u)
              ) / (2 * eps)
        assert abs(float(state.hypergrad @ u) - fd) < 1e-6 * max(1.0, abs(fd))


def test_mutant_body_only_adaptation_fails(registry, sine, monkeypatch):
    module = sys.modules[registry.algorithm("anil").__module__]
    good = module.head_rates

    def body_rates(problem, lr, like):
        full = problem.init_inner(torch.full_like(like, lr), None)
        return full - good(problem, lr, like)

    monkeypatch.setattr(module, "head_rates", body_rates)
    lam, state = _one_step(registry, sine)
    u = torch.randn(sine.dim_outer, generator=torch.Generator().manual_seed(3))
    eps = 1e-5
    fd = (_head_adapted_loss(sine, lam + eps * u) - _head_adapted_loss(sine, lam - eps * u)
          ) / (2 * eps)
    assert abs(float(state.hypergrad @ u) - fd) > 1e-3 * abs(fd)


def test_anil_applies_only_where_a_head_is_declared(registry):
    anil = registry.algorithm("anil")()
    assert "inner_init_is_outer" in anil.applies_to(registry.problem("quadratic"))
    assert anil.applies_to(registry.problem("sinusoid")) is None
    assert anil.applies_to(registry.problem("fewshot_digits")) is None
