"""Issue 22 hook: projected / proximal inner steps (``Problem.inner_prox``) in every
double-loop inner solver, and which entries apply to a constrained lower level.

The problem is defined here and solved by hand: a box-constrained quadratic lower level with a
diagonal Hessian,

    g(θ, λ) = ½ θᵀ D θ − θᵀ(B λ + a),   θ ∈ [lo, hi]^d,      f(θ, λ) = ½‖Cθ − c‖²/m + ½ρ‖λ‖²,

whose constrained minimizer is the clamp θ*(λ) = clip(D⁻¹(Bλ + a), lo, hi) (D diagonal makes
the box problem separable). Off the kinks, dθ*/dλ = diag(φ) D⁻¹ B with φ the free coordinates
(lo < (D⁻¹(Bλ + a))_i < hi), so dF/dλ = Bᵀ diag(φ) D⁻¹ ∇_θ f(θ*) + ρλ. At the λ used here 2 of
the 8 coordinates are on a bound, 6 free, all ≥ 0.02 from a kink (asserted).

Checks: the projected solvers reach θ*; every (unrolled estimator, solver) hypergradient equals
finite differences of the projected T-step map written out by hand (the clamp included;
measured ≤ 3e-10 relative); as T grows unrolled gd / heavy ball tend to the exact constrained
hypergradient; the unconstrained IFT is wrong here, so implicit entries are skipped unless the
problem declares ``inner_prox_separable``, with which they differentiate the proximal fixed
point and give the exact answer — also for r = e^μ‖θ‖₁, whose threshold depends on λ
(``L1Quadratic``, closed form by hand). Mutants: the prox not differentiated (straight-through),
the prox's derivative in λ dropped — each must fail.
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_error
from test_inner_solvers_unrolled import fd_hypergradient, one_step

from blobench import autodiff
from blobench.bases.algorithm import cell_theta0
from blobench.contracts.problem import Problem

LO, HI = -0.3, 0.3


class BoxQuadratic(Problem):
    name = "box_quadratic_test"
    family = "test"
    sizes = {"quick": {}, "full": {}}
    inner_unique = True

    def build(self, generator):
        def randn(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        d, p, self.m = 8, 3, 12
        self.diag = torch.linspace(1.0, 4.0, d, dtype=torch.float64)
        self.b_mat, self.a_vec = randn(d, p) / 2, 0.3 * randn(d)
        self.c_mat, self.c_vec = randn(self.m, d), randn(self.m)
        self.rho = 0.1

    dim_inner = property(lambda self: 8)
    dim_outer = property(lambda self: 3)

    def inner_loss(self, theta, lam, batch=None):
        return 0.5 * theta @ (self.diag * theta) - theta @ (self.b_mat @ lam + self.a_vec)

    def outer_loss(self, theta, lam, batch=None):
        r = self.c_mat @ theta - self.c_vec
        return 0.5 * (r @ r) / self.m + 0.5 * self.rho * (lam @ lam)

    def inner_prox(self, theta, lam, step):
        return theta.clamp(LO, HI)

    def init_outer(self, generator):
        return torch.zeros(3, dtype=torch.float64)

    def init_inner(self, lam, generator):
        return torch.zeros(8, dtype=torch.float64)

    def inner_step_size(self, lam):
        return 1.0 / float(self.diag.max())

    def evaluate(self, theta, lam):
        return {"test_loss": float(self.outer_loss(theta, lam))}

    def unconstrained(self, lam):
        return (self.b_mat @ lam + self.a_vec) / self.diag

    def inner_solution(self, lam):
        return self.unconstrained(lam.detach()).clamp(LO, HI)

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        u = self.unconstrained(lam)
        free = ((u > LO) & (u < HI)).to(lam.dtype)
        theta = u.clamp(LO, HI)
        f_theta = self.c_mat.T @ (self.c_mat @ theta - self.c_vec) / self.m
        return self.b_mat.T @ (free * f_theta / self.diag) + self.rho * lam


class BoxQuadraticFree(BoxQuadratic):
    """The same problem declaring its prox separable (the implicit entries then apply)."""

    inner_prox_separable = True


class L1Quadratic(BoxQuadratic):
    """g as above plus r(θ; λ) = e^μ ‖θ‖₁, μ = λ's last coordinate (the threshold depends on
    λ): θ*_i = sign(c_i) max(|c_i| − e^μ, 0)/D_i with c = B λ_{:p} + a, so on the support S
    dθ*_S/dλ_{:p} = D_S⁻¹ B_S and dθ*_S/dμ = −e^μ D_S⁻¹ sign(c_S) (Bertrand et al. 2020,
    Prop. 1, for a diagonal Hessian)."""

    inner_prox_separable = True
    dim_outer = property(lambda self: 4)

    def init_outer(self, generator):
        return torch.zeros(4, dtype=torch.float64)

    def inner_loss(self, theta, lam, batch=None):
        return super().inner_loss(theta, lam[:3])

    def outer_loss(self, theta, lam, batch=None):
        return super().outer_loss(theta, lam[:3]) + 0.5 * self.rho * lam[3] ** 2

    def inner_prox(self, theta, lam, step):
        return theta.sign() * torch.relu(theta.abs() - step * lam[3].exp())

    def unconstrained(self, lam):
        return super().unconstrained(lam[:3])

    def inner_solution(self, lam):
        c = self.b_mat @ lam[:3].detach() + self.a_vec
        return c.sign() * torch.relu(c.abs() - lam[3].detach().exp()) / self.diag

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        c = self.b_mat @ lam[:3] + self.a_vec
        support = (c.abs() > lam[3].exp()).to(lam.dtype)
        theta = self.inner_solution(lam)
        f_theta = self.c_mat.T @ (self.c_mat @ theta - self.c_vec) / self.m
        weighted = support * f_theta / self.diag
        return torch.cat([self.b_mat.T @ weighted + self.rho * lam[:3],
                          (-lam[3].exp() * (c.sign() @ weighted) + self.rho * lam[3])[None]])


L1_LAM = torch.tensor([0.8, -0.5, 0.6, -1.6], dtype=torch.float64)


LAM = torch.tensor([0.8, -0.5, 0.6], dtype=torch.float64)


@pytest.fixture(scope="module")
def box():
    problem = BoxQuadratic(seed=0)
    u = problem.unconstrained(LAM)
    active = int(((u <= LO) | (u >= HI)).sum())
    margin = float(torch.minimum((u - LO).abs(), (u - HI).abs()).min())
    assert active == 2 and margin > 0.02, u  # off the kinks
    return problem


@pytest.mark.parametrize("solver,steps,lr,tol", [
    ("gd", 300, None, 1e-12), ("momentum", 800, None, 1e-12),
    # projected Adam on a box keeps the fixed points (InnerSolver docstring); its constant-step
    # oscillation limits the accuracy (measured 3e-6 at T = 400)
    ("adam", 400, 0.01, 1e-4)])
def test_projected_solvers_reach_the_constrained_minimizer(box, solver, steps, lr, tol):
    lr = lr or box.inner_step_size(LAM)
    theta = autodiff.inner_solve(box, cell_theta0(box, LAM), LAM, steps, lr, solver)
    assert rel_error(theta, box.inner_solution(LAM)) < tol
    assert float(theta.min()) >= LO and float(theta.max()) <= HI


CASES = [(est, solver) for solver in ("gd", "momentum", "adam")
         for est in ("unrolled", "truncated", "forward_mode")]
CASES += [("truncated", "bda"), ("forward_mode", "bda"), ("bda", "bda")]


@pytest.mark.parametrize("est,solver", CASES)
def test_hypergradient_is_the_derivative_of_the_projected_map(registry, box, est, solver):
    steps = 12
    lr = 0.05 if solver == "adam" else box.inner_step_size(LAM)
    params = {"inner_steps": steps, "inner_lr": lr}
    if est != "bda":
        params["inner_solver"] = solver
    if est == "truncated":
        params["truncation"] = steps
    h, _ = one_step(registry, box, est, LAM, **params)
    fd = fd_hypergradient(box, LAM, steps, lr, solver, eps=1e-6)
    assert rel_error(h, fd) < 1e-7, (est, solver, rel_error(h, fd))


@pytest.mark.parametrize("solver,long", [("gd", 300), ("momentum", 800)])
def test_unrolled_tends_to_the_exact_constrained_hypergradient(registry, box, solver, long):
    errs = [rel_error(*one_step(registry, box, "unrolled", LAM, inner_steps=steps,
                                inner_solver=solver)) for steps in (5, 40, long)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-10, errs


def test_mutant_prox_not_differentiated_fails(registry, box, monkeypatch):
    def straight_through(self, theta, lam, step):
        return theta + (theta.clamp(LO, HI) - theta).detach()

    steps, lr = 12, box.inner_step_size(LAM)
    fd = fd_hypergradient(box, LAM, steps, lr, "gd", eps=1e-6)
    monkeypatch.setattr(BoxQuadratic, "inner_prox", straight_through)
    h, _ = one_step(registry, box, "unrolled", LAM, inner_steps=steps)
    assert rel_error(h, fd) > 1e-2, rel_error(h, fd)


def test_unconstrained_ift_is_wrong_here(box):
    """Why implicit entries are skipped: the IFT of ∇_θ g = 0 at the constrained θ*."""
    theta = box.inner_solution(LAM)
    h, _ = autodiff.implicit_hypergradient(
        box, theta, LAM, lambda ops, b: autodiff.dense_solve(ops.dense_hessian(), b))
    assert rel_error(h, box.exact_hypergradient(LAM)) > 0.1


def test_which_entries_apply_to_a_constrained_lower_level(registry):
    for name in ("unrolled", "truncated", "forward_mode", "bda"):
        assert registry.algorithm(name)().skip_reason(BoxQuadratic) is None, name
    reason = registry.algorithm("implicit_cg")().skip_reason(BoxQuadratic)
    assert reason and "inner_prox_separable" in reason
    assert registry.algorithm("implicit_cg")().skip_reason(BoxQuadraticFree) is None
    for name in ("stocbio", "darts_fd", "bsa"):  # double-loop estimators ignoring the prox
        reason = registry.algorithm(name)().skip_reason(BoxQuadraticFree)
        assert reason and "inner_prox" in reason, name


@pytest.mark.parametrize("name,params", [("implicit_cg", {"cg_steps": 50}), ("exact", {}),
                                         ("neumann", {"terms": 400})])
@pytest.mark.parametrize("cls,lam", [(BoxQuadraticFree, LAM), (L1Quadratic, L1_LAM)])
def test_implicit_entries_use_the_proximal_fixed_point(registry, name, params, cls, lam):
    problem = cls(seed=0)
    est, exact = one_step(registry, problem, name, lam, inner_steps=300, **params)
    assert rel_error(est, exact) < 1e-8, rel_error(est, exact)


def test_l1_problem_is_off_its_kinks_and_the_unrolled_estimate_tends_to_it(registry):
    problem = L1Quadratic(seed=0)
    c = problem.b_mat @ L1_LAM[:3] + problem.a_vec
    gap = (c.abs() - L1_LAM[3].exp()).abs()
    assert float(gap.min()) > 0.02 and 0 < int((c.abs() > L1_LAM[3].exp()).sum()) < 8, c
    steps, lr = 12, problem.inner_step_size(L1_LAM)
    h, _ = one_step(registry, problem, "unrolled", L1_LAM, inner_steps=steps)
    fd = fd_hypergradient(problem, L1_LAM, steps, lr, "gd", eps=1e-6)
    assert rel_error(h, fd) < 1e-7, rel_error(h, fd)
    est, exact = one_step(registry, problem, "unrolled", L1_LAM, inner_steps=300)
    assert rel_error(est, exact) < 1e-10, rel_error(est, exact)


def test_mutant_prox_derivative_in_lambda_dropped_fails(registry, monkeypatch):
    """The P_λᵀ w term of the proximal IFT: without it the e^μ‖θ‖₁ hypergradient is wrong."""
    problem = L1Quadratic(seed=0)
    monkeypatch.setattr(L1Quadratic, "inner_prox", lambda self, theta, lam, step:
                        theta.sign() * torch.relu(theta.abs() - step * lam[3].detach().exp()))
    est, exact = one_step(registry, problem, "implicit_cg", L1_LAM, inner_steps=300,
                          cg_steps=50)
    assert rel_error(est, exact) > 1e-2, rel_error(est, exact)
