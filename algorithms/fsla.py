"""FSLA: fully single-loop algorithm for bilevel optimization (Li, Gu, Huang, AAAI 2022).

"A fully single loop algorithm for bilevel optimization without Hessian inverse",
Algorithm 1. One step of each of three coupled recursions per outer step, no inner loop and
no Neumann series: the linear-system variable v (→ H⁻¹ ∇_θ f) is itself updated recursively,
and the hypergradient estimate carries STORM momentum (Cutkosky & Orabona 2019):

    θ_{k+1} = θ_k − ρ_k ∇_θ g(θ_k, λ_k; B₁)
    v_{k+1} = v_k − ρ_k (H(θ_{k+1}, λ_k; B₂) v_k − ∇_θ f(θ_{k+1}, λ_k; D₁))
    ĥ(θ, v, λ) = ∇_λ f(θ, λ; D₂) − J(θ, λ; B₃) v
    d_k = ĥ(θ_{k+1}, v_{k+1}, λ_k) + (1 − a_k)(d_{k−1} − ĥ(θ_k, v_k, λ_{k−1}))
    λ_{k+1} = λ_k − γ_k d_k

(the momentum correction evaluates ĥ at the previous point on the same batches D₂, B₃;
:func:`blobench.bases.recursive.recursive`). Step sizes ∝ (k+1)^{-1/2} for ρ, γ and the momentum
weight a_k (the schedule of benchopt's FSLA; the paper's Theorem takes constant steps of order
1/√K); ``decay=false`` keeps them constant (a_k = a).

Defaults: ρ = None → ``problem.inner_step_size(λ)``; γ = None → 0.1 · ``problem.outer_step_size``;
a = 1 (a_0 = 1: the first estimate is the plain one). Cost per step: 1 inner gradient + 1 HVP +
2 outer gradients + 2 (outer gradient + mixed product); memory O(dim θ + dim λ).
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.recursive import STEP_PARAMS, linear_hypergradient, recursive
from blobench.bases.single_loop import (
    SingleLoop,
    decayed,
    inner_batch,
    or_default,
    outer_batch,
    outer_lr_default,
    sgd_outer_step,
)
from blobench.contracts.params import POSITIVE, Param


class FSLA(SingleLoop):
    name = "fsla"
    family = "stochastic single-loop"
    reference = "Li, Gu, Huang 2022 (AAAI), Alg. 1 (FSLA)"
    params = {
        **STEP_PARAMS,
        "momentum": Param(float, 1.0, "a: STORM weight a_k = min(1, a (k+1)^-1/2)", **POSITIVE),
        "decay": Param(bool, True, "ρ, γ, a ∝ (k+1)^-1/2 (else constant)"),
    }

    def setup(self, problem, state):
        state.extra.update(v=torch.zeros_like(state.theta), d=None, previous=None)

    def step(self, problem, state):
        ex, k = state.extra, state.extra["k"]
        rho = or_default(self.inner_lr, problem.inner_step_size(state.lam))
        gamma, a = outer_lr_default(self.outer_lr, problem), self.momentum
        if self.decay:
            rho, gamma, a = decayed(rho, k, 0.5), decayed(gamma, k, 0.5), decayed(a, k, 0.5)
        lam = state.lam.detach().clone()
        old_theta, old_v = state.theta, ex["v"]
        theta = old_theta - rho * autodiff.inner_grad(problem, old_theta, lam,
                                                      inner_batch(problem, state))
        f_theta, _ = autodiff.outer_grads(problem, theta, lam, outer_batch(problem, state))
        hv = autodiff.InnerDerivatives(problem, theta, lam, inner_batch(problem, state)).hvp(old_v)
        v = old_v - rho * (hv - f_theta)
        batches = (outer_batch(problem, state), inner_batch(problem, state))
        new = linear_hypergradient(problem, theta, lam, v, *batches)
        old = (linear_hypergradient(problem, old_theta, ex["previous"], old_v, *batches)
               if ex["previous"] is not None else None)
        ex["d"] = recursive(ex["d"], new, old, min(1.0, a))
        ex["previous"], ex["v"], state.theta = lam, v, theta
        sgd_outer_step(state, ex["d"], gamma)
        ex["k"] += 1
        return state
