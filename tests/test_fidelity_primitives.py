"""Mutation-proof tests of the shared autodiff primitives (blobench/autodiff.py).

Expected values come from closed forms written in the test (matrix powers, hand recursions of the
iterates and of their Jacobians dθ_t/dλ), never from the engine: a half step, a dropped ∇λf on
the oracle path of ``outer_hypergradient``, a Richardson step in ``least_squares_gd``, an
adjoint not propagated in the reverse unroll, ∇θf detached in ``aggregated_unroll``, … each
changes a number here (tools/mutation/mutants/primitives.toml).
"""

from __future__ import annotations

import pytest
import torch
from fidelity_closed_forms import CoupledForms, randn

from blobench import autodiff

TOL = dict(rtol=1e-9, atol=1e-11)


@pytest.fixture(scope="module")
def quad(registry):
    """``quadratic``: no analytic oracles (autodiff paths); ∇θg = Aθ − Bλ − a, J = −Bᵀ."""
    return registry.problem("quadratic")(seed=5, dim_theta=6, dim_lambda=3, n_outer=8)


@pytest.fixture(scope="module")
def coupled(registry):
    """``coupled_quadratic``: analytic outer oracle (∇λf = Dᵀθ + ρλ + e ≠ 0), autodiff inner."""
    return registry.problem("coupled_quadratic")(seed=6, dim_theta=6, dim_lambda=3, n_outer=8)


def _spd(n, seed):
    m = randn(n * n, seed).reshape(n, n)
    return m @ m.T / n + 0.5 * torch.eye(n, dtype=torch.float64)


def _unroll_by_hand(a, b_mat, a_vec, theta0, lam, steps, lr):
    """θ_T and Z_T = dθ_T/dλ for θ ← θ − lr(Aθ − Bλ − a): Z ← (I − lr A)Z + lr B."""
    theta, z = theta0.clone(), torch.zeros(theta0.numel(), lam.numel(), dtype=torch.float64)
    for _ in range(steps):
        theta = theta - lr * (a @ theta - b_mat @ lam - a_vec)
        z = z - lr * (a @ z - b_mat)
    return theta, z


# ------------------------------------------------------------------ inner loops
def test_gradient_descent_full_steps(quad):
    theta0, lam = randn(6, 1), randn(3, 2)
    lr = 0.7 / quad.lipschitz
    expected, _ = _unroll_by_hand(quad.a_mat, quad.b_mat, quad.a_vec, theta0, lam, 3, lr)
    out = autodiff.gradient_descent(quad, theta0, lam, 3, lr)
    torch.testing.assert_close(out, expected, **TOL)


def test_unroll_value_and_hypergradient_autodiff_path(quad):
    """f(θ_T(λ), λ): d/dλ = ∇λf + Z_Tᵀ∇θf = ρλ + Z_Tᵀ Cᵀ(Cθ_T − c)/m (RHG)."""
    theta0, lam = randn(6, 3), randn(3, 4)
    lr, steps = 0.8 / quad.lipschitz, 4
    theta_t, z = _unroll_by_hand(quad.a_mat, quad.b_mat, quad.a_vec, theta0, lam, steps, lr)
    out = autodiff.unroll(quad, theta0, lam.clone().requires_grad_(True), steps, lr)
    torch.testing.assert_close(out.detach(), theta_t, **TOL)
    lam_leaf = lam.clone().requires_grad_(True)
    hyper = autodiff.outer_hypergradient(
        quad, autodiff.unroll(quad, theta0, lam_leaf, steps, lr), lam_leaf)
    m = quad.c_mat.shape[0]
    grad_theta = quad.c_mat.T @ (quad.c_mat @ theta_t - quad.c_vec) / m
    torch.testing.assert_close(hyper, quad.rho * lam + z.T @ grad_theta, **TOL)


