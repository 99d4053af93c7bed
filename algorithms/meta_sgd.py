"""Meta-SGD: learning the initialization and per-parameter inner step sizes (Li, Zhou, Chen, Li
2017, "Meta-SGD: learning to learn quickly for few-shot learning", Alg. 1).

MAML's inner step with a learned vector of step sizes α (one per model parameter, in λ's
space), meta-learned together with the initialization λ:

    θ_{t+1} = θ_t − α_θ ∘ ∇_θ g(θ_t, λ),   θ_0 = θ₀(λ),   t < T           (the paper's eq. 2)
    (λ, α) ← (λ, α) − β ∇_{(λ, α)} f(θ_T(λ, α), λ)                       (eq. 3)

where α_θ = θ₀(α) spreads α over the task copies with the problem's own copy map (θ₀(λ) =
(λ, …, λ) on the few-shot problems). Both gradients by reverse mode through the T steps
(``autodiff.unroll`` with a tensor step size records the graph of α as well), i.e. MAML's
second-order meta-gradient plus ∂f/∂α = −Σ_t (∇_θ g(θ_t) ∘ a_{t+1}) with a the adjoint.
``state.hypergrad`` is the λ part; α and its optimizer live in ``state.extra`` (``alpha``).

Defaults: T = 1 step (the paper's), α₀ = the problem's inner step size in every entry (the
paper draws α₀ uniformly in [0.005, 0.1]; a constant start makes the first step MAML's),
Adam with the problem's meta step size β on both λ and α (as the paper). Note: the
problems' ``evaluate`` re-adapts with their fixed inner step size, so the learned α shows in
the run's own θ and the outer loss, not in the held-out metrics.
Applies where θ₀ is a function of λ (``inner_init_is_outer``); cold start by definition.
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import (
    DoubleLoop,
    init_dependence_reason,
    make_outer_optimizer,
    meta_params,
)


class MetaSGD(DoubleLoop):
    name = "meta_sgd"
    family = "meta-learning (initialization)"
    reference = "Li, Zhou, Chen, Li 2017 (Meta-SGD), Alg. 1"
    params = meta_params(1, "α₀: initial step size of every parameter; None = the problem's",
                         "torch.optim optimizer on λ and α")

    differentiates_through_init = True

    def applies_to(self, problem, params=None):
        return init_dependence_reason(problem)

    def init(self, problem, theta0, lam0, generator):
        state = super().init(problem, theta0, lam0, generator)
        alpha = torch.full_like(state.lam, self.inner_lr_at(problem, state.lam))
        lr = state.extra["outer_optimizer"].param_groups[0]["lr"]
        state.extra.update(alpha=alpha, alpha_optimizer=make_outer_optimizer(
            self.outer_optimizer, alpha, lr))
        return state

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        alpha = state.extra["alpha"].detach().requires_grad_(True)
        with torch.enable_grad():
            theta0 = self.start_theta(problem, state, lam)
            rates = problem.init_inner(alpha, torch.Generator().manual_seed(0))
        theta_t = autodiff.unroll(problem, theta0, lam, self.inner_steps, rates)
        f_theta, f_lam = autodiff.outer_grads(problem, theta_t, lam.detach())
        g_lam, g_alpha = meta_sgd_grads(theta_t, lam, alpha, f_theta)
        leaf = state.extra["alpha"]
        leaf.grad = g_alpha
        state.extra["alpha_optimizer"].step()
        leaf.grad = None
        return theta_t.detach(), f_lam + g_lam


def meta_sgd_grads(theta_t: torch.Tensor, lam: torch.Tensor, alpha: torch.Tensor,
                   f_theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((∂θ_T/∂λ)ᵀ ∇_θ f, (∂θ_T/∂α)ᵀ ∇_θ f) by one reverse pass through the unrolled steps."""
    grads = torch.autograd.grad(theta_t, (lam, alpha), f_theta, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g
                 for g, x in zip(grads, (lam, alpha), strict=True))
