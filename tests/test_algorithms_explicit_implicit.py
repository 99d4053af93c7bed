"""Explicit and implicit hypergradient estimators against exact hypergradients.

truncated, forward_mode, bda (explicit); neumann, fixed_point, approxgrad (implicit);
one_step, alternating, darts_fd (biased approximations: their defining formula is checked).
"""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error

from blobench import autodiff
from blobench.contracts.errors import NotApplicable, UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Problem
from blobench.execution.harness import plan, run_cell

NAMES = ("truncated", "forward_mode", "bda", "neumann", "fixed_point", "approxgrad",
         "one_step", "alternating", "darts_fd")


def _problems(registry):
    return [registry.problem("quadratic")(seed=1), registry.problem("ridge_ho")(seed=2)]


def _lam(problem, seed=0):
    return 0.5 * torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(seed))


def _one_step(registry, problem, algorithm, lam, **params):
    """The state after one outer step of ``algorithm`` from ``lam`` (θ₀ = problem's init)."""
    alg = registry.algorithm(algorithm)(**params)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    return alg.step(problem, state)


def _descent(problem, theta, lam, steps, lr):
    """``steps`` gradient steps on g written out here (torch.autograd on the problem's own
    inner loss), so that expected values do not reuse ``autodiff.gradient_descent``."""
    for _ in range(steps):
        theta = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(problem.inner_loss(theta, lam), theta)
        theta = (theta - lr * grad).detach()
    return theta


def _dense(problem, theta, lam):
    ops = autodiff.InnerDerivatives(problem, theta, lam)
    return ops.dense_hessian(), ops.dense_mixed()


# ----------------------------------------------------------- convergence to exact
# (algorithm, knob, increasing values, other params, tolerance at the largest value)
CONVERGENT = [
    ("truncated", "truncation", [1, 10, 300], {"inner_steps": 1500}, 1e-10),
    ("neumann", "terms", [1, 10, 300], {"inner_steps": 1500}, 1e-10),
    ("fixed_point", "solver_steps", [1, 10, 300], {"inner_steps": 1500}, 1e-10),
    ("approxgrad", "solver_steps", [10, 100, 3000], {"inner_steps": 1500, "sigma": 0.0}, 1e-10),
    ("forward_mode", "inner_steps", [10, 50, 300], {}, 1e-10),
    # the aggregation bias decays like α₀/T only
    ("bda", "inner_steps", [10, 100, 1500], {"alpha0": 0.5}, 2e-3),
]


@pytest.mark.parametrize("algorithm, knob, values, extra, tol", CONVERGENT,
                         ids=[c[0] for c in CONVERGENT])
def test_hypergradient_converges_to_exact(registry, algorithm, knob, values, extra, tol):
    for problem in _problems(registry):
        lam = _lam(problem)
        errors = []
        for value in values:
            params = {"warm_start": False, **extra, knob: value}
            est, exact = hypergrad_after_one_step(registry, problem, algorithm, lam, **params)
            errors.append(rel_error(est, exact))
        assert all(b < a for a, b in itertools.pairwise(errors)), (problem.name, errors)
        assert errors[-1] < tol, (problem.name, errors)


def test_a_transposed_jacobian_would_fail_the_tolerance(registry):
    """On a square, non-symmetric J the converged estimate passes and Jᵀ is far off."""
    problem = registry.problem("quadratic")(seed=3, dim_theta=10, dim_lambda=10)
    lam = _lam(problem)
    est, exact = hypergrad_after_one_step(registry, problem, "neumann", lam, warm_start=False,
                                          inner_steps=1500, terms=500)
    assert rel_error(est, exact) < 1e-10
    theta = problem.inner_solution(lam)
    h, j = _dense(problem, theta, lam)
    f_theta, f_lam = autodiff.outer_grads(problem, theta, lam)
    transposed = f_lam - j.T @ torch.linalg.solve(h, f_theta)
    assert rel_error(transposed, exact) > 0.1


# ------------------------------------------------------------- exact identities
def test_forward_mode_equals_reverse_mode(registry):
    for problem in _problems(registry):
        lam = _lam(problem)
        for steps in (2, 30):  # (one step from θ₀ = 0 does not depend on λ on ridge_ho)
            fwd = _one_step(registry, problem, "forward_mode", lam, inner_steps=steps)
            chunked = _one_step(registry, problem, "forward_mode", lam, inner_steps=steps,
                                chunk_size=3)
            rev = _one_step(registry, problem, "unrolled", lam, inner_steps=steps)
            assert rel_error(fwd.hypergrad, rev.hypergrad) < 1e-10
            assert rel_error(chunked.hypergrad, rev.hypergrad) < 1e-10
            assert torch.allclose(fwd.theta, rev.theta, rtol=0, atol=1e-12)
            # unconverged (T = 30 on the quadratic): both differ from the exact IFT value alike
        assert rel_error(fwd.hypergrad, problem.exact_hypergradient(lam)) > 1e-4