def test_outer_hypergradient_oracle_path_keeps_the_direct_term(coupled):
    """Oracle path (coupled_quadratic has ``outer_grads_oracle``): ∇λf(θ_T, λ) + Z_Tᵀ∇θf."""
    cf = CoupledForms(coupled)
    theta0, lam = randn(6, 5), randn(3, 6)
    lr, steps = 0.8 / coupled.lipschitz, 3
    theta_t, z = _unroll_by_hand(coupled.a_mat, coupled.b_mat, coupled.a_vec, theta0, lam,
                                 steps, lr)
    lam_leaf = lam.clone().requires_grad_(True)
    hyper = autodiff.outer_hypergradient(
        coupled, autodiff.unroll(coupled, theta0, lam_leaf, steps, lr), lam_leaf)
    expected = cf.f_lam(theta_t, lam) + z.T @ cf.f_theta(theta_t, lam)
    torch.testing.assert_close(hyper, expected, **TOL)


def test_reverse_unroll_with_oracles_by_hand(registry):
    """ridge_ho has all three inner oracles: unroll runs _ReverseUnroll. With
    H_λ = XᵀX/n + diag e^λ: θ ← θ − η(H_λθ − Xᵀy/n), Z ← (I − ηH_λ)Z − η diag(e^λ ⊙ θ)."""
    ridge = registry.problem("ridge_ho")(seed=2, n_train=20, n_val=20, n_features=5)
    lam, theta0 = 0.3 * randn(5, 7), randn(5, 8)
    eta, steps = 0.5 * ridge.inner_step_size(lam), 4
    h = ridge.gram + torch.diag(lam.exp())
    theta, z = theta0.clone(), torch.zeros(5, 5, dtype=torch.float64)
    for _ in range(steps):
        z = z - eta * (h @ z) - eta * torch.diag(lam.exp() * theta)
        theta = theta - eta * (h @ theta - ridge.xty)
    lam_leaf = lam.clone().requires_grad_(True)
    out = autodiff.unroll(ridge, theta0, lam_leaf, steps, eta)
    torch.testing.assert_close(out.detach(), theta, **TOL)
    (grad,) = torch.autograd.grad(ridge.outer_loss(out, lam_leaf), lam_leaf)
    grad_theta = ridge.x_val.T @ (ridge.x_val @ theta - ridge.y_val) / 20
    torch.testing.assert_close(grad, z.T @ grad_theta, **TOL)


def test_aggregated_unroll_differentiates_through_the_f_terms(coupled):
    """BDA: θ ← θ − [(1 − α_t)s_l∇θg + α_t s_u∇θf], so
    Z ← Z − [(1 − α_t)s_l(AZ − B) + α_t s_u(CᵀCZ/m + D)] (∇θf = Cᵀ(Cθ − c)/m + Dλ)."""
    cf = CoupledForms(coupled)
    p = coupled
    theta0, lam = randn(6, 9), randn(3, 10)
    s_l, s_u, weights = 0.5 / p.lipschitz, 0.3, [0.5, 0.25, 0.0, 0.125]
    theta, z = theta0.clone(), torch.zeros(6, 3, dtype=torch.float64)
    ctc = p.c_mat.T @ p.c_mat / cf.m
    for a in weights:
        z = z - ((1 - a) * s_l * (p.a_mat @ z - p.b_mat) + a * s_u * (ctc @ z + p.d_mat))
        theta = theta - ((1 - a) * s_l * cf.g_theta(theta, lam) + a * s_u * cf.f_theta(theta, lam))
    lam_leaf = lam.clone().requires_grad_(True)
    out = autodiff.aggregated_unroll(p, theta0, lam_leaf, len(weights), s_l, s_u, weights)
    torch.testing.assert_close(out.detach(), theta, **TOL)
    hyper = autodiff.outer_hypergradient(p, out, lam_leaf)
    torch.testing.assert_close(hyper, cf.f_lam(theta, lam) + z.T @ cf.f_theta(theta, lam), **TOL)


