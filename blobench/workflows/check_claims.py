"""What ``blobench check`` verifies for each kind of entry: the claim the entry makes.

Every expected value here is computed independently of the entry and of
:mod:`blobench.autodiff`: closed forms of the tiny quadratic ``coupled_quadratic``
(g = ½θᵀAθ − θᵀBλ − aᵀθ, f = ½‖Cθ − c‖²/m + θᵀDλ + ½ρ‖λ‖² + eᵀλ, so ∇_θ g = Aθ − Bλ − a,
J = −Bᵀ, ∇_θ f = Cᵀ(Cθ − c)/m + Dλ, ∇_λ f = Dᵀθ + ρλ + e, dF/dλ = Qλ + q), inner iterates
written out as θ ← θ − η(Aθ − Bλ − a), and central finite differences of outer losses computed
with plain ``torch.autograd`` gradient steps on the problem's own losses.

Kinds (:func:`entry_kind`):

- ``consistent`` (the default): the estimate → dF/dλ as a knob grows. Checked on every check
  problem with an ``exact_hypergradient`` (cosine ≥ 0.5 over 20 outer steps, F decreases) and,
  when the entry declares ``check_knob = (name, increasing values, fixed params)`` (or is in
  :data:`KNOBS`), for convergence in it to the closed form on the tiny quadratic — one outer
  step of the update compared with the closed-form hypergradient (error decreasing, last
  < 1e-6).
- ``approximation``: a deliberately biased estimator declares ``approximation`` (a key of
  :data:`APPROXIMATIONS`); its first update direction must equal that formula evaluated by
  hand on the tiny quadratic, and F must decrease on ``quadratic`` where its paper says so.
- ``lambda_star``: penalty and value-function methods (``check_budget`` or
  :data:`BUDGETS`): reach λ* of ``quadratic`` within the stated budget.
- ``stochastic`` (family contains "stochastic"): the hypergradient checks of ``consistent``,
  plus convergence on ``finite_sum_quadratic`` under its mini-batches at defaults.
- ``meta``: initialization-based meta-learning (applies only where θ₀ = θ₀(λ)): on a tiny
  ``sinusoid`` the direction is compared with central differences of the T-step adapted outer
  loss F_T(λ) = f(θ_T(θ₀(λ)), λ) along random directions (``maml``: equal; ``first_order_meta``
  entries: a descent direction of F_T; ``imaml``: equal to the implicit meta-gradient of the
  converged proximal problem).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch

from blobench.bases.algorithm import ImplicitDoubleLoop
from blobench.contracts.problem import Problem

Tensor = torch.Tensor
Verdict = tuple[bool, str]

#: the claims a deliberately biased entry may declare (class attribute ``approximation``)
APPROXIMATIONS = {
    "partial_gradient": "∇_λ f(θ_T, λ) after the T inner steps, no implicit term "
                        "(no descent claim: it ignores θ's response to λ)",
    "identity_hessian": "∇_λ f − s J ∇_θ f at θ_T, H⁻¹ ≈ s·I (s = `scale` or η)",
    "one_step_unroll": "DARTS eq. 7 at θ_T: ∇_λ f(θ') − ξ J ∇_θ f(θ'), θ' = θ_T − ξ ∇_θ g",
    "first_order_meta": "a descent direction of the T-step adapted outer loss F_T",
    "optimizer_jacobian": "SAMA: ∇_λ f − J P ∇_θ f at θ_T of the base optimizer, P = its "
                          "∂u/∂g (SGD: η; Adam: η/(√v̂ + ε), η where v̂ = 0)",
}
#: non-default values the approximation check also runs with, for the knobs an entry has
PROBES = {"scale": 0.37, "xi": 0.05, "inner_steps": 3, "base_optimizer": "sgd"}
#: approximations whose papers claim that the outer objective decreases
DESCENT_CLAIMED = ("identity_hessian", "one_step_unroll")

#: knobs of the consistent built-in entries that do not declare ``check_knob`` themselves
KNOBS: dict[str, tuple[str, tuple[int, ...], dict[str, Any]]] = {
    "stocbio": ("neumann_terms", (2, 20, 300), {"inner_steps": 400}),
    "amigo": ("linear_steps", (2, 20, 300), {"inner_steps": 400}),
}

#: (outer steps, parameters, tolerance on ‖λ − λ*‖/‖λ*‖) on ``quadratic`` for the penalty and
#: value-function entries (their own tests' settings: tests/test_algorithms_first_order_*.py)
BUDGETS: dict[str, tuple[int, dict[str, Any], float]] = {
    "penalty": (500, {}, 2e-2),
    "bome": (800, {"lr": 0.02, "outer_lr": 0.02, "inner_steps": 30}, 0.15),
    "f2sa": (300, {"decay": False, "penalty": 100.0, "penalty_growth": 0.5}, 2e-2),
}

TINY = {"dim_theta": 6, "dim_lambda": 3, "n_outer": 8}
STOCHASTIC_STEPS = 300
STOCHASTIC_GAIN = 0.1  # suboptimality must fall below this fraction of its start
META = {"n_tasks": 2, "k_shot": 5, "hidden": 8, "n_test_tasks": 2}


def entry_kind(cls: type, name: str) -> str:
    """The kind of check an algorithm class gets (see the module docstring)."""
    if getattr(cls, "approximation", None):
        return "approximation"
    if getattr(cls, "check_budget", None) or name in BUDGETS:
        return "lambda_star"
    if "meta-learning" in (cls.family or ""):
        return "meta"
    if "stochastic" in (cls.family or ""):
        return "stochastic"
    return "consistent"


def _first_step(cls: type, problem: Problem, lam: Tensor, **params: Any):
    """(algorithm, state after one outer step from λ, θ₀ = the problem's init)."""
    algorithm = cls(**params)
    gen = torch.Generator().manual_seed(0)
    state = algorithm.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    return algorithm, algorithm.step(problem, state)


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-300))


