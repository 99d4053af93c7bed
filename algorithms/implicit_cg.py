"""Implicit differentiation with conjugate gradient (the linear solve of HOAG, Pedregosa 2016).

Each outer step: T inner gradient steps to θ_T (warm- or cold-started), then k steps of CG
on H v = ∇_θ f(θ_T, λ) (H = ∇²_θθ g, Hessian-vector products only, warm-started from the
previous v as in HOAG Alg. 1), then

    dF/dλ ≈ ∇_λ f − J v,   J = ∇²_λθ g                       (Pedregosa 2016, eq. 3)

What is implemented of HOAG (Pedregosa 2016, Alg. 1): the implicit formula and the
warm-started CG solve. What is not, at these defaults: HOAG's decreasing tolerances ε_k (inner
solve and CG run to ‖∇_θ g‖ ≤ ε_k, ‖Hv − ∇_θ f‖ ≤ ε_k with Σ ε_k < ∞) — here T and k are fixed
counts, and ``cg_tol`` is a fixed relative tolerance — and its adaptive outer step size (the
outer optimizer is plain SGD / Adam). A schedule of tolerances belongs in :meth:`cg_tolerance`.

Singular H (overparameterized inner problems, b = ∇_θ f ∉ range(H)): ``autodiff.cg`` detects
CG's breakdown and re-solves by CG on the normal equations H² v = H b, which converges to the
minimum-norm solution v = H⁺ ∇_θ f (from v₀ = 0, or a warm start in range(H)) — the
pseudo-inverse IFT of ``exact`` and of Vicol et al. 2022. Converged, the estimate is then the
exact hypergradient of the solution gradient descent selects where J annihilates null(H)
(g depending on θ through Aθ only, as in ``overparam_linreg``).

Cost per outer step: T inner gradients + k HVPs (up to 3k on a breakdown) + one mixed
product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench.autodiff import cg
from blobench.bases.algorithm import ImplicitDoubleLoop
from blobench.contracts.params import Param

#: HOAG's tolerance sequences (Pedregosa 2016, §4 experiments), all summable
HOAG_SCHEDULES = {"fixed": None, "quadratic": lambda k: 0.1 * k**-2.0,
                  "cubic": lambda k: 0.1 * k**-3.0, "exponential": lambda k: 0.1 * 0.9**k}


class ImplicitCG(ImplicitDoubleLoop):
    name = "implicit_cg"
    family = "implicit"
    reference = "Pedregosa 2016 (HOAG) eq. 3, Alg. 1's warm-started CG; Rajeswaran et al. 2019"
    #: `blobench check`: one step converges to the closed form as k grows (check_claims.py)
    check_knob = ("cg_steps", (2, 4, 40), {"inner_steps": 400, "cg_warm_start": False})
    params = {
        **ImplicitDoubleLoop.params,
        "cg_steps": Param(int, 10, "k: conjugate-gradient iterations", low=1),
        "cg_tol": Param(float, 0.0, "stop CG when ‖r‖ ≤ tol·‖b‖", low=0.0),
        "cg_warm_start": Param(bool, True, "start CG from the previous solution v"),
        "tol_schedule": Param(str, "fixed", "CG tolerance: fixed cg_tol, or HOAG's summable "
                              "ε_k = 0.1·k^-2 / 0.1·k^-3 / 0.1·0.9^k (Pedregosa 2016, §4)",
                              choices=tuple(HOAG_SCHEDULES)),
    }

    def hypergradient(self, problem, state):
        # k = 1, 2, … : the outer step whose CG tolerance cg_tolerance() returns
        self._solve_index = state.extra["cg_solves"] = state.extra.get("cg_solves", 0) + 1
        return super().hypergradient(problem, state)

    def cg_tolerance(self) -> float:
        """Relative tolerance of this outer step's CG solve: ``cg_tol``, or HOAG's decreasing
        ε_k (relative here: ‖H v − ∇_θ f‖ ≤ ε_k ‖∇_θ f‖; HOAG also stops the inner solver at
        ε_k — the inner solve here stays T steps)."""
        schedule = HOAG_SCHEDULES[self.tol_schedule]
        return self.cg_tol if schedule is None else schedule(getattr(self, "_solve_index", 1))

    def solve(self, problem, ops, b, previous):
        x0 = previous if self.cg_warm_start else None
        return cg(ops.hvp, b, self.cg_steps, x0=x0, tol=self.cg_tolerance())
