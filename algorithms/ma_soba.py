"""MA-SOBA: SOBA with a moving average of the hypergradient (Chen, Xiao, Balasubramanian 2023).

"Optimal algorithms for stochastic bilevel optimization under relaxed smoothness conditions",
Algorithm 1 (MA-SOBA). SOBA's directions (Dagréou et al. 2022, see
``algorithms/soba.py``; v approximates −H⁻¹ ∇_θ f, so J v is added) on one inner and one outer
mini-batch at (θ_k, v_k, λ_k):

    D_θ = ∇_θ g,   D_v = H v + ∇_θ f,   D_λ = ∇_λ f + J v

    θ_{k+1} = θ_k − ρ_k D_θ,   v_{k+1} = Π_R(v_k − ρ_k D_v)
    λ_{k+1} = λ_k − γ_k h_k,   h_{k+1} = h_k + β_k (D_λ − h_k)

λ moves along the moving average h of the hypergradient estimates (h_0 = 0, so the first step
leaves λ in place), which removes SOBA's need for higher-order smoothness. The recorded
hypergradient (``state.hypergrad``, at ``hypergrad_at`` = λ_k) is D_λ at the current point, the
paper's estimate; h_k is a lagged average of past ones. Π_R projects v onto
the ball of radius R (``v_radius``; None: no projection — the paper's R only needs to exceed
‖H⁻¹∇_θ f‖). Steps of the paper's Theorem: all constant (∝ 1/√K for a horizon K) — the default
here, constant ρ, γ, β; ``decay=true`` gives the anytime form ∝ (k+1)^{-1/2}.

Defaults: ρ = None → ``problem.inner_step_size(λ)``; γ = None → 0.1 · ``problem.outer_step_size``;
β = 0.5, constant (measured with ``blobench check ma_soba``: the decaying form's slower
steps leave the mean cosine with dF/dλ on quadratic at 0.50 against 0.68 constant, and
h(λ) − h* on finite_sum_quadratic at 0.65 against 0.016 after 300 steps). Cost per step:
SOBA's (1 inner gradient + 1 HVP + 1 mixed product + 1 outer gradient); memory
O(dim θ + dim λ).
"""

from __future__ import annotations

import torch

from blobench.bases.recursive import STEP_PARAMS, soba_update
from blobench.bases.single_loop import (
    SingleLoop,
    decayed,
    inner_batch,
    or_default,
    outer_batch,
    outer_lr_default,
    soba_oracles,
)
from blobench.contracts.params import POSITIVE, Param


class MASOBA(SingleLoop):
    name = "ma_soba"
    family = "stochastic single-loop"
    reference = "Chen, Xiao, Balasubramanian 2023, Alg. 1 (MA-SOBA)"
    params = {
        **STEP_PARAMS,
        "average": Param(float, 0.5, "β: weight of the new estimate in the moving average",
                         low=0.0, high=1.0, low_open=True),
        "decay": Param(bool, False, "ρ, γ, β ∝ (k+1)^-1/2 (else constant, the paper's)"),
        "v_radius": Param(float, None, "R: project v onto ‖v‖ ≤ R; None = no projection",
                          optional=True, **POSITIVE),
    }

    def setup(self, problem, state):
        state.extra.update(v=torch.zeros_like(state.theta), h=torch.zeros_like(state.lam))

    def step(self, problem, state):
        ex, k = state.extra, state.extra["k"]
        rho = or_default(self.inner_lr, problem.inner_step_size(state.lam))
        gamma, beta = outer_lr_default(self.outer_lr, problem), self.average
        if self.decay:
            rho, gamma, beta = decayed(rho, k, 0.5), decayed(gamma, k, 0.5), decayed(beta, k, 0.5)
        d = soba_oracles(problem, state.theta, ex["v"], state.lam.detach(),
                         inner_batch(problem, state), outer_batch(problem, state))
        h, estimate = ex["h"], d["f_lam"] + d["jv"]
        soba_update(state, d, rho, gamma, outer_direction=h)
        # the recorded hypergradient is the paper's estimate D_λ at (θ_k, v_k, λ_k) (what the
        # average is made of), not the lagged average h_k that moves λ
        state.hypergrad = estimate
        ex["h"] = h + beta * (estimate - h)
        if self.v_radius is not None:
            norm = float(torch.linalg.vector_norm(ex["v"]))
            if norm > self.v_radius:
                ex["v"] = ex["v"] * (self.v_radius / norm)
        return state
