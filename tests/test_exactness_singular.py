"""Singular (positive semi-definite) inner Hessians: CG reaches the minimum-norm H⁺ b.

Expected values are closed forms built here from the problem's matrices (H = AᵀA, so
H⁺ = A⁺ A⁺ᵀ), never by the solver under test. Before the breakdown test in ``autodiff.cg``
plain CG returned ‖v‖ ≈ 1e32 on these systems (issue 23.1).
"""

from __future__ import annotations

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error

from blobench import autodiff


def _overparam(registry, setting, seed=0):
    return registry.problem("overparam_linreg")(seed=seed, setting=setting)


def _singular_system(registry, setting, seed):
    """(problem, θ on the solution set, λ, b = ∇_θ f with a component outside range(H))."""
    problem = _overparam(registry, setting, seed)
    lam = torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(1))
    theta = problem.min_norm_inner(lam, problem.theta0)
    b = problem.c_mat.T @ (problem.c_mat @ theta - problem.c_vec)  # ∇_θ f, by hand
    return problem, theta, lam, b


@pytest.mark.parametrize("setting", ["inner_overparam", "outer_overparam"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_converges_to_the_minimum_norm_solution(registry, setting, seed):
    problem, theta, lam, b = _singular_system(registry, setting, seed)
    a_pinv = torch.linalg.pinv(problem.a_mat)
    expected = a_pinv @ (a_pinv.T @ b)  # H⁺ b with H = AᵀA
    residual_part = b - problem.a_mat.T @ (problem.a_mat @ expected)
    assert float(residual_part.norm()) > 0.03 * float(b.norm())  # b ∉ range(H): a real test
    ops = autodiff.InnerDerivatives(problem, theta, lam)
    v = autodiff.cg(ops.hvp, b, 40)
    assert rel_error(v, expected) < 1e-6
    # the hypergradient's J v is what matters, and it is right too
    assert rel_error(problem.a_mat @ v, problem.a_mat @ expected) < 1e-8


def test_cg_on_a_random_rank_deficient_matrix_and_a_warm_start():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen))
    eig = torch.cat([torch.linspace(1.0, 5.0, 12), torch.zeros(18)])
    h = (q * eig) @ q.T
    b = torch.randn(30, generator=gen)
    expected = (q[:, :12] / eig[:12]) @ (q[:, :12].T @ b)  # H⁺ b from the eigenpairs
    assert rel_error(autodiff.cg(lambda v: h @ v, b, 30), expected) < 1e-8
    # a warm start inside range(H) reaches the same minimum-norm solution
    x0 = q[:, :12] @ torch.randn(12, generator=gen)
    assert rel_error(autodiff.cg(lambda v: h @ v, b, 30, x0=x0), expected) < 1e-8
    # a consistent system (b ∈ range(H)) is solved by plain CG within its rank in iterations
    b_range = h @ torch.randn(30, generator=gen)
    expected = (q[:, :12] / eig[:12]) @ (q[:, :12].T @ b_range)
    assert rel_error(autodiff.cg(lambda v: h @ v, b_range, 12), expected) < 1e-8


def test_cg_on_a_definite_system_is_plain_cg():
    """No false alarm on a well-conditioned definite system: k CG steps use k products."""
    gen = torch.Generator().manual_seed(3)
    m = torch.randn(20, 20, generator=gen)
    h = m @ m.T / 20 + torch.eye(20)
    b = torch.randn(20, generator=gen)
    products = []
    x = autodiff.cg(lambda v: products.append(1) or h @ v, b, 25)
    assert rel_error(x, torch.linalg.solve(h, b)) < 1e-10
    assert len(products) <= 25


@pytest.mark.parametrize("setting", ["inner_overparam", "outer_overparam"])
def test_implicit_cg_reaches_the_exact_hypergradient_on_a_singular_hessian(registry, setting):
    problem = _overparam(registry, setting)
    lam = 0.5 * torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(4))
    est, exact = hypergrad_after_one_step(registry, problem, "implicit_cg", lam,
                                          warm_start=False, inner_steps=3000, cg_steps=40)
    assert torch.isfinite(est).all()
    assert rel_error(est, exact) < 1e-6
    # warm-started CG over several outer steps stays finite and right (v stays in range(H))
    alg = registry.algorithm("implicit_cg")(warm_start=False, inner_steps=3000, cg_steps=10,
                                            outer_lr=1e-300)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    for _ in range(4):
        state = alg.step(problem, state)
    assert rel_error(state.hypergrad, exact) < 1e-6
