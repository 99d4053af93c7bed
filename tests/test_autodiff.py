"""The shared autodiff primitives against closed forms (quadratic: H = A, J = −Bᵀ)."""

from __future__ import annotations

import pytest
import torch

from blobench import autodiff
from blobench.autodiff import (
    InnerDerivatives,
    cg,
    dense_solve,
    fixed_point,
    implicit_hypergradient,
    neumann,
    outer_hypergradient,
    unroll,
)


@pytest.fixture
def quad(registry):
    return registry.problem("quadratic")(seed=3)


def _rand(n, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_hvp_and_mixed_match_closed_form(quad):
    theta, lam = _rand(quad.dim_inner, 1), _rand(quad.dim_outer, 2)
    ops = InnerDerivatives(quad, theta, lam)
    v = _rand(quad.dim_inner, 3)
    torch.testing.assert_close(ops.hvp(v), quad.a_mat @ v)
    torch.testing.assert_close(ops.mixed(v), -quad.b_mat.T @ v)  # J v, J = −Bᵀ (p × d)
    torch.testing.assert_close(ops.dense_hessian(), quad.a_mat)
    torch.testing.assert_close(ops.dense_mixed(), -quad.b_mat.T)
    torch.testing.assert_close(ops.grad, quad.a_mat @ theta - quad.b_mat @ lam - quad.a_vec)


def test_ridge_mixed_product_is_diag_exp_lam_theta(registry):
    ridge = registry.problem("ridge_ho")(seed=0)
    theta, lam = _rand(ridge.dim_inner, 1), 0.3 * _rand(ridge.dim_outer, 2)
    v = _rand(ridge.dim_inner, 3)
    ops = InnerDerivatives(ridge, theta, lam)
    torch.testing.assert_close(ops.mixed(v), lam.exp() * theta * v)
    torch.testing.assert_close(ops.hvp(v), ridge.gram @ v + lam.exp() * v)


def test_linear_solvers_against_dense_solve(quad):
    a, b = quad.a_mat, _rand(quad.dim_inner, 4)
    exact = torch.linalg.solve(a, b)
    mv = lambda x: a @ x  # noqa: E731
    torch.testing.assert_close(cg(mv, b, steps=quad.dim_inner), exact)
    torch.testing.assert_close(cg(mv, b, steps=3, x0=exact), exact)  # warm start at solution
    alpha = 1.0 / quad.lipschitz
    errors = [float((neumann(mv, b, k, alpha) - exact).norm()) for k in (5, 50, 500)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6 * float(exact.norm())
    torch.testing.assert_close(fixed_point(mv, b, 20, alpha), neumann(mv, b, 19, alpha))
    torch.testing.assert_close(dense_solve(a, b), exact)


def test_dense_solve_singular_gives_min_norm_solution():
    u = torch.linalg.qr(_rand(16, 5).reshape(4, 4))[0]
    a = u[:, :2] @ u[:, :2].T  # rank 2 projector
    b = a @ _rand(4, 6)
    x = dense_solve(a, b)
    torch.testing.assert_close(a @ x, b)
    torch.testing.assert_close(x, torch.linalg.pinv(a) @ b)


def test_implicit_hypergradient_at_solution_is_exact(quad):
    lam = _rand(quad.dim_outer, 7)
    theta = quad.inner_solution(lam)
    hg, v = implicit_hypergradient(quad, theta, lam,
                                   lambda ops, b: dense_solve(ops.dense_hessian(), b))
    torch.testing.assert_close(hg, quad.exact_hypergradient(lam), rtol=1e-10, atol=1e-12)
    _, f_lam = autodiff.outer_grads(quad, theta, lam)
    # the same formula with +J v instead of −J v is far off: the tolerance would catch it
    flipped = f_lam + InnerDerivatives(quad, theta, lam).mixed(v)
    assert float((flipped - quad.exact_hypergradient(lam)).norm()) > 0.1 * float(hg.norm())


def test_unroll_is_the_derivative_of_the_T_step_map(quad):
    lam = _rand(quad.dim_outer, 8).requires_grad_(True)
    theta0, lr, steps = torch.zeros(quad.dim_inner), 0.5 / quad.lipschitz, 7
    hg = outer_hypergradient(quad, unroll(quad, theta0, lam, steps, lr), lam)

    def objective(outer):
        theta = theta0
        for _ in range(steps):
            theta = theta - lr * (quad.a_mat @ theta - quad.b_mat @ outer - quad.a_vec)
        return quad.outer_loss(theta, outer)

    eye = torch.eye(quad.dim_outer)
    fd = torch.stack([(objective(lam.detach() + 1e-6 * e) - objective(lam.detach() - 1e-6 * e))
                      / 2e-6 for e in eye])
    torch.testing.assert_close(hg, fd, rtol=1e-6, atol=1e-8)


def test_oracle_calls_are_counted(quad):
    autodiff.oracle_counts.clear()
    lam = _rand(quad.dim_outer, 9)
    ops = InnerDerivatives(quad, torch.zeros(quad.dim_inner), lam)
    cg(ops.hvp, _rand(quad.dim_inner), steps=4)
    ops.mixed(torch.ones(quad.dim_inner))
    assert autodiff.oracle_counts["hvp"] == 4
    assert autodiff.oracle_counts["mixed"] == 1
    assert autodiff.oracle_counts["grad_inner"] == 1
