"""Issue 21, composable inner solvers for the estimators that differentiate the T-step map
(``unrolled``, ``truncated``, ``forward_mode``, and ``bda``'s aggregation).

Ground truth is independent of blobench.autodiff: the T-step map λ ↦ F_T(λ) = f(θ_T(λ), λ)
of each solver is written out here (gd; heavy ball θ_{t+1} = θ_t − η g_t + β(θ_t − θ_{t−1});
Adam, Kingma & Ba 2015 Alg. 1 with bias corrections; BDA, Liu et al. 2020 Alg. 1 with
α_t = α₀/(t+1)) with gradients from autograd of the problem's losses, and differentiated by
central finite differences in float64. Every (estimator, solver) hypergradient must equal it
to 1e-7 relative (measured 1e-10 – 5e-10 on quadratic and ridge_ho, T = 12).

As T grows the unrolled hypergradient tends to the exact dF/dλ (the solvers share the fixed
point θ*): measured relative errors on ``quadratic`` (η = 1/L): heavy ball 0.39 / 6.8e-3 /
6.7e-10 at T = 25 / 100 / 400 (ridge_ho: 1.8 / 8.0e-2 / 1.4e-8). Adam at η = 0.01: 0.55 at
T = 100, 7.4e-5 at T = 400 (ridge_ho 0.16, 8.2e-8) — but on ``quadratic`` it does not stay
there: 1.7e-3 at T = 1600 and 7e4 at T = 3000. Once ∇g is tiny Adam's v̂ decays (β₂ = 0.999)
faster than its step needs, the effective step η/√v̂ grows past 2/L and the iterate enters a
limit cycle around θ*, whose derivative in λ is not dθ*/dλ. The test asserts the convergence
window, not the limit.

Mutants (self-checks): heavy ball's velocity detached from the graph, Adam's moments detached,
the forward-mode tangent of the solver's state dropped — each must fail the comparison.
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_error

from blobench import autodiff
from blobench.bases.algorithm import cell_theta0

T = 12  # steps of the finite-difference checks


def _lam(problem):
    return 0.3 * torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64)


def _grad(fn, theta, lam):
    theta = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(fn(theta, lam), theta, allow_unused=True)
    return torch.zeros_like(theta) if g is None else g


def map_by_hand(problem, theta, lam, steps, lr, solver, alpha0=0.5, beta=0.9):
    """θ_T of ``steps`` steps of ``solver``, written out (no blobench.autodiff), each followed
    by the problem's prox when it has one."""
    prev, m, v = theta, torch.zeros_like(theta), torch.zeros_like(theta)
    for t in range(steps):
        g = _grad(problem.inner_loss, theta, lam)
        if solver == "gd":
            theta = theta - lr * g
        elif solver == "momentum":
            theta, prev = theta - lr * g + beta * (theta - prev), theta
        elif solver == "adam":
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            theta = theta - lr * (m / (1 - 0.9 ** (t + 1))) / (
                (v / (1 - 0.999 ** (t + 1))).sqrt() + 1e-8)
        else:  # bda
            a = alpha0 / (t + 1)
            theta = theta - ((1 - a) * lr * g + a * lr * _grad(problem.outer_loss, theta, lam))
        projected = problem.inner_prox(theta, lam, lr)  # a constrained lower level
        theta = theta if projected is NotImplemented else projected
    return theta


def fd_hypergradient(problem, lam, steps, lr, solver, eps=1e-5):
    """Central differences of F_T(λ) = f(θ_T(λ), λ), θ_T from the cell's θ₀."""
    def value(at):
        theta = map_by_hand(problem, cell_theta0(problem, at).detach(), at, steps, lr, solver)
        return float(problem.outer_loss(theta, at))

    out = torch.zeros_like(lam)
    for i in range(lam.numel()):
        e = torch.zeros_like(lam)
        e[i] = eps
        out[i] = (value(lam + e) - value(lam - e)) / (2 * eps)
    return out


