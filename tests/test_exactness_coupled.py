"""Every estimator on ``coupled_quadratic``, whose outer loss couples θ and λ (issue 26).

There ∇_λ f(θ, λ) = Dᵀθ + ρλ + e depends on θ, so an estimator that takes ∇_λ f at the wrong θ
(before the inner steps, at an auxiliary iterate) or drops it is wrong by a visible margin —
on every other registered problem ∇_λ f ignores θ and such a bug changed nothing.

Expected values are independent of the code under test: the closed form dF/dλ = Qλ + q of the
problem (itself checked here against central differences of F), and, for the deliberately
biased entries, their defining formula evaluated with hand-written gradients of the quadratic
(θ ← θ − η(Aθ − Bλ − a) written out in the test, not ``autodiff.gradient_descent``).
"""

from __future__ import annotations

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error


@pytest.fixture(scope="module")
def coupled(registry):
    return registry.problem("coupled_quadratic")(seed=0)


def _lam(problem, seed=0):
    return 0.5 * torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- hand-written derivatives
def _grad_g(p, theta, lam):
    return p.a_mat @ theta - p.b_mat @ lam - p.a_vec


def _grad_f(p, theta, lam):
    """(∇_θ f, ∇_λ f) of f = ½‖Cθ − c‖²/m + θᵀDλ + ½ρ‖λ‖² + eᵀλ, by hand."""
    m = p.c_mat.shape[0]
    f_theta = p.c_mat.T @ (p.c_mat @ theta - p.c_vec) / m + p.d_mat @ lam
    f_lam = p.d_mat.T @ theta + p.rho * lam + p.e_vec
    return f_theta, f_lam


def _descent(p, theta, lam, steps, lr):
    for _ in range(steps):
        theta = theta - lr * _grad_g(p, theta, lam)
    return theta


def _value(p, lam):
    theta = torch.linalg.solve(p.a_mat, p.b_mat @ lam + p.a_vec)
    r = p.c_mat @ theta - p.c_vec
    return (0.5 * (r @ r) / r.shape[0] + theta @ (p.d_mat @ lam) + 0.5 * p.rho * (lam @ lam)
            + p.e_vec @ lam)


# ------------------------------------------------------------------ the problem itself
@pytest.mark.parametrize("size", ["quick", "full"])
def test_closed_form_hypergradient_matches_finite_differences(registry, size):
    p = registry.problem("coupled_quadratic")(size=size, seed=1)
    lam = _lam(p, 1)
    eye = torch.eye(p.dim_outer)
    fd = torch.stack([(_value(p, lam + 1e-5 * e) - _value(p, lam - 1e-5 * e)) / 2e-5
                      for e in eye[:10]])  # F is quadratic: central differences are exact
    assert rel_error(p.exact_hypergradient(lam)[:10], fd) < 1e-7
    assert float(p.exact_hypergradient(p.lam_star).norm()) < 1e-9 * float(p.q_vec.norm())
    assert p.evaluate(p.init_inner(lam, None), p.lam_star)["suboptimality"] == 0.0


