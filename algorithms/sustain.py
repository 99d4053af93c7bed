"""SUSTAIN: single-timescale double-momentum stochastic approximation (Khanduri et al. 2021).

"A near-optimal algorithm for stochastic bilevel optimization via double-momentum"
(Khanduri, Zeng, Hong, Wai, Wang, Yang, NeurIPS 2021), Algorithm 1. Momentum-assisted
(STORM) estimators of both the inner gradient and the hypergradient:

    h^g_k = ∇_θ g(θ_k, λ_k; ζ) + (1 − η_k)(h^g_{k−1} − ∇_θ g(θ_{k−1}, λ_{k−1}; ζ))
    h^f_k = ∇̄f(θ_k, λ_k; ξ̄) + (1 − η_k)(h^f_{k−1} − ∇̄f(θ_{k−1}, λ_{k−1}; ξ̄))
    λ_{k+1} = λ_k − α_k h^f_k,     θ_{k+1} = θ_k − β_k h^g_k

with ∇̄f Ghadimi & Wang's hypergradient estimator (2018, eq. (2.8)-(2.9)): a randomly
truncated Neumann chain, ∇_λ f − J · (Q/L) Π_{i=1..p} (I − H_i/L) ∇_θ f, p ~ U{0, …, Q−1},
drawn once per step and used at both points (:class:`blobench.bases.recursive.DoubleMomentum`,
``truncated = True``). Step sizes of the paper's Theorem 1: α_k, β_k ∝ (k+1)^{-1/3} (ρ, γ below)
and η_k ∝ α_k² ∝ (k+1)^{-2/3} (a_k = min(1, c (k+1)^{-2/3})).

Differs from ``mrbo`` only in the hypergradient estimator (one random-length product chain
instead of the summed series): on average p = (Q−1)/2 HVPs per point instead of Q.
Defaults: ρ = None → ``problem.inner_step_size(λ)``; γ = None → 0.1 · ``problem.outer_step_size``;
Q = 10, 1/L = η = ρ; c = 1. Memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench.bases.recursive import DoubleMomentum


class SUSTAIN(DoubleMomentum):
    name = "sustain"
    family = "stochastic single-loop"
    reference = "Khanduri et al. 2021 (NeurIPS), Alg. 1 (SUSTAIN)"
    truncated = True