def test_forward_mode_warm_start_equals_reverse_mode_over_outer_steps(registry):
    problem = registry.problem("ridge_ho")(seed=2)
    lams = {}
    for name in ("forward_mode", "unrolled"):
        alg = registry.algorithm(name)(inner_steps=5, warm_start=True)
        gen = torch.Generator().manual_seed(0)
        lam0 = _lam(problem)
        state = alg.init(problem, problem.init_inner(lam0, gen), lam0, gen)
        for _ in range(3):
            state = alg.step(problem, state)
        lams[name] = state
    assert rel_error(lams["forward_mode"].hypergrad, lams["unrolled"].hypergrad) < 1e-10
    assert rel_error(lams["forward_mode"].lam, lams["unrolled"].lam) < 1e-10


@pytest.mark.parametrize("algorithm, params", [
    ("truncated", {"inner_steps": 40, "truncation": 40}),
    ("bda", {"inner_steps": 40, "alpha0": 0.0}),
])
def test_full_truncation_and_no_aggregation_equal_unrolled(registry, algorithm, params):
    for problem in _problems(registry):
        lam = _lam(problem)
        est = _one_step(registry, problem, algorithm, lam, **params)
        ref = _one_step(registry, problem, "unrolled", lam, inner_steps=params["inner_steps"])
        assert rel_error(est.hypergrad, ref.hypergrad) < 1e-12
        assert torch.allclose(est.theta, ref.theta, rtol=0, atol=1e-14)
        # and the knob matters: a shorter truncation / positive α₀ changes the estimate
        knob = {"truncation": 5} if algorithm == "truncated" else {"alpha0": 0.5}
        other = _one_step(registry, problem, algorithm, lam, **{**params, **knob})
        assert rel_error(other.hypergrad, ref.hypergrad) > 1e-3


def test_truncated_equals_neumann_at_the_fixed_point(registry):
    """At a converged θ, K-step truncation is the (K−1)-term Neumann series with α = η."""
    for problem in _problems(registry):
        lam = _lam(problem)
        trunc = _one_step(registry, problem, "truncated", lam, inner_steps=2000, truncation=7,
                          warm_start=False)
        neu = _one_step(registry, problem, "neumann", lam, inner_steps=2000, terms=6,
                        warm_start=False)
        assert rel_error(trunc.hypergrad, neu.hypergrad) < 1e-9


def test_bda_aggregates_the_upper_gradient(registry):
    """One aggregated step by hand: θ₁ = θ₀ − [(1 − α₀) s_l ∇_θ g + α₀ s_u ∇_θ f]."""
    problem = registry.problem("quadratic")(seed=1)
    lam = _lam(problem)
    state = _one_step(registry, problem, "bda", lam, inner_steps=1, alpha0=0.3, upper_lr=0.05)
    theta0 = problem.init_inner(lam, None)
    lr = problem.inner_step_size(lam)
    expected = theta0 - (0.7 * lr * autodiff.inner_grad(problem, theta0, lam)
                         + 0.3 * 0.05 * autodiff.outer_grads(problem, theta0, lam)[0])
    assert torch.allclose(state.theta, expected, rtol=0, atol=1e-14)
    plain = _descent(problem, theta0, lam, 1, lr)
    assert float((state.theta - plain).norm()) > 1e-3


# ------------------------------------------------------ biased estimators' formulas
def test_one_step_is_the_identity_hessian_formula(registry):
    for problem in _problems(registry):
        lam = _lam(problem)
        for scale in (None, 0.3):
            state = _one_step(registry, problem, "one_step", lam, inner_steps=3,
                              warm_start=False, scale=scale)
            theta0 = problem.init_inner(lam, None)
            lr = problem.inner_step_size(lam)
            theta = _descent(problem, theta0, lam, 3, lr)
            _, j = _dense(problem, theta, lam)
            f_theta, f_lam = autodiff.outer_grads(problem, theta, lam)
            s = lr if scale is None else scale
            correction = s * (j @ f_theta)
            assert rel_error(state.hypergrad, f_lam - correction) < 1e-12
            assert float(correction.norm()) > 1e-2 * float(f_lam.norm() + 1e-3)
            # biased by design: far from the exact hypergradient
            assert rel_error(state.hypergrad, problem.exact_hypergradient(lam)) > 0.1


