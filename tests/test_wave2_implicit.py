"""Issue 21: ``nystrom`` (Hataya & Yamada 2023) and HOAG's decreasing CG tolerances as an
option of ``implicit_cg`` (Pedregosa 2016). Expected values are dense solves written here."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error


def _nystrom_module(registry):
    return sys.modules[registry.algorithm("nystrom").__module__]


def test_nystrom_solve_is_the_damped_low_rank_inverse(registry):
    """Woodbury vs the dense (C W⁻¹ Cᵀ + ρI)⁻¹ b, on a random PSD H with k < d columns."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=gen)
    h = a @ a.T + 0.1 * torch.eye(12)
    index = torch.tensor([0, 3, 4, 9, 11])
    c, rho, b = h[:, index], 0.3, torch.randn(12, generator=gen)
    dense = torch.linalg.solve(c @ torch.linalg.solve(h[index][:, index], c.T)
                               + rho * torch.eye(12), b)
    got = _nystrom_module(registry).nystrom_solve(c, index, b, rho)
    assert rel_error(got, dense) < 1e-10


@pytest.mark.parametrize("pname", ["quadratic", "ridge_ho"])
def test_nystrom_tends_to_exact_with_full_rank_and_vanishing_damping(registry, pname):
    prob = registry.problem(pname)(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(1))
    errors = []
    for rho in (1e-2, 1e-4, 1e-6):
        est, exact = hypergrad_after_one_step(registry, prob, "nystrom", lam, inner_steps=3000,
                                              rank=prob.dim_inner, damping=rho)
        errors.append(rel_error(est, exact))
    # error ∝ ρ (measured 5e-3 … 5e-7 on both problems)
    assert errors[0] > 30 * errors[1] > 900 * errors[2], errors
    assert errors[-1] < 1e-5, errors


def test_nystrom_mutant_sign_of_the_correction_fails(registry, monkeypatch):
    module = _nystrom_module(registry)
    good = module.nystrom_solve

    def mutant(columns, index, b, rho):  # b/ρ + correction instead of − correction
        return 2 * b / rho - good(columns, index, b, rho)

    monkeypatch.setattr(module, "nystrom_solve", mutant)
    prob = registry.problem("quadratic")(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(1))
    est, exact = hypergrad_after_one_step(registry, prob, "nystrom", lam, inner_steps=3000,
                                          rank=prob.dim_inner, damping=1e-6)
    assert rel_error(est, exact) > 0.5


def test_nystrom_draws_rank_columns_from_the_run_generator(registry):
    prob = registry.problem("quadratic")(seed=0)
    alg = registry.algorithm("nystrom")(rank=4)
    gen = torch.Generator().manual_seed(0)
    lam = prob.init_outer(gen)
    state = alg.init(prob, prob.init_inner(lam, gen), lam, gen)
    from blobench import autodiff
    autodiff.oracle_counts.clear()
    alg.step(prob, state)
    assert autodiff.oracle_counts["hvp"] == 4


# ------------------------------------------------------------------ HOAG tolerances
def test_hoag_schedules_are_summable_and_decreasing(registry):
    schedules = sys.modules[registry.algorithm("implicit_cg").__module__].HOAG_SCHEDULES
    for name, eps in schedules.items():
        if eps is None:
            continue
        values = [eps(k) for k in range(1, 2001)]
        assert all(a > b for a, b in itertools.pairwise(values)), name
        assert sum(values) < 1.0 and values[0] <= 0.1, name


def test_hoag_tolerance_decreases_across_outer_steps_and_cg_stops_early(registry):
    """ε_k = 0.1 k^-2: CG (cold started) stops at the tolerance, so the relative residual of
    step k is ≤ ε_k and early steps use fewer products than late ones."""
    prob = registry.problem("quadratic")(seed=0)
    from blobench import autodiff
    alg = registry.algorithm("implicit_cg")(tol_schedule="quadratic", cg_steps=200,
                                           cg_warm_start=False, inner_steps=200)
    gen = torch.Generator().manual_seed(0)
    lam = prob.init_outer(gen)
    state = alg.init(prob, prob.init_inner(lam, gen), lam, gen)
    hvps = []
    for k in range(1, 6):
        autodiff.oracle_counts.clear()
        state = alg.step(prob, state)
        hvps.append(autodiff.oracle_counts["hvp"])
        v = state.extra["linear_solution"]
        theta = state.theta
        f_theta, _ = autodiff.outer_grads(prob, theta, state.hypergrad_at)
        residual = prob.a_mat @ v - f_theta  # H = A on quadratic
        assert float(residual.norm() / f_theta.norm()) <= 0.1 * k**-2 * 1.0001, k
    assert hvps[0] < hvps[-1], hvps


def test_hoag_fixed_schedule_is_the_old_behaviour(registry):
    prob = registry.problem("quadratic")(seed=0)
    lam = 0.3 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(1))
    a, _ = hypergrad_after_one_step(registry, prob, "implicit_cg", lam)
    b, _ = hypergrad_after_one_step(registry, prob, "implicit_cg", lam, tol_schedule="fixed")
    assert torch.equal(a, b)
