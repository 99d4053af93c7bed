"""AmIGO: amortized implicit gradient optimization (Arbel & Mairal, ICLR 2022).

"Amortized implicit differentiation for stochastic bilevel optimization", Algorithm 1 (AmIGO)
with SGD for both inner solvers (their Algorithms 2-3). Each outer step k:

1. θ: T steps of SGD on g, warm-started from the previous θ,
   θ ← θ − α ∇_θ g(θ, λ; S_t) (fresh inner mini-batch per step);
2. one outer mini-batch D_f, and (∇_θ f, ∇_λ f) = ∇f(θ, λ; D_f) on it (Alg. 1, lines 4-5);
3. v: M steps of SGD on the quadratic ½ vᵀ H v − vᵀ ∇_θ f (whose minimizer is H⁻¹ ∇_θ f),
   warm-started from the previous v (the amortization), with that **one** ∇_θ f as the
   right-hand side: v ← v − β (∇²_θθ g(θ, λ; B_t) v − ∇_θ f) (fresh inner batch B_t per
   step; ``autodiff.fixed_point``);
4. hypergradient ψ = ∇_λ f(θ, λ; D_f) − ∇²_λθ g(θ, λ; B) v on a fresh inner batch B (IFT;
   the paper writes z = −v and adds ∂_xy g z), and λ ← λ − γ ψ.

One outer mini-batch (one outer-gradient oracle) per outer step, as in the paper and
benchopt's reference implementation; before issue 24 blobench drew a fresh outer batch at
each of the M linear-system steps (M + 1 outer gradients per step).

Step sizes: α = None → ``problem.inner_step_size(λ)``; β = None → α; γ = None →
``problem.outer_step_size()``. Cost per outer step: T inner gradients + 1 outer gradient +
M HVPs + 1 mixed product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import DoubleLoop
from blobench.bases.single_loop import FreshBatchDerivatives
from blobench.contracts.params import Param


class AmIGO(DoubleLoop):
    name = "amigo"
    family = "stochastic double-loop"
    reference = "Arbel & Mairal 2022 (ICLR), Alg. 1 (AmIGO)"
    params = {
        **DoubleLoop.params,
        "inner_steps": Param(int, 10, "T: inner SGD steps per outer step", low=1),
        "linear_steps": Param(int, 10, "M: SGD steps on the linear system per outer step",
                              low=1),
        "linear_lr": Param(float, None, "β: step on v; None = the inner step size",
                           optional=True, low=0.0, low_open=True),
    }

    def hypergradient(self, problem, state):
        gen = state.extra["generator"]
        lam = state.lam.detach()
        lr = self.inner_lr_at(problem, lam)
        theta = self.solve_inner(problem, state, lam, stochastic=True)
        beta = self.linear_lr if self.linear_lr is not None else lr
        v = state.extra.get("linear_solution")
        if v is None:
            v = torch.zeros_like(theta)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam,
                                              problem.sample_outer_batch(gen))
        fresh = FreshBatchDerivatives(problem, theta, lam,
                                      lambda: problem.sample_inner_batch(gen))
        v = autodiff.fixed_point(fresh.hvp, f_theta, self.linear_steps, beta, x0=v)
        state.extra["linear_solution"] = v.detach()
        return theta, f_lam - fresh.mixed(v)
