"""Recursive (SARAH / STORM) estimators and stochastic Neumann hypergradients.

Shared by the variance-reduced and momentum entries of Dagréou et al.'s benchmark family
(``srba``, ``vrbo``, ``mrbo``, ``sustain``, ``fsla``, ``bsa``). Notation as in
:mod:`blobench.autodiff`: H = ∇²_θθ g, J = ∇²_λθ g, hypergradient ∇_λ f − J H⁻¹ ∇_θ f.

**Recursive estimators.** With h(x; ξ) a stochastic oracle, x_k the current point and x_{k−1}
the previous one, both evaluated on the *same* sample ξ_k:

    d_k = h(x_k; ξ_k) + (1 − a_k) (d_{k−1} − h(x_{k−1}; ξ_k))

a_k = 0 is SARAH's recursion d_k = d_{k−1} + h(x_k) − h(x_{k−1}) (Nguyen et al. 2017, eq. 2;
SPIDER / SRBA / VRBO); 0 < a_k < 1 is STORM's momentum (Cutkosky & Orabona 2019, eq. 4;
MRBO, SUSTAIN, FSLA); a_k = 1 is the plain stochastic estimate. :func:`recursive`.

**Stochastic Neumann hypergradients.** One estimate ∇̂Φ(θ, λ; ξ̄) of dF/dλ at an inner
iterate θ from a draw ξ̄ = (outer batch D, mixed batch B₀, Hessian batches B₁ … B_p):

- summed (Ji, Yang, Liang 2021, eq. 4; MRBO/VRBO, Yang, Ji, Liang 2021, eq. 3), p = Q:
  v = η Σ_{q=0..Q} Π_{j≤q} (I − η H(B_j)) ∇_θ f(D)            (:func:`autodiff.neumann`)
- randomly truncated (Ghadimi & Wang 2018, eq. (2.8)-(2.9); BSA, SUSTAIN), p ~ U{0, …, Q−1}:
  v = Q η Π_{j=1..p} (I − η H(B_j)) ∇_θ f(D),  whose mean over p is η Σ_{q<Q} (I − ηH)^q ∇_θ f
  (unbiased for the Q-term series with one product chain, not Q of them);

then ∇̂Φ = ∇_λ f(D) − J(B₀) v. A :class:`NeumannDraw` holds the batches so that the same
estimate can be evaluated at two points on one sample, as the recursive estimators need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import torch

from blobench import autodiff
from blobench.bases.algorithm import State
from blobench.bases.single_loop import (
    FreshBatchDerivatives,
    SingleLoop,
    decayed,
    or_default,
    outer_lr_default,
    sgd_outer_step,
)
from blobench.contracts.params import POSITIVE, Param
from blobench.contracts.problem import Batch, Problem

Tensor = torch.Tensor
T = TypeVar("T", Tensor, dict)


def recursive(previous: T | None, new: T, old: T | None, momentum: float) -> T:
    """d_k = new + (1 − a)(d_{k−1} − old) with a = ``momentum`` (see the module docstring);
    ``new`` itself when there is no previous estimate. Tensors or dicts of tensors."""
    if previous is None or old is None or momentum >= 1.0:
        return new
    if isinstance(new, dict):
        return {k: recursive(previous[k], new[k], old[k], momentum) for k in new}
    return new + (1.0 - momentum) * (previous - old)


@dataclass
class NeumannDraw:
    """The mini-batches of one stochastic Neumann hypergradient (see the module docstring)."""

    outer: Batch = None
    mixed: Batch = None
    hessian: list[Batch] = field(default_factory=list)
    #: Ghadimi & Wang's random truncation (one product chain of random length, scaled by Q)
    truncated: bool = False

    @classmethod
    def sample(cls, problem: Problem, generator: torch.Generator, terms: int,
               truncated: bool = False) -> NeumannDraw:
        """Fresh batches from the problem's samplers: Q Hessian batches (summed series) or
        p ~ U{0, …, Q−1} of them (truncated)."""
        n = int(torch.randint(terms, (1,), generator=generator)) if truncated else terms
        return cls(outer=problem.sample_outer_batch(generator),
                   mixed=problem.sample_inner_batch(generator),
                   hessian=[problem.sample_inner_batch(generator) for _ in range(n)],
                   truncated=truncated)

    @classmethod
    def full(cls, terms: int) -> NeumannDraw:
        """Every batch the full sum (the deterministic Q-term series)."""
        return cls(hessian=[None] * terms)


def linear_hypergradient(problem: Problem, theta: Tensor, lam: Tensor, v: Tensor,
                         outer: Batch = None, mixed: Batch = None) -> Tensor:
    """∇_λ f(θ, λ; outer) − J(θ, λ; mixed) v, with v ≈ H⁻¹ ∇_θ f (the IFT with a given v)."""
    _, f_lam = autodiff.outer_grads(problem, theta, lam, outer)
    return f_lam - autodiff.InnerDerivatives(problem, theta, lam, mixed).mixed(v)


def neumann_hypergradient(problem: Problem, theta: Tensor, lam: Tensor, draw: NeumannDraw,
                          eta: float, terms: int) -> Tensor:
    """∇̂Φ(θ, λ; draw) with step η and Q = ``terms`` (see the module docstring)."""
    f_theta, f_lam = autodiff.outer_grads(problem, theta, lam, draw.outer)
    batches = iter(draw.hessian)
    hvp = FreshBatchDerivatives(problem, theta, lam, lambda: next(batches)).hvp
    if draw.truncated:  # Π_j (I − η H_j) b: the fixed-point map with right-hand side 0
        chain = autodiff.fixed_point(hvp, torch.zeros_like(f_theta), len(draw.hessian), eta,
                                     x0=f_theta)
        v = (terms * eta) * chain
    else:
        v = autodiff.neumann(hvp, f_theta, len(draw.hessian), eta)
    return f_lam - autodiff.InnerDerivatives(problem, theta, lam, draw.mixed).mixed(v)


def soba_update(state: State, directions: dict[str, Tensor], rho: float, gamma: float,
                outer_direction: Tensor | None = None) -> None:
    """SOBA's simultaneous step on (θ, v, λ) from the directions of
    :func:`~blobench.bases.single_loop.soba_oracles` (or estimates of them):
    θ ← θ − ρ D_θ, v ← v − ρ (H v + ∇_θ f), λ ← λ − γ D_λ, with D_λ = ∇_λ f + J v unless
    ``outer_direction`` is given (e.g. a moving average of it)."""
    state.theta = state.theta - rho * directions["g_theta"]
    state.extra["v"] = state.extra["v"] - rho * (directions["hv"] + directions["f_theta"])
    if outer_direction is None:
        outer_direction = directions["f_lam"] + directions["jv"]
    sgd_outer_step(state, outer_direction, gamma)
    state.extra["k"] += 1


# ------------------------------------------------------------------ double momentum
#: the step sizes of the single-loop entries (ρ on θ and v, γ on λ)
STEP_PARAMS: dict[str, Param] = {
    "inner_lr": Param(float, None, "ρ: step on θ (and v); None = the problem's 1/L",
                      optional=True, **POSITIVE),
    "outer_lr": Param(float, None, "γ: step on λ; None = 0.1 × the problem's default",
                      optional=True, **POSITIVE),
}

MOMENTUM_PARAMS: dict[str, Param] = {
    **STEP_PARAMS,
    "momentum": Param(float, 1.0, "c: STORM weight a_k = min(1, c (k+1)^-2/3)", **POSITIVE),
    "decay": Param(bool, True, "steps ρ(k+1)^-1/3, γ(k+1)^-1/3 (else constant)"),
    "neumann_terms": Param(int, 10, "Q: terms of the stochastic Neumann series", low=1),
    "neumann_lr": Param(float, None, "η: Neumann scaling; None = the inner step size",
                        optional=True, **POSITIVE),
}


class DoubleMomentum(SingleLoop):
    """STORM estimators of ∇_θ g and of dF/dλ, both variables moved by them at every step.

    At step k, on one inner batch (for ∇_θ g) and one :class:`NeumannDraw` ξ̄ (for the
    hypergradient), both evaluated at the current point (θ_k, λ_k) and at the previous one:

        u_k = ∇_θ g(θ_k, λ_k; B) + (1 − a_k)(u_{k−1} − ∇_θ g(θ_{k−1}, λ_{k−1}; B))
        w_k = ∇̂Φ(θ_k, λ_k; ξ̄) + (1 − a_k)(w_{k−1} − ∇̂Φ(θ_{k−1}, λ_{k−1}; ξ̄))
        θ_{k+1} = θ_k − ρ_k u_k,     λ_{k+1} = λ_k − γ_k w_k

    with ρ_k = ρ (k+1)^{-1/3}, γ_k = γ (k+1)^{-1/3}, a_k = min(1, c (k+1)^{-2/3}) (the rates
    of MRBO's and SUSTAIN's theorems: steps ∝ k^{-1/3}, momentum ∝ step²). Subclasses set
    ``truncated``: the summed Q-term Neumann series (MRBO) or Ghadimi & Wang's randomly
    truncated one (SUSTAIN).
    """

    params = MOMENTUM_PARAMS
    truncated: bool = False

    def setup(self, problem, state):
        state.extra.update(previous=None, u=None, w=None)

    def rates(self, problem: Problem, state: State) -> tuple[float, float, float, float]:
        """(ρ_k, γ_k, a_k, η) at the current step."""
        k = state.extra["k"]
        rho = or_default(self.inner_lr, problem.inner_step_size(state.lam))
        gamma = outer_lr_default(self.outer_lr, problem)
        if self.decay:
            rho, gamma = decayed(rho, k, 1 / 3), decayed(gamma, k, 1 / 3)
        eta = or_default(self.neumann_lr, problem.inner_step_size(state.lam))
        return rho, gamma, min(1.0, decayed(self.momentum, k, 2 / 3)), eta

    def step(self, problem, state):
        rho, gamma, a, eta = self.rates(problem, state)
        gen, ex = state.extra["generator"], state.extra
        batch = problem.sample_inner_batch(gen)
        draw = NeumannDraw.sample(problem, gen, self.neumann_terms, self.truncated)

        def oracles(theta: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
            return (autodiff.inner_grad(problem, theta, lam, batch),
                    neumann_hypergradient(problem, theta, lam, draw, eta, self.neumann_terms))

        point = (state.theta, state.lam.detach().clone())
        new = oracles(*point)
        old = oracles(*ex["previous"]) if ex["previous"] is not None else (None, None)
        ex["u"] = recursive(ex["u"], new[0], old[0], a)
        ex["w"] = recursive(ex["w"], new[1], old[1], a)
        ex["previous"] = point
        state.theta = state.theta - rho * ex["u"]
        sgd_outer_step(state, ex["w"], gamma)
        ex["k"] += 1
        return state
