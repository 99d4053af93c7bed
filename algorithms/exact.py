"""Exact implicit differentiation by a dense linear solve (ground truth for small problems).

After T inner gradient steps to θ_T ≈ θ*(λ), the implicit function theorem gives

    dF/dλ = ∇_λ f − J H⁻¹ ∇_θ f,   H = ∇²_θθ g(θ_T, λ),  J = ∇²_λθ g(θ_T, λ)

(Pedregosa 2016, eq. 3; Bengio 2000). Here H is formed densely (dim θ Hessian-vector
products) and solved exactly, so the only error is the inner one (θ_T vs θ*). A singular H
is solved in the least-squares, minimum-norm sense. Cost O(dim θ) HVPs + O(dim θ³): use on
small problems only.
"""

from __future__ import annotations

from blobench.autodiff import dense_solve
from blobench.bases.algorithm import ImplicitDoubleLoop
from blobench.contracts.errors import NotApplicable
from blobench.contracts.params import Param

#: dim θ above which the dense Hessian of every outer step costs more than a whole quick cell
#: of the other methods (sparse_ho at quick, dim θ = 2,000: 3.4 s per outer step, 342 s for
#: the cell, the default run's tail — issue 15); implicit_cg solves the same system by CG
MAX_DENSE_DIM = 1000


class Exact(ImplicitDoubleLoop):
    name = "exact"
    family = "implicit"
    reference = "Pedregosa 2016 (HOAG) eq. 3; Bengio 2000"
    check_knob = ("inner_steps", (5, 50, 400), {})  # `blobench check` (check_claims.py)
    params = {**ImplicitDoubleLoop.params,
              "inner_steps": Param(int, 100, "T: inner gradient steps per outer step", low=1)}

    def init(self, problem, theta0, lam0, generator):
        if problem.dim_inner > MAX_DENSE_DIM:
            raise NotApplicable(f"exact: dim θ = {problem.dim_inner} is too large for a dense "
                                f"Hessian per outer step (dim θ Hessian-vector products; limit "
                                f"{MAX_DENSE_DIM}); use implicit_cg")
        return super().init(problem, theta0, lam0, generator)

    def solve(self, problem, ops, b, previous):
        return dense_solve(ops.dense_hessian(), b)
