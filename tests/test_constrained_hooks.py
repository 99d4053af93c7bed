"""The constrained-lower-level hooks of the Problem contract (issue 22): their defaults, what the
bases layer makes of them (blobench/bases/constrained.py), and ``check_api``'s check of
``inner_prox_kind``."""

from __future__ import annotations

import pytest
import torch
from test_inner_solvers_constrained import HI, LO, BoxQuadratic

from blobench.bases import constrained
from blobench.contracts.errors import PluginError
from blobench.contracts.problem import PROX_KINDS, Problem


class Regularized(BoxQuadratic):
    """A prox declared a regularizer, without ``inner_nonsmooth``."""

    inner_prox_kind = "regularizer"


def test_defaults_are_not_implemented_and_mean_no_coupling(registry):
    box = BoxQuadratic(seed=0)
    theta = torch.linspace(-2.0, 2.0, box.dim_inner, dtype=torch.float64)
    lam = box.init_outer(None)
    assert Problem.inner_prox_kind is None and Problem.inner_prox_separable is False
    for hook, args in (("inner_nonsmooth", (theta, lam)),
                       ("inner_coupled_constraints", (theta, lam)),
                       ("inner_uncoupled_projection", (theta,)),
                       ("project_feasible", (theta, lam))):
        assert getattr(box, hook)(*args) is NotImplemented, hook
        assert not constrained.overrides(box, hook) and not constrained.overrides(BoxQuadratic,
                                                                                   hook)
    assert constrained.n_constraints(box, theta, lam) == 0
    assert torch.equal(constrained.nonsmooth_lam_grad(box, theta, lam), torch.zeros_like(lam))
    # kind None: Y = ℝ^d; kind "indicator": Y = the set of inner_prox
    assert torch.equal(constrained.project_pair(box, theta, lam)[0], theta)
    box.inner_prox_kind = "indicator"
    projected, same_lam = constrained.project_pair(box, theta, lam)
    assert torch.equal(projected, theta.clamp(LO, HI)) and same_lam is lam


def test_the_svm_hooks_are_overridden(registry):
    svm = registry.problem("svm_dual_ho")(seed=0)
    lam = svm.init_outer(None)
    theta = torch.full((svm.dim_inner,), 1.0, dtype=torch.float64)
    assert constrained.n_constraints(svm, theta, lam) == svm.dim_inner
    new_theta, new_lam = constrained.project_pair(svm, theta, lam)
    assert float(new_lam) > float(lam) and bool((new_theta <= new_lam.exp() + 1e-12).all())
    lasso = registry.problem("lasso_ho")(seed=0)
    grad = constrained.nonsmooth_lam_grad(lasso, theta[:lasso.dim_inner], lam)
    assert float(grad) == pytest.approx(float(lam.exp()) * lasso.dim_inner)  # e^λ‖θ‖₁


def test_refusals_by_kind(registry):
    """meha needs ∂_λ r of a regularizer; lv_hba / gaffo need a set; an undeclared kind is
    refused by all three, each reason naming the entry."""
    meha, lv_hba = registry.algorithm("meha")(), registry.algorithm("lv_hba")()
    reason = meha.skip_reason(Regularized)
    assert reason.startswith("meha:") and "inner_nonsmooth" in reason
    assert lv_hba.skip_reason(Regularized).startswith("lv_hba:")
    for name in ("meha", "lv_hba", "gaffo"):
        reason = registry.algorithm(name)().skip_reason(BoxQuadratic)  # kind None
        assert reason.startswith(f"{name}:") and "inner_prox_kind" in reason, reason
    assert meha.skip_reason(registry.problem("lasso_ho")) is None


def test_check_api_rejects_an_unknown_kind():
    box = BoxQuadratic(seed=0)
    lam = box.init_outer(None)
    box.check_api(box.init_inner(lam, None), lam)
    assert "regularizer" in PROX_KINDS
    box.inner_prox_kind = "simplex"
    with pytest.raises(PluginError, match="inner_prox_kind"):
        box.check_api(box.init_inner(lam, None), lam)
