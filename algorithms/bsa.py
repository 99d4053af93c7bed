"""BSA: bilevel stochastic approximation (Ghadimi & Wang 2018).

"Approximation methods for bilevel programming" (arXiv 1802.02246), Algorithm 2 (BSA), the
first stochastic bilevel method with a Neumann-type inverse estimate. Each outer step k:

1. t_k steps of SGD on g from the previous inner iterate (warm start, as in the paper):
   θ ← θ − β ∇_θ g(θ, λ; ζ_t), a fresh inner mini-batch per step;
2. the hypergradient estimate of the paper's eq. (2.8)-(2.9) (equation numbers not checked
   against the paper's text: ../shared/references.md has no entry for it and its text was not
   reachable; the formula below is what is implemented), with p drawn uniformly from
   {0, …, Q−1} and independent batches ξ₀ … ξ_p:

       ∇̄f = ∇_λ f(θ, λ; ξ) − J(θ, λ; ξ₀) · (Q/L) Π_{i=1..p} (I − H(θ, λ; ξ_i)/L) ∇_θ f(θ, λ; ξ)

   (unbiased for the Q-term Neumann series ∇_λ f − J (1/L) Σ_{q<Q} (I − H/L)^q ∇_θ f;
   :func:`blobench.bases.recursive.neumann_hypergradient` with a truncated draw);
3. λ ← λ − α ∇̄f.

Defaults: t_k = T = 10 inner steps (the paper lets t_k grow as √(k+1) for its rate; fixed T as
benchopt's BSA), β = None → ``problem.inner_step_size(λ)``, 1/L = η = None → β, Q = 10,
α = None → 0.1 · ``problem.outer_step_size()`` with SGD (constant and small, the paper's
α = Θ(1/√K) for a stochastic estimate; as the single-loop entries' ``OUTER_SCALE``).
Cost per outer step: T inner gradients + p ≤ Q − 1 HVPs + 1 mixed product + 1 outer gradient.
"""

from __future__ import annotations

from blobench.bases.algorithm import DoubleLoop
from blobench.bases.recursive import NeumannDraw, neumann_hypergradient
from blobench.bases.single_loop import outer_lr_default
from blobench.contracts.params import POSITIVE, Param


class BSA(DoubleLoop):
    name = "bsa"
    family = "stochastic double-loop"
    reference = "Ghadimi & Wang 2018, Alg. 2 (BSA)"
    params = {
        **DoubleLoop.params,
        "inner_steps": Param(int, 10, "T: inner SGD steps per outer step", low=1),
        "neumann_terms": Param(int, 10, "Q: the random chain has p ~ U{0..Q-1} products",
                               low=1),
        "neumann_lr": Param(float, None, "η = 1/L: Neumann scaling; None = the inner step",
                            optional=True, **POSITIVE),
    }

    def default_outer_lr(self, problem):
        return outer_lr_default(None, problem)  # a stochastic estimate: 0.1 × the default

    def hypergradient(self, problem, state):
        lam = state.lam.detach()
        theta = self.solve_inner(problem, state, lam, stochastic=True)
        eta = self.neumann_lr if self.neumann_lr is not None else self.inner_lr_at(problem, lam)
        draw = NeumannDraw.sample(problem, state.extra["generator"], self.neumann_terms,
                                  truncated=True)
        return theta, neumann_hypergradient(problem, theta, lam, draw, eta, self.neumann_terms)
