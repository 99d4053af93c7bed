"""MRBO: momentum-based recursive bilevel optimizer (Yang, Ji, Liang, NeurIPS 2021).

"Provably faster algorithms for bilevel optimization", Algorithm 1 (MRBO). STORM momentum
(Cutkosky & Orabona 2019) on both levels, a single loop: at step k, on one sample,

    u_k = ∇_θ g(θ_k, λ_k) + (1 − α_k)(u_{k−1} − ∇_θ g(θ_{k−1}, λ_{k−1}))       (inner direction)
    w_k = ∇̂Φ(θ_k, λ_k) + (1 − β_k)(w_{k−1} − ∇̂Φ(θ_{k−1}, λ_{k−1}))           (hypergradient)
    θ_{k+1} = θ_k − ρ_k u_k,   λ_{k+1} = λ_k − γ_k w_k

where ∇̂Φ is the paper's eq. (3) (equation and theorem numbers here not checked against the
paper's text: ../shared/references.md has no entry for it and the text was not reachable):
∇_λ f − J · η Σ_{q=0..Q} Π_{j≤q} (I − η H(B_j)) ∇_θ f, the
summed Q-term stochastic Neumann series, evaluated at both points on the same batches
(:class:`blobench.bases.recursive.DoubleMomentum`, ``truncated = False``). Step sizes as in the
paper's Theorem 1: η_k ∝ (k+1)^{-1/3} for both variables and momentum weights
α_k = β_k ∝ η_k² ∝ (k+1)^{-2/3} (here a_k = min(1, c (k+1)^{-2/3}), so the first estimate is the
plain stochastic one); ``decay=false`` keeps ρ, γ constant.

Defaults: ρ = None → ``problem.inner_step_size(λ)``; γ = None → 0.1 · ``problem.outer_step_size``;
Q = 10, η = ρ (as benchopt's MRBO, n_shia_steps = 10); c = 1. Cost per step: 2 × (inner
gradient + Q HVPs + mixed product + outer gradient); memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench.bases.recursive import DoubleMomentum


class MRBO(DoubleMomentum):
    name = "mrbo"
    family = "stochastic single-loop"
    reference = "Yang, Ji, Liang 2021 (NeurIPS), Alg. 1 (MRBO)"
    truncated = False