# ------------------------------------------------------------ the tiny coupled quadratic
class _Tiny:
    """Closed-form derivatives of ``coupled_quadratic`` at the TINY size, by hand."""

    def __init__(self, registry: Any):
        self.p = registry.problem("coupled_quadratic")(seed=0, **TINY)
        self.lam = 0.5 * torch.randn(self.p.dim_outer, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(7))

    def grad_g(self, theta: Tensor, lam: Tensor) -> Tensor:
        return self.p.a_mat @ theta - self.p.b_mat @ lam - self.p.a_vec

    def grad_f(self, theta: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        p = self.p
        return (p.c_mat.T @ (p.c_mat @ theta - p.c_vec) / p.c_mat.shape[0] + p.d_mat @ lam,
                p.d_mat.T @ theta + p.rho * lam + p.e_vec)

    def descent(self, steps: int, lr: float) -> Tensor:
        theta = torch.zeros(self.p.dim_inner, dtype=torch.float64)
        for _ in range(steps):
            theta = theta - lr * self.grad_g(theta, self.lam)
        return theta

    def base_optimizer(self, config: dict[str, Any], eta: float) -> tuple[Tensor, Tensor]:
        """(θ_T, P) after T steps of SAMA's base optimizer from θ = 0, Adam written out
        (β = (0.9, 0.999), ε = 1e-8, bias-corrected moments)."""
        steps = config.get("inner_steps", 1)
        if config.get("base_optimizer") != "adam":
            return self.descent(steps, eta), torch.full((self.p.dim_inner,), eta,
                                                        dtype=torch.float64)
        theta = m = v = torch.zeros(self.p.dim_inner, dtype=torch.float64)
        for t in range(1, steps + 1):
            grad = self.grad_g(theta, self.lam)
            m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
            v_hat = v / (1 - 0.999**t)
            theta = theta - eta * (m / (1 - 0.9**t)) / (v_hat.sqrt() + 1e-8)
        return theta, torch.where(v_hat > 0, eta / (v_hat.sqrt() + 1e-8), eta)

    def approximation(self, claim: str, config: dict[str, Any]) -> Tensor:
        """The direction ``claim`` prescribes for the first outer step, by hand."""
        lam = self.lam
        eta = config.get("inner_lr") or self.p.inner_step_size(lam)
        theta = self.descent(config.get("inner_steps", 1), eta)
        f_theta, f_lam = self.grad_f(theta, lam)
        if claim == "partial_gradient":
            return f_lam
        if claim == "identity_hessian":
            scale = config.get("scale") or eta
            return f_lam + scale * self.p.b_mat.T @ f_theta  # − s J ∇_θ f with J = −Bᵀ
        if claim == "optimizer_jacobian":
            theta, precondition = self.base_optimizer(config, eta)
            f_theta, f_lam = self.grad_f(theta, lam)
            return f_lam + self.p.b_mat.T @ (precondition * f_theta)
        xi = config.get("xi") or eta  # one_step_unroll
        virtual = theta - xi * self.grad_g(theta, lam)
        f_theta, f_lam = self.grad_f(virtual, lam)
        return f_lam + xi * self.p.b_mat.T @ f_theta


def check_approximation(cls: type, registry: Any, claim: str) -> Verdict:
    if claim not in APPROXIMATIONS:
        return False, (f"unknown approximation {claim!r}; declare one of "
                       f"{', '.join(APPROXIMATIONS)}")
    if claim == "first_order_meta":
        return check_meta(cls, registry, claim)
    tiny = _Tiny(registry)
    worst = 0.0
    # at the defaults, and with each knob of the formula the entry has set away from them
    for params in ({}, *({k: v} for k, v in PROBES.items() if k in cls.params)):
        algorithm, state = _first_step(cls, tiny.p, tiny.lam, **params)
        if state.hypergrad is None:
            return False, "the entry exposes no direction (state.hypergrad is None)"
        worst = max(worst, _rel(state.hypergrad, tiny.approximation(claim, algorithm.config)))
    probed = ", ".join(f"{k}={v}" for k, v in PROBES.items() if k in cls.params) or "none"
    return worst < 1e-8, (f"first direction vs {APPROXIMATIONS[claim]} by hand on "
                          f"coupled_quadratic{TINY}, at defaults and with {probed}: worst "
                          f"relative error {worst:.1e} (need < 1e-8)")


def check_descent(cls: type, registry: Any, steps: int = 20) -> Verdict:
    problem = registry.problem("quadratic")(seed=0)
    algorithm = cls()
    gen = torch.Generator().manual_seed(0)
    lam0 = problem.init_outer(gen)
    state = algorithm.init(problem, problem.init_inner(lam0, gen), lam0, gen)
    for _ in range(steps):
        state = algorithm.step(problem, state)
    f0, f1 = (float(problem.outer_loss(problem.inner_solution(x), x)) for x in (lam0, state.lam))
    return f1 < f0 and math.isfinite(f1), f"F {f0:.4g} → {f1:.4g} in {steps} steps (quadratic)"


def check_knob(cls: type, registry: Any, knob: tuple) -> Verdict:
    """``knob`` = (name, increasing values, fixed parameters[, tolerance at the last value])."""
    name, values, fixed = knob[:3]
    tol = knob[3] if len(knob) > 3 else 1e-6
    tiny = _Tiny(registry)
    exact = tiny.p.exact_hypergradient(tiny.lam)
    errors = []
    for value in values:
        _, state = _first_step(cls, tiny.p, tiny.lam, warm_start=False, **fixed,
                               **{name: value})
        errors.append(_rel(state.hypergrad, exact) if state.hypergrad is not None else math.inf)
    decreasing = all(b <= a * (1 + 1e-6) + 1e-12 for a, b in itertools.pairwise(errors))
    ok = decreasing and errors[-1] < tol
    shown = ", ".join(f"{name}={v}: {e:.1e}" for v, e in zip(values, errors, strict=True))
    return ok, (f"one step vs closed-form dF/dλ on coupled_quadratic{TINY}: {shown} "
                f"(need decreasing, last < {tol:g})")


def check_lambda_star(cls: type, registry: Any, budget: tuple[int, dict, float]) -> Verdict:
    steps, params, tol = budget
    problem = registry.problem("quadratic")(seed=0)
    algorithm = cls(**params)
    gen = torch.Generator().manual_seed(0)
    lam0 = problem.init_outer(gen)
    state = algorithm.init(problem, problem.init_inner(lam0, gen), lam0, gen)
    for _ in range(steps):
        state = algorithm.step(problem, state)
    err = _rel(state.lam, problem.lam_star)
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    return err < tol, (f"‖λ − λ*‖/‖λ*‖ = {err:.2e} after {steps} steps on quadratic "
                       f"({shown}; need < {tol:g})")


def check_stochastic(cls: type, registry: Any) -> Verdict:
    if "finite_sum_quadratic" not in registry.problems:
        return False, "finite_sum_quadratic is not registered"
    problem = registry.problem("finite_sum_quadratic")(seed=0)
    reason = cls().skip_reason(type(problem))
    if reason:
        return False, f"does not apply to finite_sum_quadratic: {reason}"
    algorithm = cls()
    gen = torch.Generator().manual_seed(0)
    lam0 = problem.init_outer(gen)
    state = algorithm.init(problem, problem.init_inner(lam0, gen), lam0, gen)
    start = problem.evaluate(state.theta, state.lam)["suboptimality"]
    for _ in range(STOCHASTIC_STEPS):
        state = algorithm.step(problem, state)
    end = problem.evaluate(state.theta, state.lam)["suboptimality"]
    ok = math.isfinite(end) and end < STOCHASTIC_GAIN * start
    return ok, (f"h(λ) − h* {start:.3g} → {end:.3g} in {STOCHASTIC_STEPS} steps on "
                f"finite_sum_quadratic (mini-batches, defaults; need < {STOCHASTIC_GAIN:g}×)")


# ------------------------------------------------------------------------ meta-learning
def _adapted(problem: Problem, lam: Tensor, steps: int) -> Tensor:
    """θ_T from θ₀(λ) by plain gradient steps of the problem's inner step size."""
    lr = problem.inner_step_size(lam)
    theta = problem.init_inner(lam, None).detach()
    for _ in range(steps):
        theta = theta.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(problem.inner_loss(theta, lam), theta)
        theta = (theta - lr * grad).detach()
    return theta


def _directional(value: Callable[[Tensor], float], lam: Tensor, u: Tensor,
                 eps: float = 1e-5) -> float:
    return (value(lam + eps * u) - value(lam - eps * u)) / (2 * eps)


def check_meta(cls: type, registry: Any, claim: str | None = None) -> Verdict:
    name = getattr(cls, "name", "")
    implicit = issubclass(cls, ImplicitDoubleLoop)  # iMAML: the proximal problem's IFT
    # ρ = 10, α = 0.02: the proximal problem strongly convex (H ⪰ 4.6 I) and solved to
    # ‖∇_θ g‖ ≈ 1e-14 in 400 steps, so that f(θ_400(λ)) has the implicit derivative
    overrides = {**META, "proximal": 10.0, "inner_lr": 0.02} if implicit else META
    problem = registry.problem("sinusoid")(seed=0, **overrides)
    params = {"inner_steps": 400, "cg_steps": 60} if implicit else {}
    lam = problem.init_outer(torch.Generator().manual_seed(0)).detach()
    algorithm, state = _first_step(cls, problem, lam, **params)
    direction = state.hypergrad
    if direction is None or not torch.isfinite(direction).all():
        return False, f"{name}: no finite direction exposed"
    steps = algorithm.config["inner_steps"]

    def value(x: Tensor) -> float:
        return float(problem.outer_loss(_adapted(problem, x, steps), x))

    gen = torch.Generator().manual_seed(3)
    if claim == "first_order_meta":
        slope = _directional(value, lam, direction / direction.norm().clamp_min(1e-300))
        return slope > 0, (f"slope of F_T (T={steps}) along the direction by central "
                           f"differences: {slope:+.3e} (need > 0: −direction descends)")
    worst = 0.0
    for _ in range(3):
        u = torch.randn(lam.shape, generator=gen, dtype=lam.dtype)
        u = u / u.norm()
        fd = _directional(value, lam, u)
        worst = max(worst, abs(float(direction @ u) - fd))
    rel = worst / float(direction.norm().clamp_min(1e-300))
    what = ("the implicit meta-gradient (FD of f after T = 400 proximal steps)" if implicit
            else f"central differences of F_T (T={steps})")
    tol = 1e-3 if implicit else 1e-5
    zero = float(direction.norm()) == 0.0
    return rel < tol and not zero, (f"directional derivatives vs {what} along 3 random "
                                    f"directions: worst |Δ|/‖h‖ = {rel:.1e} (need < {tol:g})")