def test_alternating_is_the_partial_gradient(registry):
    for problem in _problems(registry):
        lam = _lam(problem)
        state = _one_step(registry, problem, "alternating", lam, inner_steps=4, warm_start=False)
        theta = _descent(problem, problem.init_inner(lam, None), lam, 4,
                         problem.inner_step_size(lam))
        assert torch.allclose(state.theta, theta, rtol=0, atol=1e-14)
        expected = torch.zeros_like(lam) if problem.name == "ridge_ho" else problem.rho * lam
        assert torch.allclose(state.hypergrad, expected, rtol=0, atol=1e-14)
        assert torch.allclose(state.hypergrad, autodiff.outer_grads(problem, theta, lam)[1])


def test_darts_fd_equals_the_exact_one_step_unroll(registry):
    """FD mixed product = autodiff mixed product = reverse mode through one virtual step."""
    for problem in _problems(registry):
        lam = _lam(problem)
        alg = registry.algorithm("darts_fd")(inner_steps=3, warm_start=False)
        state = _one_step(registry, problem, "darts_fd", lam, inner_steps=3, warm_start=False)
        lr = problem.inner_step_size(lam)
        theta = _descent(problem, problem.init_inner(lam, None), lam, 3, lr)
        exact_mixed = alg.one_step_hypergradient(problem, theta, lam, lr, exact_mixed=True)
        leaf = lam.clone().requires_grad_(True)
        unrolled = autodiff.outer_hypergradient(
            problem, autodiff.unroll(problem, theta, leaf, 1, lr), leaf)
        assert rel_error(unrolled, exact_mixed) < 1e-12
        # both test problems have ∇_λ g quadratic in θ: central differences are exact
        assert rel_error(state.hypergrad, exact_mixed) < 1e-9
        f_lam = autodiff.outer_grads(problem, problem.init_inner(lam, None), lam)[1]
        assert rel_error(state.hypergrad, f_lam) > 1e-3  # the second-order term is there


class _Curved(Problem):
    """g = Σ e^{λ_i} cosh(θ_i) − aᵀθ, f = ½‖θ − c‖²: ∇_λ g is not polynomial in θ."""

    name = ""  # not registered
    params = {"d": Param(int, 6, "dimension", low=1)}

    def build(self, generator):
        d = self.config["d"]
        self.a = torch.randn(d, generator=generator, dtype=torch.float64)
        self.c = torch.randn(d, generator=generator, dtype=torch.float64)

    dim_inner = property(lambda self: self.config["d"])
    dim_outer = property(lambda self: self.config["d"])

    def inner_loss(self, theta, lam, batch=None):
        return (lam.exp() * torch.cosh(theta)).sum() - self.a @ theta

    def outer_loss(self, theta, lam, batch=None):
        return 0.5 * ((theta - self.c) ** 2).sum()

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner)

    def evaluate(self, theta, lam):
        return {"test_loss": float(self.outer_loss(theta, lam))}


def test_mixed_fd_error_is_second_order_in_the_radius():
    problem = _Curved(seed=0)
    gen = torch.Generator().manual_seed(1)
    theta, lam, v = (torch.randn(6, generator=gen) for _ in range(3))
    exact = autodiff.InnerDerivatives(problem, theta, lam).mixed(v)
    errors = [rel_error(autodiff.mixed_fd(problem, theta, lam, v, eps), exact)
              for eps in (1e-1, 1e-2)]
    assert errors[1] < 1e-3
    assert 50 < errors[0] / errors[1] < 200  # O(ε²): ×100 per decade
    assert rel_error(-autodiff.mixed_fd(problem, theta, lam, v, 1e-3), exact) > 1.0


# ------------------------------------------------------------------ solver details
def test_approxgrad_solves_the_damped_system(registry):
    for problem in _problems(registry):
        lam = _lam(problem)
        sigma = 0.05
        state = _one_step(registry, problem, "approxgrad", lam, inner_steps=1500,
                          warm_start=False, solver_steps=4000, sigma=sigma)
        theta = state.theta
        h, j = _dense(problem, theta, lam)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam)
        eye = torch.eye(problem.dim_inner)
        damped = f_lam - j @ torch.linalg.solve(h + sigma * eye, f_theta)
        assert rel_error(state.hypergrad, damped) < 1e-9
        assert rel_error(state.hypergrad, problem.exact_hypergradient(lam)) > 1e-4


@pytest.mark.parametrize("algorithm, knob", [("fixed_point", "solver_steps"),
                                             ("approxgrad", "solver_steps")])
