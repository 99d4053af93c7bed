"""BOME: bilevel optimization made easy (Liu, Ye, Wright, Stone, Liu, NeurIPS 2022).

A value-function method, first order only (no Hessian or mixed products). The bilevel
problem is min_{λ,θ} f(θ, λ) s.t. q(θ, λ) = g(θ, λ) − min_θ' g(θ', λ) ≤ 0. Each step k
(the paper's Algorithm 1, with x = λ, y = θ):

1. ϑ_T: T steps of gradient descent on g(·, λ_k) starting from ϑ_0 = θ_k,
   ϑ ← ϑ − α ∇_θ g(ϑ, λ_k);
2. q̂(θ, λ) = g(θ, λ) − g(ϑ_T, λ), with ϑ_T held fixed:
   ∇q̂ = (∇_θ g(θ_k, λ_k),  ∇_λ g(θ_k, λ_k) − ∇_λ g(ϑ_T, λ_k));
3. the dynamic-barrier multiplier  φ_k = η ‖∇q̂‖²,
   μ_k = max(φ_k − ⟨∇f, ∇q̂⟩, 0) / ‖∇q̂‖²   (0 when ∇q̂ = 0);
4. (θ, λ) ← (θ, λ) − ξ (∇f + μ_k ∇q̂), ∇f = (∇_θ f, ∇_λ f) at (θ_k, λ_k).

(The paper calls the multiplier λ_k; here λ is the outer variable, so it is μ_k.) The λ-part
of ∇f + μ_k ∇q̂ is this method's hypergradient estimate (``state.hypergrad``).

Defaults: η = 0.5 and T = 10 (the paper's experiments). The paper uses one step ξ for the
joint (θ, λ) update; here ξ_θ (``lr``, None → ``problem.inner_step_size(λ)``) and ξ_λ
(``outer_lr``, None → 0.1 · ``problem.outer_step_size()``) may differ — set them equal for the
paper's single ξ. α (``inner_lr``) None → the problem's inner step. Gradients use one inner
and one outer mini-batch per step from the problem's samplers (full batch when they return
None). Cost per step: T + 2 inner gradients + 1 outer gradient; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench import autodiff
from blobench.params import POSITIVE, Param
from blobench.single_loop import (
    SingleLoop,
    inner_batch,
    or_default,
    outer_batch,
    outer_lr_default,
    sgd_outer_step,
)


class BOME(SingleLoop):
    name = "bome"
    family = "value-function (first order)"
    reference = "Liu, Ye, Wright, Stone, Liu 2022 (NeurIPS), Alg. 1 (BOME)"
    params = {
        "inner_steps": Param(int, 10, "T: gradient steps on g for the value function", low=1),
        "inner_lr": Param(float, None, "α: step of those T steps; None = the problem's 1/L",
                          optional=True, **POSITIVE),
        "lr": Param(float, None, "ξ_θ: step of the joint update on θ; None = the problem's 1/L",
                    optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "ξ_λ: step of the joint update on λ; None = 0.1 × the "
                          "problem's default", optional=True, **POSITIVE),
        "eta": Param(float, 0.5, "η: φ_k = η‖∇q̂‖² (barrier strength)", **POSITIVE),
    }

    def step(self, problem, state):
        lam = state.lam.detach()
        theta = state.theta
        alpha = or_default(self.inner_lr, problem.inner_step_size(lam))
        batch = inner_batch(problem, state)
        value_theta = autodiff.gradient_descent(problem, theta, lam, self.inner_steps, alpha,
                                                sample=lambda: batch)
        g_theta, g_lam = autodiff.inner_grads(problem, theta, lam, batch)
        _, g_lam_value = autodiff.inner_grads(problem, value_theta, lam, batch)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam, outer_batch(problem, state))
        q_theta, q_lam = g_theta, g_lam - g_lam_value
        q_sq = float(q_theta @ q_theta + q_lam @ q_lam)
        inner_prod = float(f_theta @ q_theta + f_lam @ q_lam)
        mu = max(self.eta * q_sq - inner_prod, 0.0) / q_sq if q_sq > 0 else 0.0
        state.extra["multiplier"] = mu
        state.extra["value_theta"] = value_theta
        state.theta = theta - or_default(self.lr, problem.inner_step_size(lam)) * (
            f_theta + mu * q_theta)
        sgd_outer_step(state, f_lam + mu * q_lam, outer_lr_default(self.outer_lr, problem))
        state.extra["k"] += 1
        return state
