"""Test-only problem and algorithm for blobench tune (tests/test_tuning.py).

Problem ``tuning_toy``: g(θ, λ) = ½(θ − λ)², so θ*(λ) = λ; validation (outer) objective
f(θ, λ) = ½(θ − 1)², so F(λ) = ½(λ − 1)²; held-out test metric ½(λ − 2)². Validation and test
disagree on purpose: from λ₀ = 0, one exact step λ₁ = λ₀ − α F'(λ₀) = α puts the
validation-best step size at α = 1 and the test-best at α = 2.

Algorithm ``toy_descent``: one exact hypergradient step per outer step, θ ← θ*(λ) after it;
it declares its search space, including a step size that overflows (a diverging trial).
"""

from __future__ import annotations

import torch

from blobench.bases.algorithm import Algorithm, State
from blobench.contracts.params import Choice, Param
from blobench.contracts.problem import Budget, Problem


class TuningToy(Problem):
    name = "tuning_toy"
    family = "test"
    primary_metric = "test_loss"
    budgets = {"quick": Budget(steps=1, eval_every=1), "full": Budget(steps=1, eval_every=1)}

    def build(self, generator):
        pass

    @property
    def dim_inner(self):
        return 1

    @property
    def dim_outer(self):
        return 1

    def inner_loss(self, theta, lam, batch=None):
        return 0.5 * ((theta - lam) ** 2).sum()

    def outer_loss(self, theta, lam, batch=None):
        return 0.5 * ((theta - 1.0) ** 2).sum()

    def init_outer(self, generator):
        return torch.zeros(1, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(1, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0

    def outer_step_size(self):
        return 1.0

    def evaluate(self, theta, lam):
        return {"test_loss": float(0.5 * ((lam - 2.0) ** 2).sum())}


class ToyDescent(Algorithm):
    name = "toy_descent"
    family = "test"
    params = {"outer_lr": Param(float, 0.5, "step size on λ", low=0.0, low_open=True)}
    search_space = {"outer_lr": Choice([0.5, 1.0, 2.0, 1e200])}

    def init(self, problem, theta0, lam0, generator):
        return State(theta=theta0.detach().clone(), lam=lam0.detach().clone())

    def step(self, problem, state):
        hypergrad = state.lam - 1.0  # F'(λ) = λ − 1
        state.hypergrad_at = state.lam.clone()
        state.hypergrad = hypergrad
        state.lam = state.lam - self.outer_lr * hypergrad
        state.theta = state.lam.clone()  # θ*(λ)
        return state


class FragileToy(TuningToy):
    """``fragile_toy``: F(λ) = ½ c (λ − 1)² with θ*(λ) = λ, where the seed draws the curvature:
    c = ½ on the first tuning seed (1000), c = 2 on every other. Gradient descent on λ
    contracts by |1 − α c| per step, so the search's best step α = 1.9 (factor 0.05 at
    c = ½) grows by 2.8 per step on every other draw and diverges there; α = 1 oscillates at
    c = 2 without diverging, α = 0.3 converges on both (tests/test_tuning.py's confirmation
    test)."""

    name = "fragile_toy"
    budgets = {"quick": Budget(steps=20, eval_every=20), "full": Budget(steps=20, eval_every=20)}

    def build(self, generator):
        self.curvature = 0.5 if self.seed == 1000 else 2.0

    def outer_loss(self, theta, lam, batch=None):
        return 0.5 * self.curvature * ((theta - 1.0) ** 2).sum()


class CurvedDescent(ToyDescent):
    """``curved_descent``: exact hypergradient steps on ``fragile_toy``, F'(λ) = c (λ − 1)."""

    name = "curved_descent"
    search_space = {"outer_lr": Choice([0.3, 1.0, 1.9])}

    def applies_to(self, problem, params=None):
        return None if problem.name == "fragile_toy" else "fragile_toy only"

    def step(self, problem, state):
        state.hypergrad_at = state.lam.clone()
        state.hypergrad = problem.curvature * (state.lam - 1.0)
        state.lam = state.lam - self.outer_lr * state.hypergrad
        state.theta = state.lam.clone()
        return state


class RefusedAtRunTime(ToyDescent):
    """``refused_descent``: refuses every instance once built (as ``exact`` refuses a dim θ
    over its dense-Hessian limit): every trial is ``not_applicable``."""

    name = "refused_descent"

    def init(self, problem, theta0, lam0, generator):
        from blobench.contracts.errors import NotApplicable

        raise NotApplicable("refused_descent: this instance is too large (test)")
