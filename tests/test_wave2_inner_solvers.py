"""Issue 21, composable inner solvers (implicit entries): ``inner_solver`` ∈ {gd, momentum,
adam} on :class:`ImplicitDoubleLoop`. The solvers are compared with their recursions written
out here on ``quadratic`` (∇_θ g = Aθ − Bλ − a); at convergence the implicit estimate is the
exact hypergradient whatever the solver (the IFT uses ∇_θ g = 0 only)."""

from __future__ import annotations

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error

from blobench.bases import algorithm


@pytest.fixture(scope="module")
def quad(registry):
    return registry.problem("quadratic")(seed=0)


def _lam(problem):
    return 0.3 * torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(1))


def _by_hand(problem, lam, steps, eta, solver):
    theta = prev = torch.zeros(problem.dim_inner)
    m = v = torch.zeros(problem.dim_inner)
    for t in range(1, steps + 1):
        g = problem.a_mat @ theta - problem.b_mat @ lam - problem.a_vec
        if solver == "momentum":
            theta, prev = theta - eta * g + 0.9 * (theta - prev), theta
        else:
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
            theta = theta - eta * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
    return theta


@pytest.mark.parametrize("solver", ["momentum", "adam"])
def test_solver_follows_its_recursion(quad, solver):
    lam = _lam(quad)
    eta = quad.inner_step_size(lam)
    got = algorithm.inner_solve(quad, torch.zeros(quad.dim_inner), lam, 25, eta, solver)
    assert rel_error(got, _by_hand(quad, lam, 25, eta, solver)) < 1e-12


@pytest.mark.parametrize("solver,steps,tol", [
    ("gd", 300, 1e-10), ("momentum", 600, 1e-10),
    # deterministic Adam at a constant step oscillates once m̂/√v̂ stops shrinking: measured
    # 9e-8 (θ) at 300 steps, 1e-3 at 3000 — compared at 300
    ("adam", 300, 1e-5)])
@pytest.mark.parametrize("pname", ["quadratic", "ridge_ho"])
def test_implicit_estimate_is_exact_at_convergence_of_any_solver(registry, pname, solver,
                                                                 steps, tol):
    prob = registry.problem(pname)(seed=0)
    est, exact = hypergrad_after_one_step(registry, prob, "implicit_cg", _lam(prob),
                                          inner_solver=solver, inner_steps=steps, cg_steps=200)
    assert rel_error(est, exact) < tol, (pname, solver, rel_error(est, exact))


def test_mutant_ascending_solver_fails(registry, quad, monkeypatch):
    good = algorithm.autodiff.inner_grad
    monkeypatch.setattr(algorithm.autodiff.solvers, "inner_grad", lambda *a, **k: -good(*a, **k))
    est, exact = hypergrad_after_one_step(registry, quad, "implicit_cg", _lam(quad),
                                          inner_solver="momentum", inner_steps=200,
                                          cg_steps=200)
    assert not rel_error(est, exact) < 1e-10


def test_default_solver_is_gradient_descent(registry, quad):
    assert registry.algorithm("implicit_cg")().inner_solver == "gd"
    a, _ = hypergrad_after_one_step(registry, quad, "nystrom", _lam(quad))
    b, _ = hypergrad_after_one_step(registry, quad, "nystrom", _lam(quad), inner_solver="gd")
    assert torch.equal(a, b)
