"""The implicit hypergradient dF/dλ = ∇_λ f − J H⁻¹ ∇_θ f (Pedregosa 2016, eq. 3), and its
proximal fixed-point form for constrained / non-smooth lower levels with a separable prox."""

from __future__ import annotations

from collections.abc import Callable

import torch

from blobench.autodiff.derivatives import InnerDerivatives, _zeros_if_none, outer_grads
from blobench.autodiff.solvers import has_inner_prox
from blobench.contracts.problem import Batch, Problem

Tensor = torch.Tensor


def implicit_hypergradient(problem: Problem, theta: Tensor, lam: Tensor,
                           solve: Callable[[InnerDerivatives, Tensor], Tensor],
                           inner_batch: Batch = None, outer_batch: Batch = None,
                           prox_step: float | None = None) -> tuple[Tensor, Tensor]:
    """dF/dλ ≈ ∇_λ f − J v with v = solve(H, ∇_θ f) ≈ H⁻¹ ∇_θ f, at the given θ.

    ``prox_step`` η (a problem with a separable prox, :func:`prox_separable`): the lower level
    is min g + r with the proximal fixed point θ = P(z, λ), z = θ − η ∇_θ g(θ, λ),
    P = prox_{ηr}. Differentiating it (Bertrand et al. 2022, "Implicit differentiation for fast
    hyperparameter selection in non-smooth convex learning", JMLR, the fixed-point equation of
    proximal gradient) with D = ∂P/∂z diagonal with entries 0/1 (box, soft-threshold; free
    set F where D = 1) and P_λ = ∂P/∂λ gives, with v_F = H_FF⁻¹ (∇_θ f)_F, v = 0 off F
    (:class:`FreeCoordinates`) and the adjoint w = v/η on F, w = ∇_θ f − H v off F:

        dF/dλ = ∇_λ f − J v + P_λᵀ w

    — the IFT restricted to the free coordinates, plus the λ-dependence of the prox: zero for
    a λ-independent box; −e^λ sᵀ H_SS⁻¹ (∇_θ f)_S for r = e^λ‖θ‖₁ on the support S with signs
    s (Bertrand et al. 2020, ICML, Prop. 1); C 1ᵀ((∇_θ f)_U − (H v)_U) for coordinates U at a
    bound C = e^λ. Valid under strict complementarity (P differentiable at z); independent
    of η (it cancels).

    Returns (hypergradient, v); v lets a solver warm-start its next solve.
    """
    f_theta, f_lam = outer_grads(problem, theta, lam, outer_batch)
    ops = InnerDerivatives(problem, theta, lam, inner_batch)
    if prox_step is None:
        v = solve(ops, f_theta)
        return f_lam - ops.mixed(v), v
    z = (ops._theta - prox_step * ops.grad).detach().requires_grad_(True)
    lam_ = ops._lam.clone().requires_grad_(True)
    with torch.enable_grad():
        out = problem.inner_prox(z, lam_, prox_step)
        (diag,) = torch.autograd.grad(out, z, torch.ones_like(z), retain_graph=True)
    restricted = FreeCoordinates(ops, diag > 0.5)
    v = restricted.restrict(solve(restricted, restricted.restrict(f_theta)))
    p = restricted.p
    w = p * v / prox_step + (1 - p) * (f_theta - ops.hvp(v))
    (p_lam,) = torch.autograd.grad(out, lam_, w, allow_unused=True)
    return f_lam - restricted.mixed(v) + _zeros_if_none(p_lam, f_lam), v


def prox_separable(problem: Problem | type[Problem]) -> bool:
    """Whether the problem has a prox (:func:`has_inner_prox`) and declares it separable
    (class attribute ``inner_prox_separable = True``: coordinate i of prox_{ηr}(z; λ) depends
    on z_i and λ only, with ∂/∂z_i ∈ {0, 1} — a box, possibly with bounds depending on λ, or a
    soft-threshold): the declaration that the implicit entries may use the proximal
    fixed-point optimality condition of :func:`implicit_hypergradient`."""
    cls = problem if isinstance(problem, type) else type(problem)
    return has_inner_prox(cls) and bool(cls.inner_prox_separable)


class FreeCoordinates:
    """:class:`InnerDerivatives` restricted to the free coordinates F (mask P = diag(free)):

    ``hvp(v)`` = P H P v + (I − P) v  (H_FF on F, the identity off F: invertible, decoupled),
    ``mixed(v)`` = J P v, ``grad`` = P ∇_θ g; the dense matrices likewise."""

    def __init__(self, ops: InnerDerivatives, free: Tensor):
        self.ops = ops
        self.problem, self.batch, self.theta, self.lam = ops.problem, ops.batch, ops.theta, ops.lam
        self.p = free.to(dtype=ops.theta.dtype)

    def restrict(self, v: Tensor) -> Tensor:
        return self.p * v

    @property
    def grad(self) -> Tensor:
        return self.p * self.ops.grad

    def hvp(self, v: Tensor) -> Tensor:
        return self.p * self.ops.hvp(self.p * v) + (1 - self.p) * v

    def mixed(self, v: Tensor) -> Tensor:
        return self.ops.mixed(self.p * v)

    def dense_hessian(self) -> Tensor:
        h = self.ops.dense_hessian()
        return self.p[:, None] * h * self.p[None, :] + torch.diag(1 - self.p)

    def dense_mixed(self) -> Tensor:
        return self.ops.dense_mixed() * self.p[None, :]