def test_warm_started_adjoint_accumulates_iterations(registry, algorithm, knob):
    """At a fixed λ, two warm-started solves of K steps equal one solve of 2K steps."""
    problem = registry.problem("quadratic")(seed=1)
    lam = _lam(problem)
    extra = {"sigma": 0.0} if algorithm == "approxgrad" else {}
    states = {}
    for warm in (True, False):
        alg = registry.algorithm(algorithm)(inner_steps=1500, warm_start=False, outer_lr=1e-300,
                                            solver_warm_start=warm, **{knob: 5}, **extra)
        gen = torch.Generator().manual_seed(0)
        state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
        for _ in range(2):
            state = alg.step(problem, state)
        assert torch.equal(state.hypergrad_at, lam)
        states[warm] = state.hypergrad
    once, exact = hypergrad_after_one_step(registry, problem, algorithm, lam, inner_steps=1500,
                                           warm_start=False, **{knob: 10}, **extra)
    assert rel_error(states[True], once) < 1e-12
    assert rel_error(states[False], once) > 1e-3  # cold: still 5 steps
    assert rel_error(states[True], exact) < rel_error(states[False], exact)


# -------------------------------------------------------------------- outer loop
@pytest.mark.parametrize("algorithm, params, tol", [
    ("neumann", {"inner_steps": 10, "terms": 100}, 1e-3),
    ("fixed_point", {"inner_steps": 10, "solver_steps": 10}, 1e-3),
    ("approxgrad", {"inner_steps": 10, "solver_steps": 20, "sigma": 0.0}, 1e-3),
    ("truncated", {"inner_steps": 100, "truncation": 100, "warm_start": True}, 1e-3),
    ("bda", {"inner_steps": 100, "alpha0": 0.5}, 2e-2),
])
def test_outer_loop_reaches_lambda_star(registry, algorithm, params, tol):
    problem = registry.problem("quadratic")(seed=0)
    alg = registry.algorithm(algorithm)(outer_lr=1.0, **params)
    gen = torch.Generator().manual_seed(0)
    lam0 = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam0, gen), lam0, gen)
    for _ in range(75):
        state = alg.step(problem, state)
    assert rel_error(state.lam, problem.lam_star) < tol


@pytest.mark.parametrize("algorithm", ["one_step", "alternating", "darts_fd"])
def test_biased_estimators_stop_short_of_lambda_star(registry, algorithm):
    problem = registry.problem("quadratic")(seed=0)
    alg = registry.algorithm(algorithm)(outer_lr=1.0)
    gen = torch.Generator().manual_seed(0)
    lam0 = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam0, gen), lam0, gen)
    for _ in range(75):
        state = alg.step(problem, state)
    assert torch.isfinite(state.lam).all()
    assert rel_error(state.lam, problem.lam_star) > 0.1


# ------------------------------------------------------------- registry, validation
def test_entries_are_registered_with_references(registry):
    for name in NAMES:
        cls = registry.algorithm(name)
        assert cls.reference and cls.family
        assert len(inspect.getmodule(cls).__doc__) > 300  # the math, in the module docstring
        assert cls().applies_to(type(_problems(registry)[0])) is None


@pytest.mark.parametrize("algorithm, params, message", [
    ("truncated", {"inner_steps": 10, "truncation": 11}, r"truncation K=11 must be <= "),
    ("truncated", {"truncation": 0}, r"truncation=0 must be >= 1"),
    ("forward_mode", {"inner_lr": -0.1}, r"inner_lr=-0\.1 must be > 0"),
    ("neumann", {"alpha": -1.0}, r"alpha=-1\.0 must be > 0"),
    ("neumann", {"terms": -1}, r"terms=-1 must be >= 0"),
    ("fixed_point", {"alpha": 0.0}, r"alpha=0\.0 must be > 0"),
    ("approxgrad", {"sigma": -1e-3}, r"sigma=-0\.001 must be >= 0"),
    ("approxgrad", {"p_lr": -1.0}, r"p_lr=-1\.0 must be > 0"),
    ("one_step", {"scale": -1.0}, r"scale=-1\.0 must be > 0"),
    ("darts_fd", {"xi": -0.1}, r"xi=-0\.1 must be > 0"),
    ("darts_fd", {"fd_radius": 0.0}, r"fd_radius=0\.0 must be > 0"),
    ("bda", {"alpha0": 1.5}, r"alpha0=1\.5 must be <= 1"),
    ("bda", {"upper_lr": -1.0}, r"upper_lr=-1\.0 must be > 0"),
    ("alternating", {"inner_steps": 0}, r"inner_steps=0 must be >= 1"),
])
def test_bad_hyperparameters_raise_user_errors(registry, algorithm, params, message):
    with pytest.raises(UserError, match=message):
        registry.algorithm(algorithm)(**params)