def test_outer_gradient_oracle_equals_autodiff(coupled):
    gen = torch.Generator().manual_seed(5)
    theta = torch.randn(coupled.dim_inner, generator=gen).requires_grad_(True)
    lam = torch.randn(coupled.dim_outer, generator=gen).requires_grad_(True)
    want = torch.autograd.grad(coupled.outer_loss(theta, lam), (theta, lam))
    for got, ref in zip(coupled.outer_grads_oracle(theta.detach(), lam.detach()), want,
                        strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_the_outer_loss_couples_theta_and_lambda(coupled):
    """The instance is a real test: ∇_λ f at θ₀ vs at θ* differ by much of dF/dλ, and
    ∇_λ f ≠ 0 at the optimum (λ enters f directly)."""
    lam = _lam(coupled)
    exact = coupled.exact_hypergradient(lam)
    theta_star = coupled.inner_solution(lam)
    moved = coupled.d_mat.T @ (theta_star - coupled.init_inner(lam, None))
    assert float(moved.norm()) > 0.2 * float(exact.norm())
    _, f_lam_star = _grad_f(coupled, coupled.inner_solution(coupled.lam_star), coupled.lam_star)
    assert float(f_lam_star.norm()) > 0.1


# --------------------------------------------------------- consistent estimators: exact
# (algorithm, params at which the estimate has converged, tolerance)
CONVERGED = [
    ("exact", {"inner_steps": 400}, 1e-9),
    ("implicit_cg", {"inner_steps": 400, "cg_steps": 40, "cg_warm_start": False}, 1e-9),
    ("unrolled", {"inner_steps": 400}, 1e-9),
    ("truncated", {"inner_steps": 400, "truncation": 300}, 1e-9),
    ("forward_mode", {"inner_steps": 400}, 1e-9),
    ("neumann", {"inner_steps": 400, "terms": 300}, 1e-9),
    ("fixed_point", {"inner_steps": 400, "solver_steps": 300}, 1e-9),
    ("approxgrad", {"inner_steps": 400, "solver_steps": 3000, "sigma": 0.0}, 1e-9),
    ("bda", {"inner_steps": 1500, "alpha0": 0.5}, 3e-3),  # aggregation bias ~ α₀/T
    ("stocbio", {"inner_steps": 400, "neumann_terms": 300}, 1e-9),
    ("amigo", {"inner_steps": 400, "linear_steps": 300}, 1e-9),
]


@pytest.mark.parametrize("algorithm, params, tol", CONVERGED, ids=[c[0] for c in CONVERGED])
def test_converged_estimate_is_the_exact_hypergradient(registry, coupled, algorithm, params,
                                                       tol):
    if algorithm not in registry.algorithms:
        pytest.skip(f"{algorithm} is not registered")
    lam = _lam(coupled)
    est, exact = hypergrad_after_one_step(registry, coupled, algorithm, lam, warm_start=False,
                                          **params)
    assert rel_error(est, exact) < tol  # ∇_λ f at θ₀ would be off by ‖Dᵀθ*‖ (see above)


def test_soba_estimate_at_converged_theta_and_v_is_exact(registry, coupled):
    if "soba" not in registry.algorithms:
        pytest.skip("soba is not registered")
    lam = _lam(coupled)
    alg = registry.algorithm("soba")(decay=False, outer_lr=1e-14)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(coupled, coupled.init_inner(lam, gen), lam.clone(), gen)
    for _ in range(1500):  # λ frozen in practice: θ → θ*(λ), v → −H⁻¹∇_θ f
        state = alg.step(coupled, state)
    assert rel_error(state.hypergrad, coupled.exact_hypergradient(state.hypergrad_at)) < 1e-8


def test_f2sa_estimate_converges_with_its_penalty(registry, coupled):
    """F2SA's ∇_λ f is taken at y (the iterate of f + g/μ); at z (the g iterate) it would
    miss the O(1/μ) correction that makes the estimate consistent."""
    if "f2sa" not in registry.algorithms:
        pytest.skip("f2sa is not registered")
    lam = _lam(coupled)
    exact = coupled.exact_hypergradient(lam)
    errs = []
    for mu in (10.0, 100.0, 1000.0):
        est, _ = hypergrad_after_one_step(registry, coupled, "f2sa", lam, inner_steps=3000,
                                          decay=False, penalty=mu, penalty_growth=0.0,
                                          penalty_max=mu)
        errs.append(rel_error(est, exact))
    assert errs[0] > 5 * errs[1] > 25 * errs[2], errs
    assert errs[-1] < 1e-2, errs


# ---------------------------------------- biased approximations: their defining formulas
def test_alternating_takes_grad_lambda_f_after_the_inner_steps(registry, coupled):
    lam = _lam(coupled)
    lr = coupled.inner_step_size(lam)
    for steps in (1, 4):
        est, _ = hypergrad_after_one_step(registry, coupled, "alternating", lam,
                                          warm_start=False, inner_steps=steps)
        theta = _descent(coupled, torch.zeros(coupled.dim_inner), lam, steps, lr)
        assert rel_error(est, _grad_f(coupled, theta, lam)[1]) < 1e-12


@pytest.mark.parametrize("scale", [None, 0.3])
def test_one_step_is_the_identity_hessian_formula_after_the_inner_steps(registry, coupled,
                                                                        scale):
    """dF/dλ ≈ ∇_λ f(θ_T) − s J ∇_θ f(θ_T) with J = −Bᵀ, all at θ_T (Luketina et al. 2016)."""
    lam = _lam(coupled)
    lr = coupled.inner_step_size(lam)
    for steps in (1, 3):
        est, exact = hypergrad_after_one_step(registry, coupled, "one_step", lam,
                                              warm_start=False, inner_steps=steps, scale=scale)
        theta = _descent(coupled, torch.zeros(coupled.dim_inner), lam, steps, lr)
        f_theta, f_lam = _grad_f(coupled, theta, lam)
        s = lr if scale is None else scale
        assert rel_error(est, f_lam + s * coupled.b_mat.T @ f_theta) < 1e-12
        assert rel_error(est, exact) > 0.05  # biased by design


def test_darts_fd_is_the_one_step_unrolled_formula(registry, coupled):
    """Liu et al. 2019 eq. 7 at θ_T: θ' = θ_T − ξ∇_θ g, ∇_λ f(θ', λ) − ξ J ∇_θ f(θ', λ)."""
    lam = _lam(coupled)
    lr = coupled.inner_step_size(lam)
    for xi in (None, 0.05):
        est, _ = hypergrad_after_one_step(registry, coupled, "darts_fd", lam, warm_start=False,
                                          inner_steps=2, xi=xi)
        theta = _descent(coupled, torch.zeros(coupled.dim_inner), lam, 2, lr)
        step = lr if xi is None else xi
        virtual = theta - step * _grad_g(coupled, theta, lam)
        f_theta, f_lam = _grad_f(coupled, virtual, lam)
        # g is quadratic: the central difference of ∇_λ g = −Bᵀθ is exact
        assert rel_error(est, f_lam + step * coupled.b_mat.T @ f_theta) < 1e-9
