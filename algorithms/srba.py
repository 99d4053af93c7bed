"""SRBA: stochastic recursive bilevel algorithm (Dagréou, Moreau, Vaiter, Ablin, AISTATS 2024).

"A lower bound and a near-optimal algorithm for bilevel empirical risk minimization",
Algorithm 1 (SRBA). The three directions of SOBA (Dagréou et al. 2022, eq. 5–6; see
``algorithms/soba.py``; v approximates −H⁻¹ ∇_θ f, so J v is added)

    D_θ = ∇_θ g,   D_v = H v + ∇_θ f,   D_λ = ∇_λ f + J v

are estimated by SARAH's recursion (Nguyen et al. 2017) with periodic full restarts: every q
steps the full-batch directions at the current (θ, v, λ); in between, on one inner batch i and
one outer batch j, the same oracles at the current and at the previous point,

    D_t = D_{t−1} + D(θ_t, v_t, λ_t; i, j) − D(θ_{t−1}, v_{t−1}, λ_{t−1}; i, j)

(:func:`blobench.bases.recursive.recursive` with a = 0), then the simultaneous update
θ ← θ − ρ D_θ, v ← v − ρ D_v, λ ← λ − γ D_λ with constant steps (the paper's Theorem 1).
The paper's projection of v onto a ball (for the analysis) is not applied.

Defaults: ρ = None → ``problem.inner_step_size(λ)``; γ = None → 0.1 · ``problem.outer_step_size``
(``single_loop.OUTER_SCALE``); period q = None → ⌈(n + m) / b⌉ with b the size of the first inner
mini-batch (one pass over the samples between restarts, so the restarts cost about as many
oracle calls as the recursive steps; the paper's theory takes q ∝ √(n + m) with b ∝ √(n + m)).
A finite-sum method: it applies to problems that declare ``n_inner_samples`` and
``n_outer_samples``. Cost per step: twice SOBA's oracles (two points) on the batches, plus
n + m per-sample oracles every q steps; memory O(dim θ + dim λ).
"""

from __future__ import annotations

import math

from blobench.bases.recursive import STEP_PARAMS, recursive, soba_update
from blobench.bases.single_loop import (
    SingleLoop,
    finite_sum_reason,
    inner_batch,
    or_default,
    outer_batch,
    outer_lr_default,
    soba_oracles,
)
from blobench.contracts.params import Param


def default_period(problem, batch) -> int:
    """⌈(n + m) / b⌉ with b the size of ``batch`` (1 step when it is the full batch)."""
    if batch is None:
        return 1
    n = int(problem.n_inner_samples) + int(problem.n_outer_samples)
    return max(1, math.ceil(n / len(batch)))


class SRBA(SingleLoop):
    name = "srba"
    family = "stochastic single-loop"
    reference = "Dagréou, Moreau, Vaiter, Ablin 2024 (AISTATS), Alg. 1 (SRBA)"
    params = {
        **STEP_PARAMS,
        "period": Param(int, None, "q: steps between full-batch restarts; None = "
                        "⌈(n + m) / batch size⌉", optional=True, low=1),
    }

    def applies_to(self, problem, params=None):
        return finite_sum_reason(problem)

    def setup(self, problem, state):
        state.extra.update(v=state.theta.new_zeros(state.theta.shape), directions=None,
                           previous=None, period=self.period)

    def directions(self, problem, state):
        """SARAH estimates of (D_θ, D_v, D_λ) at the current point (full batch every q)."""
        point = (state.theta, state.extra["v"], state.lam.detach().clone())
        ex = state.extra
        batch_i, batch_j = inner_batch(problem, state), outer_batch(problem, state)
        if ex["period"] is None:
            ex["period"] = default_period(problem, batch_i)
        if ex["k"] % ex["period"] == 0 or ex["previous"] is None:
            fresh = soba_oracles(problem, *point)
        else:
            new = soba_oracles(problem, *point, batch_i, batch_j)
            old = soba_oracles(problem, *ex["previous"], batch_i, batch_j)
            fresh = recursive(ex["directions"], new, old, 0.0)
        ex["previous"], ex["directions"] = point, fresh
        return fresh

    def step(self, problem, state):
        rho = or_default(self.inner_lr, problem.inner_step_size(state.lam))
        gamma = outer_lr_default(self.outer_lr, problem)
        soba_update(state, self.directions(problem, state), rho, gamma)
        return state
