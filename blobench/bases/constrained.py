"""Constraint-set helpers of the constrained lower-level methods (lv_hba, gaffo).

A lower level min_θ g(θ, λ) s.t. θ ∈ Y, c(θ, λ) ≤ 0 is described by optional hooks of its
problem (problems/constrained_lower_levels.py), read here with ``getattr`` until they join the
Problem contract: ``inner_prox_kind`` ("indicator" for θ ∈ Y, "coupled_indicator" when the set
depends on λ), ``inner_uncoupled_projection`` (the projection onto Y) and
``inner_coupled_constraints`` (c(θ, λ), m values). One copy for both entries: plugin files
cannot import one another.
"""

from __future__ import annotations

import torch

from blobench import autodiff

#: the kinds of non-smooth part these methods handle: none (a smooth lower level) or a set
SET_KINDS = (None, "indicator", "coupled_indicator")


def constraint_set_reason(problem) -> str | None:
    """Why a constraint-set method (lv_hba, gaffo) does not apply (None: it does)."""
    kind = getattr(problem, "inner_prox_kind", None)
    if kind not in SET_KINDS:
        return (f"the lower level's non-smooth part is a {kind}, not a constraint set "
                "(inner_prox_kind); meha handles regularizers")
    if kind is None and autodiff.has_inner_prox(problem):
        return ("the problem has an inner_prox but does not say what it is (inner_prox_kind "
                "'indicator' or 'coupled_indicator' for a constraint set)")
    return None


def project_uncoupled(problem, theta: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Projection onto the λ-independent set Y (the identity on a smooth lower level)."""
    hook = getattr(problem, "inner_uncoupled_projection", None)
    if hook is not None:
        return hook(theta)
    if getattr(problem, "inner_prox_kind", None) == "indicator":
        return problem.inner_prox(theta, lam, 1.0)
    return theta


def constraint_products(problem, theta: torch.Tensor, lam: torch.Tensor, mult: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c(θ, λ), ∇_θ c(θ, λ)ᵀ μ, ∇_λ c(θ, λ)ᵀ μ) of the coupled constraints; zeros (m = 0)
    without ``inner_coupled_constraints``."""
    hook = getattr(problem, "inner_coupled_constraints", None)
    if hook is None:
        return mult, torch.zeros_like(theta), torch.zeros_like(lam)
    theta = theta.detach().requires_grad_(True)
    lam = lam.detach().requires_grad_(True)
    with torch.enable_grad():
        values = hook(theta, lam)
        grad_theta, grad_lam = torch.autograd.grad(values, (theta, lam), mult,
                                                   allow_unused=True)
    grad_theta = torch.zeros_like(theta) if grad_theta is None else grad_theta
    grad_lam = torch.zeros_like(lam) if grad_lam is None else grad_lam
    return values.detach(), grad_theta, grad_lam


def n_constraints(problem, theta: torch.Tensor, lam: torch.Tensor) -> int:
    """m, the number of coupled constraints c(θ, λ) ≤ 0 (0 without the hook)."""
    hook = getattr(problem, "inner_coupled_constraints", None)
    return 0 if hook is None else int(hook(theta.detach(), lam.detach()).numel())