def one_step(registry, problem, name, lam, **params):
    """(estimate, exact) of dF/dλ from one outer step (cold start, the cell's θ₀)."""
    alg = registry.algorithm(name)(**params)
    gen = torch.Generator().manual_seed(0)
    state = alg.step(problem, alg.init(problem, cell_theta0(problem, lam), lam.clone(), gen))
    return state.hypergrad, problem.exact_hypergradient(state.hypergrad_at)


CASES = [(est, solver) for solver in ("gd", "momentum", "adam")
         for est in ("unrolled", "truncated", "forward_mode")]
CASES += [("truncated", "bda"), ("forward_mode", "bda"), ("bda", "bda")]


def _params(est, solver, lr):
    params = {"inner_steps": T, "inner_lr": lr}
    if est != "bda":
        params["inner_solver"] = solver
    if est == "truncated":
        params["truncation"] = T  # K = T: the whole map (K < T below)
    return params


@pytest.fixture(scope="module", params=["quadratic", "ridge_ho"])
def problem_lam_fd(request, registry):
    """Problem, λ and the finite-difference hypergradient of each solver's T-step map."""
    problem = registry.problem(request.param)(seed=0)
    lam = _lam(problem)
    lrs = {s: (0.05 if s == "adam" else problem.inner_step_size(lam))
           for s in ("gd", "momentum", "adam", "bda")}
    fds = {s: fd_hypergradient(problem, lam, T, lrs[s], s) for s in lrs}
    return problem, lam, lrs, fds


@pytest.mark.parametrize("est,solver", CASES)
def test_hypergradient_is_the_derivative_of_the_solvers_map(registry, problem_lam_fd, est,
                                                           solver):
    problem, lam, lrs, fds = problem_lam_fd
    h, _ = one_step(registry, problem, est, lam, **_params(est, solver, lrs[solver]))
    assert rel_error(h, fds[solver]) < 1e-7, (problem.name, est, solver,
                                              rel_error(h, fds[solver]))


@pytest.mark.parametrize("solver", ["momentum", "adam", "bda"])
def test_truncation_keeps_the_solvers_state_as_a_constant(registry, solver):
    """K < T: the derivative of λ ↦ f(θ_T, λ) with θ_{T−K} and the solver's state at T − K
    frozen — checked by finite differences of that map (the frozen state computed by hand)."""
    problem = registry.problem("quadratic")(seed=0)
    lam, lr, skipped, k = _lam(problem), 0.05, 7, 5
    solver_spec = autodiff.InnerSolver(solver)
    theta_s, state_s = autodiff.inner_solve(problem, cell_theta0(problem, lam), lam, skipped,
                                            lr, solver_spec, return_state=True)

    def value(at):
        theta, state = theta_s, state_s
        for t in range(skipped, skipped + k):
            g = _grad(problem.inner_loss, theta, at)
            fg = _grad(problem.outer_loss, theta, at) if solver == "bda" else None
            theta, state = solver_spec.step(theta, state, g, lr, t, fg)
        return float(problem.outer_loss(theta, at))

    eps, fd = 1e-5, torch.zeros_like(lam)
    for i in range(lam.numel()):
        e = torch.zeros_like(lam)
        e[i] = eps
        fd[i] = (value(lam + e) - value(lam - e)) / (2 * eps)
    h, _ = one_step(registry, problem, "truncated", lam, inner_steps=skipped + k, truncation=k,
                    inner_lr=lr, inner_solver=solver)
    assert rel_error(h, fd) < 1e-7, rel_error(h, fd)
    # and the frozen state matters: the full map's derivative is a different vector
    assert rel_error(h, fd_hypergradient(problem, lam, skipped + k, lr, solver)) > 1e-3


