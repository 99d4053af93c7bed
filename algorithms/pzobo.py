"""PZOBO: partial zeroth-order bilevel optimizer (Sow, Ji, Liang 2022), Hessian-free.

"On the convergence theory for Hessian-free bilevel algorithms" (NeurIPS 2022), Algorithm 1.
The hypergradient of the N-step unrolled inner solver θ_N(λ) (ITD),
dF/dλ ≈ ∇_λ f + (∂θ_N/∂λ)ᵀ ∇_θ f, with the Jacobian ∂θ_N/∂λ (dim θ × dim λ) replaced by a
Gaussian-smoothing (evolution-strategies) estimate built from Q extra inner solves:

    u_j ~ N(0, I_{dim λ}),  δ_j = (θ_N(λ + μ u_j) − θ_N(λ)) / μ,   j = 1 … Q
    ∂θ_N/∂λ ≈ (1/Q) Σ_j δ_j u_jᵀ        (the paper's eq. (5); number not checked, see below)
    dF/dλ ≈ ∇_λ f(θ_N, λ) + (1/Q) Σ_j u_j ⟨δ_j, ∇_θ f(θ_N, λ)⟩

(Equation number: not checked against the paper's text — ../shared/references.md has no entry
for it and the text was not reachable; the estimator above is what is implemented.)
Every θ_N(·) runs the same N gradient steps from the same start (the previous θ: warm start,
or θ₀ when cold), so δ_j is a finite difference of one deterministic map; no second
derivatives at all (first-order oracles only). As μ → 0, δ_j → (∂θ_N/∂λ) u_j, and the mean
over u of u uᵀ is I, so the estimate is unbiased for the unrolled hypergradient up to O(μ)
(exactly, for θ_N affine in λ), with variance O(dim λ / Q).

Defaults (benchopt's PZOBO: μ = 0.1, N = 10 inner steps, Q = 1 Gaussian vector); the inner
step size as the problem's 1/L (``inner_lr``), outer SGD on λ at 0.1 · the problem's outer
step (the estimate's variance is O(dim λ / Q) times ‖dF/dλ‖²: measured, the problem's full
step increases F on quadratic with Q = 1). Cost per outer step: (Q + 1) N
inner gradients + one outer gradient; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from blobench import autodiff
from blobench.bases.algorithm import POSITIVE, DoubleLoop
from blobench.bases.single_loop import outer_lr_default
from blobench.contracts.params import Param


class PZOBO(DoubleLoop):
    name = "pzobo"
    family = "Hessian-free (zeroth-order Jacobian)"
    reference = "Sow, Ji, Liang 2022 (NeurIPS), Alg. 1 (PZOBO)"
    #: `blobench check`: the estimate converges as Q grows (error ∝ √(dim λ / Q); measured on
    #: the tiny coupled_quadratic, N = 30: Q = 3, 30, 300, 3000 → 0.59, 0.21, 0.11, 0.028)
    check_knob = ("directions", (3, 30, 300), {"inner_steps": 30}, 0.15)
    #: the cosine check at many directions; at Q = 1 (the default) one Gaussian direction
    #: gives mean cosines 0.26 / 0.25 / 0.14 (quadratic, coupled_quadratic, ridge_ho) by
    #: design, and only F decreasing is required there
    check_cosine_at = {"directions": 50}
    params = {
        **DoubleLoop.params,
        "inner_steps": Param(int, 10, "N: inner gradient steps per solve", low=1),
        "directions": Param(int, 1, "Q: Gaussian vectors per outer step", low=1),
        "smoothing": Param(float, 0.1, "μ: Gaussian smoothing radius", **POSITIVE),
    }

    def default_outer_lr(self, problem):
        return outer_lr_default(None, problem)  # a stochastic estimate: 0.1 × the default

    def hypergradient(self, problem, state):
        lam = state.lam.detach()
        lr = self.inner_lr_at(problem, lam)
        start = self.start_theta(problem, state, lam).detach()

        def solve(at: torch.Tensor) -> torch.Tensor:
            return autodiff.gradient_descent(problem, start, at, self.inner_steps, lr)

        theta = solve(lam)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam)
        u = torch.randn(self.directions, lam.numel(), generator=state.extra["generator"]
                        ).to(dtype=lam.dtype, device=lam.device)
        return theta, f_lam + smoothed_vjp(solve, lam, theta, f_theta, u, self.smoothing)


def smoothed_vjp(solve: Callable[[torch.Tensor], torch.Tensor], lam: torch.Tensor,
                 theta: torch.Tensor, f_theta: torch.Tensor, u: torch.Tensor, mu: float
                 ) -> torch.Tensor:
    """(1/Q) Σ_j u_j ⟨δ_j, ∇_θ f⟩ with δ_j = (solve(λ + μ u_j) − θ) / μ, θ = solve(λ): the
    Gaussian-smoothing estimate of (∂θ_N/∂λ)ᵀ ∇_θ f (rows of ``u`` are the u_j)."""
    slopes = torch.stack([(solve(lam + mu * u_j) - theta) @ f_theta for u_j in u]) / mu
    return u.T @ slopes / u.shape[0]