# ------------------------------------------------- a non-quadratic problem: logreg_ho
def _logreg(registry):
    if "logreg_ho" not in registry.problems:
        pytest.skip("logreg_ho is not registered")
    problem = registry.problem("logreg_ho")(seed=0)
    lam = problem.init_outer(None) + 0.3 * torch.randn(
        problem.dim_outer, generator=torch.Generator().manual_seed(0))
    return problem, lam


def test_forward_mode_equals_reverse_mode_on_logreg(registry):
    problem, lam = _logreg(registry)
    fwd = _one_step(registry, problem, "forward_mode", lam, inner_steps=20)
    rev = _one_step(registry, problem, "unrolled", lam, inner_steps=20)
    bda0 = _one_step(registry, problem, "bda", lam, inner_steps=20, alpha0=0.0)
    assert rel_error(fwd.hypergrad, rev.hypergrad) < 1e-10
    assert rel_error(bda0.hypergrad, rev.hypergrad) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, knob", [("neumann", "terms"), ("fixed_point", "solver_steps"),
                                             ("truncated", "truncation")])
def test_hypergradient_converges_to_exact_on_logreg(registry, algorithm, knob):
    problem, lam = _logreg(registry)
    errors = []
    for value in (10, 100, 1000):
        est, exact = hypergrad_after_one_step(registry, problem, algorithm, lam,
                                              warm_start=False, inner_steps=3000, **{knob: value})
        errors.append(rel_error(est, exact))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-9, errors


class _InitIsOuter(Problem):
    """θ₀ = λ (MAML-type): g = ½ θᵀAθ − aᵀθ + ½ μ‖θ − λ‖², f = ½‖θ − c‖²."""

    name = ""  # not registered
    inner_init_is_outer = True
    params = {"d": Param(int, 5, "dimension", low=1)}

    def build(self, generator):
        d = self.config["d"]
        m = torch.randn(d, d, generator=generator, dtype=torch.float64)
        self.a_mat = m @ m.T / d + torch.eye(d)
        self.a = torch.randn(d, generator=generator, dtype=torch.float64)
        self.c = torch.randn(d, generator=generator, dtype=torch.float64)

    dim_inner = property(lambda self: self.config["d"])
    dim_outer = property(lambda self: self.config["d"])

    def inner_loss(self, theta, lam, batch=None):
        proximal = 0.5 * ((theta - lam) ** 2).sum()
        return 0.5 * theta @ (self.a_mat @ theta) - self.a @ theta + proximal

    def outer_loss(self, theta, lam, batch=None):
        return 0.5 * ((theta - self.c) ** 2).sum()

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer)

    def init_inner(self, lam, generator):
        return lam

    def inner_step_size(self, lam):
        return 0.1

    def evaluate(self, theta, lam):
        return {"test_loss": float(self.outer_loss(theta, lam))}


def test_explicit_estimators_differentiate_through_an_init_that_is_lambda(registry):
    problem = _InitIsOuter(seed=0)
    lam = _lam(problem)
    ref = _one_step(registry, problem, "unrolled", lam, inner_steps=15)
    for algorithm, params in [("forward_mode", {}), ("truncated", {"truncation": 15}),
                              ("bda", {"alpha0": 0.0})]:
        est = _one_step(registry, problem, algorithm, lam, inner_steps=15, **params)
        assert rel_error(est.hypergrad, ref.hypergrad) < 1e-10, algorithm
    # dropping dθ₀/dλ (a shorter truncation) is visibly different
    short = _one_step(registry, problem, "truncated", lam, inner_steps=15, truncation=14)
    assert rel_error(short.hypergrad, ref.hypergrad) > 1e-2


def test_forward_mode_refuses_a_too_large_tangent(registry):
    problem = registry.problem("quadratic")(seed=0)
    alg = registry.algorithm("forward_mode")(max_tangent_size=100)
    with pytest.raises(NotApplicable, match="dim θ · dim λ = 300"):
        alg.init(problem, problem.init_inner(None, None), problem.init_outer(None),
                 torch.Generator().manual_seed(0))
    # the harness records it as not applicable (with the reason), not as a failure
    cells, _ = plan(registry, ["quadratic"], ["forward_mode[max_tangent_size=100]"], [0],
                    steps=3)
    record = run_cell(registry, cells[0])
    assert record["status"] == "not_applicable", record["message"]
    assert "dim θ · dim λ = 300" in record["message"] and record["steps_done"] == 0