def test_forward_unroll_tangent_by_hand(quad):
    """Forward mode: Z_{t+1} = Z_t − η(H Z_t + J_tᵀ) = (I − ηA)Z_t + ηB from Z_0 = 0."""
    theta0, lam = randn(6, 11), randn(3, 12)
    lr, steps = 0.6 / quad.lipschitz, 3
    theta_t, z = _unroll_by_hand(quad.a_mat, quad.b_mat, quad.a_vec, theta0, lam, steps, lr)
    out, tangent = autodiff.forward_unroll(quad, theta0, lam, steps, lr)
    torch.testing.assert_close(out, theta_t, **TOL)
    torch.testing.assert_close(tangent, z, **TOL)


# ---------------------------------------------------------------- linear solvers
def test_least_squares_gd_steps_on_the_squared_residual():
    """x ← x − lr·A(Ax − b) (gradient of ½‖Ax − b‖²), A symmetric indefinite."""
    a = _spd(5, 13) - 0.8 * torch.eye(5, dtype=torch.float64)
    b, x0, lr = randn(5, 14), randn(5, 15), 0.1
    x = x0.clone()
    for _ in range(4):
        x = x - lr * a @ (a @ x - b)
    torch.testing.assert_close(autodiff.least_squares_gd(lambda v: a @ v, b, 4, lr, x0=x0), x,
                               **TOL)


def test_cg_terminates_in_n_steps():
    """CG on an n × n SPD system is exact after n iterations (finite termination)."""
    a, b = _spd(6, 16), randn(6, 17)
    exact = torch.linalg.solve(a, b)
    torch.testing.assert_close(autodiff.cg(lambda v: a @ v, b, 6), exact, rtol=1e-8, atol=1e-10)
    assert float((autodiff.cg(lambda v: a @ v, b, 3) - exact).norm()) > 1e-6  # not before


def test_neumann_and_fixed_point_partial_sums():
    """neumann(K) = α Σ_{j=0..K}(I − αA)^j b; fixed_point(K) from 0 = α Σ_{j<K}(I − αA)^j b;
    from x0 it adds (I − αA)^K x0."""
    a, b, x0 = _spd(5, 18), randn(5, 19), randn(5, 20)
    alpha = 0.5 / float(torch.linalg.eigvalsh(a)[-1])
    m = torch.eye(5, dtype=torch.float64) - alpha * a

    def partial(k):
        return alpha * sum(torch.linalg.matrix_power(m, j) @ b for j in range(k))

    torch.testing.assert_close(autodiff.neumann(lambda v: a @ v, b, 4, alpha), partial(5), **TOL)
    torch.testing.assert_close(autodiff.fixed_point(lambda v: a @ v, b, 4, alpha), partial(4),
                               **TOL)
    torch.testing.assert_close(autodiff.fixed_point(lambda v: a @ v, b, 4, alpha, x0=x0),
                               partial(4) + torch.linalg.matrix_power(m, 4) @ x0, **TOL)


# ------------------------------------------------------------- products, IFT
def test_implicit_hypergradient_sign(quad):
    """∇λf − J H⁻¹∇θf = ρλ + Bᵀ A⁻¹ Cᵀ(Cθ − c)/m, with the solve done by the test."""
    theta, lam = randn(6, 21), randn(3, 22)
    hyper, _ = autodiff.implicit_hypergradient(
        quad, theta, lam, lambda ops, b: torch.linalg.solve(quad.a_mat, b))
    m = quad.c_mat.shape[0]
    grad_theta = quad.c_mat.T @ (quad.c_mat @ theta - quad.c_vec) / m
    torch.testing.assert_close(
        hyper, quad.rho * lam + quad.b_mat.T @ torch.linalg.solve(quad.a_mat, grad_theta), **TOL)


def test_mixed_products_autodiff_and_finite_differences(quad):
    """J v = −Bᵀv by autodiff and by central differences (exact: ∇λg = −Bᵀθ is linear in θ)."""
    theta, lam, v = randn(6, 23), randn(3, 24), randn(6, 25)
    ops = autodiff.InnerDerivatives(quad, theta, lam)
    torch.testing.assert_close(ops.mixed(v), -quad.b_mat.T @ v, **TOL)
    torch.testing.assert_close(autodiff.mixed_fd(quad, theta, lam, v, 1e-2), -quad.b_mat.T @ v,
                               rtol=1e-7, atol=1e-9)
