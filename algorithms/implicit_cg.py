"""Implicit differentiation with conjugate gradient (HOAG, Pedregosa 2016; iMAML's solver).

Each outer step: T inner gradient steps to θ_T (warm- or cold-started), then k steps of CG
on H v = ∇_θ f(θ_T, λ) (H = ∇²_θθ g, Hessian-vector products only, warm-started from the
previous v as in HOAG Alg. 1), then

    dF/dλ ≈ ∇_λ f − J v,   J = ∇²_λθ g.

Cost per outer step: T inner gradients + k HVPs + one mixed product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench.algorithm import ImplicitDoubleLoop
from blobench.autodiff import cg
from blobench.params import Param


class ImplicitCG(ImplicitDoubleLoop):
    name = "implicit_cg"
    family = "implicit"
    reference = "Pedregosa 2016 (HOAG) Alg. 1; Rajeswaran et al. 2019 (iMAML)"
    params = {
        **ImplicitDoubleLoop.params,
        "cg_steps": Param(int, 10, "k: conjugate-gradient iterations", low=1),
        "cg_tol": Param(float, 0.0, "stop CG when ‖r‖ ≤ tol·‖b‖", low=0.0),
        "cg_warm_start": Param(bool, True, "start CG from the previous solution v"),
    }

    def solve(self, problem, ops, b, previous):
        x0 = previous if self.cg_warm_start else None
        return cg(ops.hvp, b, self.cg_steps, x0=x0, tol=self.cg_tol)
