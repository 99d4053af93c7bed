"""Implicit differentiation with a truncated series for H⁻¹: Neumann and fixed-point.

Both run T inner gradient steps to θ_T (warm start by default, as in the papers' alternating
schemes), then approximate v ≈ H⁻¹ ∇_θ f(θ_T, λ) with Hessian-vector products only, and return

    dF/dλ ≈ ∇_λ f − J v,      H = ∇²_θθ g(θ_T, λ),  J = ∇²_λθ g(θ_T, λ).

``neumann`` — K-term Neumann series (Lorraine, Vicol, Duvenaud, AISTATS 2020, eq. 8 / Alg. 3):

    v = α Σ_{j=0..K} (I − αH)^j ∇_θ f,

which converges to H⁻¹ ∇_θ f as K → ∞ when 0 < α < 2/λ_max(H). α = None uses the problem's
inner step size (1/L for the quadratic problems, where L bounds λ_max(H)): the series is then
the reverse-mode unroll of K gradient steps at the fixed point. K = 0 gives v = α ∇_θ f, the
identity approximation of Luketina et al. 2016 (the ``one_step`` entry).

``fixed_point`` — the fixed-point iteration on the adjoint linear system (AID-FP of Grazzi,
Franceschi, Pontil, Salzo, ICML 2020, "On the iteration complexity of hypergradient
computation"):

    v_{k+1} = v_k − α (H v_k − ∇_θ f),   k = 0..K−1,

identical to the Neumann series when v_0 = 0, but warm-startable: with ``solver_warm_start``
v_0 is the previous outer step's solution (as HOAG does for CG), which makes a few steps
per outer iteration enough once the outer loop settles.

Cost per outer step: T inner gradients + K HVPs + one mixed product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench.autodiff import fixed_point, neumann
from blobench.bases.algorithm import POSITIVE, ImplicitDoubleLoop
from blobench.contracts.params import Param


def _alpha(algorithm, problem, ops) -> float:
    if algorithm.alpha is not None:
        return algorithm.alpha
    return algorithm.inner_lr_at(problem, ops.lam.detach())


class Neumann(ImplicitDoubleLoop):
    name = "neumann"
    family = "implicit"
    reference = "Lorraine et al. 2020, eq. 8 / Alg. 3"
    check_knob = ("terms", (2, 20, 300), {"inner_steps": 400})  # `blobench check`
    params = {
        **ImplicitDoubleLoop.params,
        "terms": Param(int, 20, "K: Neumann terms α Σ_{j=0..K} (I − αH)^j", low=0),
        "alpha": Param(float, None, "α of the series; None = the inner step size (1/L)",
                       optional=True, **POSITIVE),
    }

    def solve(self, problem, ops, b, previous):
        return neumann(ops.hvp, b, self.terms, _alpha(self, problem, ops))


class FixedPoint(ImplicitDoubleLoop):
    name = "fixed_point"
    family = "implicit"
    reference = "Grazzi et al. 2020 (AID with the fixed-point method, AID-FP)"
    check_knob = ("solver_steps", (2, 20, 300), {"inner_steps": 400, "solver_warm_start": False})
    params = {
        **ImplicitDoubleLoop.params,
        "solver_steps": Param(int, 20, "K: fixed-point iterations v ← v − α(Hv − ∇_θ f)", low=0),
        "alpha": Param(float, None, "α of the iteration; None = the inner step size (1/L)",
                       optional=True, **POSITIVE),
        "solver_warm_start": Param(bool, True, "start from the previous outer step's v"),
    }

    def solve(self, problem, ops, b, previous):
        x0 = previous if self.solver_warm_start else None
        return fixed_point(ops.hvp, b, self.solver_steps, _alpha(self, problem, ops), x0=x0)