@pytest.mark.parametrize("pname", ["quadratic", "ridge_ho"])
def test_heavy_ball_unroll_converges_to_the_exact_hypergradient(registry, pname):
    problem = registry.problem(pname)(seed=0)
    lam = _lam(problem)
    errs = [rel_error(*one_step(registry, problem, "unrolled", lam, inner_steps=steps,
                                inner_solver="momentum")) for steps in (25, 100, 400)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-7, errs


@pytest.mark.parametrize("pname,tol", [("quadratic", 1e-3), ("ridge_ho", 1e-6)])
def test_adam_unroll_approaches_the_exact_hypergradient(registry, pname, tol):
    """Within its window (module docstring: on quadratic it degrades past T ≈ 1000)."""
    problem = registry.problem(pname)(seed=0)
    lam = _lam(problem)
    errs = [rel_error(*one_step(registry, problem, "unrolled", lam, inner_steps=steps,
                                inner_lr=0.01, inner_solver="adam")) for steps in (100, 400)]
    assert errs[0] > 10 * errs[1] and errs[1] < tol, errs


def test_gd_keeps_the_reverse_adjoint_recursion(registry, monkeypatch):
    """gd on a problem with the three inner oracles (ridge_ho) still runs RHG's explicit
    adjoint recursion, not autograd's replay; heavy ball records the graph instead."""
    problem = registry.problem("ridge_ho")(seed=0)
    lam = _lam(problem)
    calls = []
    original = autodiff._ReverseUnroll.apply
    monkeypatch.setattr(autodiff._ReverseUnroll, "apply",
                        lambda *a: calls.append(1) or original(*a))
    one_step(registry, problem, "unrolled", lam, inner_steps=5)
    assert calls == [1]
    one_step(registry, problem, "unrolled", lam, inner_steps=5, inner_solver="momentum")
    assert calls == [1]


# ---------------------------------------------------------------------------- mutants
def _mutant_step(kind):
    good = autodiff.InnerSolver.step

    def step(self, theta, state, g, lr, t, f_grad=None):
        if kind == "velocity" and self.name == "momentum":
            state = tuple(s.detach() for s in state)
            return good(self, theta, state, g, lr, t, f_grad)
        new, new_state = good(self, theta, state, g, lr, t, f_grad)
        if kind == "moments" and self.name == "adam":
            m, v = state
            m, v = m.detach(), v.detach()
            b1, b2 = self.betas
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
            return theta - lr * m_hat / (v_hat.sqrt() + self.eps), (m, v)
        return new, new_state
    return step


@pytest.mark.parametrize("kind,solver", [("velocity", "momentum"), ("moments", "adam")])
def test_mutant_state_not_differentiated_fails(registry, monkeypatch, kind, solver):
    problem = registry.problem("quadratic")(seed=0)
    lam = _lam(problem)
    lr = 0.05 if solver == "adam" else problem.inner_step_size(lam)
    fd = fd_hypergradient(problem, lam, T, lr, solver)
    monkeypatch.setattr(autodiff.InnerSolver, "step", _mutant_step(kind))
    h, _ = one_step(registry, problem, "unrolled", lam, **_params("unrolled", solver, lr))
    assert rel_error(h, fd) > 1e-3, rel_error(h, fd)


def test_mutant_forward_mode_without_state_tangent_fails(registry, monkeypatch):
    problem = registry.problem("quadratic")(seed=0)
    lam = _lam(problem)
    lr = problem.inner_step_size(lam)
    fd = fd_hypergradient(problem, lam, T, lr, "momentum")
    monkeypatch.setattr(autodiff.InnerSolver, "step", _mutant_step("velocity"))
    h, _ = one_step(registry, problem, "forward_mode", lam,
                    **_params("forward_mode", "momentum", lr))
    assert rel_error(h, fd) > 1e-3, rel_error(h, fd)


def test_unrolled_rejects_bda_and_names_the_entry(registry):
    from blobench.contracts.errors import UserError
    with pytest.raises(UserError, match="inner_solver"):
        registry.algorithm("unrolled")(inner_solver="bda")
