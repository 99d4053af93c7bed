"""Constraint-set helpers of the methods built for constrained lower levels (meha, lv_hba, gaffo).

A lower level min_θ g(θ, λ) + r(θ; λ) with r the indicator of {θ ∈ Y, c(θ, λ) ≤ 0} or a
regularizer is described by the optional hooks of the :class:`~blobench.contracts.problem.Problem`
contract: ``inner_prox_kind`` (``PROX_KINDS``), ``inner_nonsmooth`` (r, for ∂_λ r),
``inner_uncoupled_projection`` (the projection onto Y), ``inner_coupled_constraints``
(c(θ, λ), m values) and ``project_feasible`` (the pair onto the coupled set); each defaults to
``NotImplemented``, and the helpers below give the default's meaning (no coupled constraint,
Y from ``inner_prox`` or ℝ^d, r independent of λ). One copy for every entry: plugin files
cannot import one another.
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import CONSTRAINED_ENTRIES
from blobench.contracts.problem import Problem

Tensor = torch.Tensor

#: the kinds of non-smooth part the constraint-set methods (lv_hba, gaffo) handle: none (a
#: smooth lower level) or a set
SET_KINDS = (None, "indicator", "coupled_indicator")


def overrides(problem: Problem | type[Problem], hook: str) -> bool:
    """Whether the problem (instance or class) overrides the optional contract method ``hook``."""
    cls = problem if isinstance(problem, type) else type(problem)
    return getattr(cls, hook) is not getattr(Problem, hook)


def constraint_set_reason(problem: Problem | type[Problem], name: str = "") -> str | None:
    """Why a constraint-set method (lv_hba, gaffo) does not apply (None: it does)."""
    kind = problem.inner_prox_kind
    if kind not in SET_KINDS:
        return (f"{name}: the lower level's non-smooth part is a {kind}, not a constraint set "
                f"(inner_prox_kind); entries that apply: {CONSTRAINED_ENTRIES}")
    if kind is None and autodiff.has_inner_prox(problem):
        return (f"{name}: the problem has an inner_prox but does not say what it is "
                "(inner_prox_kind 'indicator' or 'coupled_indicator' for a constraint set); "
                f"entries that apply: {CONSTRAINED_ENTRIES}")
    return None


def nonsmooth_reason(problem: Problem | type[Problem], name: str = "") -> str | None:
    """Why a Moreau-envelope method (meha: prox steps, ∂_λ r) does not apply (None: it does):
    it needs r smooth in λ — a λ-independent set or a regularizer with ``inner_nonsmooth``."""
    if not autodiff.has_inner_prox(problem):
        return None
    kind = problem.inner_prox_kind
    if kind == "coupled_indicator":
        return (f"{name}: the lower level's constraint set depends on λ (a coupled constraint, "
                "no ∂_λ of its indicator): r must be smooth in λ; "
                f"entries that apply: {CONSTRAINED_ENTRIES}")
    if kind == "regularizer" and not overrides(problem, "inner_nonsmooth"):
        return (f"{name}: the regularizer's λ-derivative is needed (the problem does not "
                f"define inner_nonsmooth); entries that apply: {CONSTRAINED_ENTRIES}")
    if kind is None:
        return (f"{name}: the problem has an inner_prox but does not say what it is "
                f"(inner_prox_kind); entries that apply: {CONSTRAINED_ENTRIES}")
    return None


def nonsmooth_lam_grad(problem: Problem, theta: Tensor, lam: Tensor) -> Tensor:
    """∂_λ r(θ; λ) from the problem's ``inner_nonsmooth`` (zero where it does not define one:
    r independent of λ)."""
    if not overrides(problem, "inner_nonsmooth"):
        return torch.zeros_like(lam)
    lam = lam.detach().requires_grad_(True)
    with torch.enable_grad():
        out = problem.inner_nonsmooth(theta.detach(), lam)
        if not out.requires_grad:
            return torch.zeros_like(lam)
        (grad,) = torch.autograd.grad(out, lam)
    return grad


def project_uncoupled(problem: Problem, theta: Tensor, lam: Tensor) -> Tensor:
    """Projection onto the λ-independent set Y (the identity on a smooth lower level)."""
    if overrides(problem, "inner_uncoupled_projection"):
        return problem.inner_uncoupled_projection(theta)
    if problem.inner_prox_kind == "indicator":
        return problem.inner_prox(theta, lam, 1.0)
    return theta


def project_pair(problem: Problem, theta: Tensor, lam: Tensor, lam_weight: float = 1.0
                 ) -> tuple[Tensor, Tensor]:
    """(θ, λ) projected onto {θ ∈ Y, c(θ, λ) ≤ 0} in ‖Δθ‖² + lam_weight·‖Δλ‖²: the problem's
    ``project_feasible``, or (Proj_Y θ, λ) without one."""
    if overrides(problem, "project_feasible"):
        return problem.project_feasible(theta, lam, lam_weight=lam_weight)
    return project_uncoupled(problem, theta, lam), lam


def constraint_products(problem: Problem, theta: Tensor, lam: Tensor, mult: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """(c(θ, λ), ∇_θ c(θ, λ)ᵀ μ, ∇_λ c(θ, λ)ᵀ μ) of the coupled constraints; zeros (m = 0)
    without ``inner_coupled_constraints``."""
    if not overrides(problem, "inner_coupled_constraints"):
        return mult, torch.zeros_like(theta), torch.zeros_like(lam)
    theta = theta.detach().requires_grad_(True)
    lam = lam.detach().requires_grad_(True)
    with torch.enable_grad():
        values = problem.inner_coupled_constraints(theta, lam)
        grad_theta, grad_lam = torch.autograd.grad(values, (theta, lam), mult,
                                                   allow_unused=True)
    grad_theta = torch.zeros_like(theta) if grad_theta is None else grad_theta
    grad_lam = torch.zeros_like(lam) if grad_lam is None else grad_lam
    return values.detach(), grad_theta, grad_lam


def n_constraints(problem: Problem, theta: Tensor, lam: Tensor) -> int:
    """m, the number of coupled constraints c(θ, λ) ≤ 0 (0 without the hook)."""
    if not overrides(problem, "inner_coupled_constraints"):
        return 0
    return int(problem.inner_coupled_constraints(theta.detach(), lam.detach()).numel())
