"""VRBO: variance-reduced bilevel optimizer (Yang, Ji, Liang, NeurIPS 2021).

"Provably faster algorithms for bilevel optimization", Algorithm 2 (VRBO). SARAH/SPIDER
recursive estimators (Nguyen et al. 2017; Fang et al. 2018) of the inner gradient v ≈ ∇_θ g
and of the hypergradient u ≈ dF/dλ, restarted from large (here: full) batches every q outer
steps, with an inner loop of m recursive steps on θ per outer step. Outer step k:

1. if k mod q = 0: v = ∇_θ g(θ, λ) and u = ∇̂Φ(θ, λ) on the full batch (Q-term Neumann series,
   the paper's eq. (3));
2. λ ← λ − γ u;
3. θ ← θ − ρ v, then m times, on one inner batch and one Neumann draw ξ̄ (the same samples at
   the current point (θ_t, λ) and the previous one (θ_{t−1}, λ_{t−1})):
       v ← v + ∇_θ g(θ_t, λ; B) − ∇_θ g(θ_{t−1}, λ_{t−1}; B)
       u ← u + ∇̂Φ(θ_t, λ; ξ̄) − ∇̂Φ(θ_{t−1}, λ_{t−1}; ξ̄)
       θ ← θ − ρ v.

The first correction of each inner loop spans the λ step (its previous point is (θ, λ_k)), so
the recursion telescopes exactly: u − ∇̂Φ(current) is a sum of zero-mean differences since the
last restart (:func:`blobench.bases.recursive.recursive` with a = 0). Constant step sizes
(Theorem 2).

Defaults: ρ = None → ``problem.inner_step_size(λ)``; γ = None → 0.1 · ``problem.outer_step_size``;
m = 10, Q = 10, η = ρ (benchopt's VRBO: n_inner_steps = n_shia_steps = 10); q = None →
⌈(n + m)/(b (m + 1))⌉ outer steps (about one pass over the samples between restarts, counting
the m + 1 batches per outer step). Finite-sum: it applies to problems that declare
``n_inner_samples`` and ``n_outer_samples``. Memory O(dim θ + dim λ).
"""

from __future__ import annotations

import math

from blobench import autodiff
from blobench.bases.recursive import STEP_PARAMS, NeumannDraw, neumann_hypergradient, recursive
from blobench.bases.single_loop import (
    SingleLoop,
    finite_sum_reason,
    or_default,
    outer_lr_default,
    sgd_outer_step,
)
from blobench.contracts.params import POSITIVE, Param


class VRBO(SingleLoop):
    name = "vrbo"
    family = "stochastic single-loop"
    reference = "Yang, Ji, Liang 2021 (NeurIPS), Alg. 2 (VRBO)"
    params = {
        **STEP_PARAMS,
        "inner_steps": Param(int, 10, "m: recursive θ steps per outer step", low=1),
        "neumann_terms": Param(int, 10, "Q: terms of the stochastic Neumann series", low=1),
        "neumann_lr": Param(float, None, "η: Neumann scaling; None = the inner step size",
                            optional=True, **POSITIVE),
        "period": Param(int, None, "q: outer steps between full-batch restarts; None = about "
                        "one pass over the samples", optional=True, low=1),
    }

    def applies_to(self, problem, params=None):
        return finite_sum_reason(problem)

    def setup(self, problem, state):
        state.extra.update(v=None, u=None, previous=None, period=self.period)

    def _oracles(self, problem, theta, lam, batch, draw, eta):
        return (autodiff.inner_grad(problem, theta, lam, batch),
                neumann_hypergradient(problem, theta, lam, draw, eta, self.neumann_terms))

    def step(self, problem, state):
        ex, gen = state.extra, state.extra["generator"]
        rho = or_default(self.inner_lr, problem.inner_step_size(state.lam))
        eta = or_default(self.neumann_lr, rho)
        if ex["k"] % (ex["period"] or 1) == 0 or ex["u"] is None:
            ex["v"], ex["u"] = self._oracles(problem, state.theta, state.lam.detach(), None,
                                             NeumannDraw.full(self.neumann_terms), eta)
        ex["previous"] = (state.theta, state.lam.detach().clone())
        sgd_outer_step(state, ex["u"], outer_lr_default(self.outer_lr, problem))
        lam = state.lam.detach().clone()
        state.theta = state.theta - rho * ex["v"]
        for _ in range(self.inner_steps):
            batch = problem.sample_inner_batch(gen)
            if ex["period"] is None:
                ex["period"] = self._default_period(problem, batch)
            draw = NeumannDraw.sample(problem, gen, self.neumann_terms)
            new = self._oracles(problem, state.theta, lam, batch, draw, eta)
            old = self._oracles(problem, *ex["previous"], batch, draw, eta)
            ex["v"] = recursive(ex["v"], new[0], old[0], 0.0)
            ex["u"] = recursive(ex["u"], new[1], old[1], 0.0)
            ex["previous"] = (state.theta, lam)
            state.theta = state.theta - rho * ex["v"]
        ex["k"] += 1
        return state

    def _default_period(self, problem, batch) -> int:
        if batch is None:
            return 1
        samples = int(problem.n_inner_samples) + int(problem.n_outer_samples)
        return max(1, math.ceil(samples / (len(batch) * (self.inner_steps + 1))))
