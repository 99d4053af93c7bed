"""``blobench check``: validate a new entry before it reaches the leaderboard.

Algorithm checks (:func:`check_algorithm`), by the kind of claim the entry makes
(:mod:`blobench.workflows.check_claims` has the kinds and how each is verified independently):
hyperparameters resolve and validate; on every check problem with an ``exact_hypergradient``
where the entry applies (the defaults :data:`CHECK_PROBLEMS`, or ``-p PROBLEM``) the estimates
point the right way (mean cosine with the exact dF/dλ ≥ 0.5 over 20 outer steps) and the
true objective decreases — for consistent and stochastic estimators; the claim of its kind
(convergence in its knob to the closed form, a biased direction equal to its formula, λ* within
a budget, convergence under mini-batches, a meta-gradient against finite differences) — an
entry whose defaults truncate a convergent knob declares ``check_cosine_at`` (the knob's
converged end): the cosine check runs there, and F must decrease at the defaults; a cell
is deterministic (same seed, same trace); a short cell finishes with status ok on every chosen
problem it applies to. An entry that applies to none of the check problems gets a FAIL naming
what it needs (a check that verified nothing is no pass); any exception becomes a FAIL line.

Problem checks (:func:`check_problem`): the API contract (flat θ₀/λ₀, scalar losses), data
determinism from the seed, the primary metric in ``evaluate``, a monotone inner descent at
``inner_step_size``, and every ground-truth method against an independent computation:
∇_θ g(θ*) = 0; ``exact_hypergradient`` against the implicit-function formula with a dense
Hessian at ``inner_solution`` and, in every case, against central differences of
F(λ) = f(θ̂(λ), λ) with θ̂ = ``inner_solution``, else ``min_norm_inner(λ, θ₀)`` (the solution
gradient descent from θ₀ selects), else a converged gradient-descent solve from θ₀.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from blobench import autodiff
from blobench.contracts.params import resolve
from blobench.contracts.problem import Problem
from blobench.execution.harness import plan, run_cell
from blobench.execution.metrics import hypergradient_error
from blobench.execution.registry import Registry
from blobench.execution.spec import expand
from blobench.workflows import check_claims

COSINE_MIN = 0.5
#: problems with an exact hypergradient that the cosine check runs on by default
GROUND_TRUTH_PROBLEMS = ("quadratic", "coupled_quadratic", "ridge_ho", "logreg_ho")
#: what ``blobench check NAME`` runs on without ``-p``: the ground-truth problems, the
#: finite-sum quadratic of the stochastic entries and a meta-learning problem
CHECK_PROBLEMS = (*GROUND_TRUTH_PROBLEMS, "finite_sum_quadratic", "sinusoid",
                  "sinusoid[proximal=2]")
#: a step's cosine counts only while ‖dF/dλ‖ ≥ this fraction of its value at λ₀: near the
#: optimum the exact hypergradient → 0 and any estimator's cosine is noise (issue 23.3)
INFORMATIVE = 0.2


@dataclass
class Finding:
    check: str
    passed: bool
    detail: str


def _true_objective(problem, lam: torch.Tensor) -> float:
    return float(problem.outer_loss(problem.inner_solution(lam), lam))


def _attempt(label: str, fn: Callable[[], tuple[bool, str]]) -> Finding:
    try:
        ok, detail = fn()
    except Exception as exc:  # a check that raises is a failed check, never a crash
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return Finding(label, bool(ok), detail)


def check_algorithm(registry: Registry, name: str, steps: int = 20,
                    problems: list[str] | None = None) -> list[Finding]:
    """Findings for algorithm ``name``; ``problems`` (names, optionally with bracket
    parameters) replaces the default check problems for the hypergradient and run checks."""
    cls = registry.algorithm(name)
    chosen = list(problems) if problems else [p for p in CHECK_PROBLEMS
                                              if p.split("[")[0] in registry.problems]
    for pname in chosen:
        registry.problem(pname.split("[")[0])  # unknown names are a UserError
    try:
        algorithm = cls()
        findings = [Finding("hyperparameters", True, ", ".join(
            f"{k}={v!r}" for k, v in algorithm.config.items()) or "(none)")]
    except Exception as exc:
        return [Finding("hyperparameters", False, f"{type(exc).__name__}: {exc}")]
    kind = check_claims.entry_kind(cls, name)
    reasons = {p: _skip_reason(registry, algorithm, p) for p in chosen}
    applicable = [p for p in chosen if reasons[p] is None]
    if not applicable:
        needs = "; ".join(f"{p}: {r}" for p, r in reasons.items())
        findings.append(Finding("applies to a check problem", False,
                                f"applies to none of {', '.join(chosen)} ({needs}); run "
                                f"`blobench check {name} -p PROBLEM` with a problem where it "
                                "applies"))
    if kind in ("consistent", "stochastic"):  # default: the ground-truth problems; -p: any
        cosine_on = applicable if problems else [p for p in applicable
                                                  if p in GROUND_TRUTH_PROBLEMS]
        for pname in cosine_on:
            pcls = registry.problem(pname.split("[")[0])
            if _has_exact(pcls):
                findings += _hypergradient_findings(registry, cls, pname, steps)
    findings += _claim_findings(registry, cls, name, kind)
    det_problem = next((p for p in applicable if p in GROUND_TRUTH_PROBLEMS),
                       applicable[0] if applicable else None)
    if det_problem:
        findings.append(_attempt(f"determinism ({det_problem})",
                                 lambda: _determinism(registry, name, det_problem)))
    for pname in chosen:
        if reasons[pname]:
            findings.append(Finding(f"runs on {pname}", True, f"skipped: {reasons[pname]}"))
            continue
        findings.append(_attempt(f"runs on {pname}", lambda p=pname: _runs(registry, name, p)))
    return findings


def _has_exact(pcls) -> bool:
    return pcls.exact_hypergradient is not Problem.exact_hypergradient


def _skip_reason(registry: Registry, algorithm, spec: str) -> str | None:
    """Why the entry does not run on this problem spec (with its bracket parameters)."""
    pname, grid = expand(spec)
    pcls = registry.problem(pname)
    params = resolve(pname, pcls.params, {**pcls.sizes["quick"], **grid[0]})
    return algorithm.skip_reason(pcls, params)


def _claim_findings(registry: Registry, cls, name: str, kind: str) -> list[Finding]:
    """The kind's own claim (see :mod:`blobench.workflows.check_claims`)."""
    claims = check_claims
    if kind == "approximation":
        claim = cls.approximation
        out = [_attempt(f"approximation: {claim}",
                        lambda: claims.check_approximation(cls, registry, claim))]
        if claim in claims.DESCENT_CLAIMED:
            out.append(_attempt("F decreases (its paper's claim)",
                                lambda: claims.check_descent(cls, registry)))
        return out
    if kind == "lambda_star":
        budget = getattr(cls, "check_budget", None) or claims.BUDGETS[name]
        return [_attempt("reaches λ* within its budget",
                         lambda: claims.check_lambda_star(cls, registry, budget))]
    if kind == "meta":
        return [_attempt("meta-gradient vs finite differences",
                         lambda: claims.check_meta(cls, registry))]
    out = []
    knob = getattr(cls, "check_knob", None) or claims.KNOBS.get(name)
    if knob:
        out.append(_attempt(f"converges in {knob[0]} to the closed form",
                            lambda: claims.check_knob(cls, registry, knob)))
    if kind == "stochastic":
        out.append(_attempt("converges under mini-batches",
                            lambda: claims.check_stochastic(cls, registry)))
    return out


def _determinism(registry: Registry, name: str, problem: str) -> tuple[bool, str]:
    cells, _ = plan(registry, [problem], [name], [0], steps=4, eval_every=2)
    a, b = run_cell(registry, cells[0]), run_cell(registry, cells[0])
    keys = ("outer_loss", "lam_displacement", "theta_norm")
    same = [[r.get(k) for k in keys] for r in a["trace"]] == [
        [r.get(k) for k in keys] for r in b["trace"]]
    return same, "same seed, same trace" if same else "traces differ"


def _runs(registry: Registry, name: str, problem: str) -> tuple[bool, str]:
    cells, skipped = plan(registry, [problem], [name], [0], steps=3, eval_every=3)
    if not cells:
        return True, f"skipped: {skipped[0][2] if skipped else 'no cell planned'}"
    rec = run_cell(registry, cells[0])
    return rec["status"] in ("ok", "not_applicable"), rec["status"] + (
        f": {rec['message']}" if rec["message"] else "")


def _hypergradient_findings(registry: Registry, cls, spec: str, steps: int) -> list[Finding]:
    """The cosine check at the defaults, or — for an entry whose defaults truncate a knob
    that converges (class attribute ``check_cosine_at``: the parameters at the knob's
    converged end, e.g. nystrom's full rank, pzobo's many directions) — the cosine check at
    those parameters plus F decreasing at the defaults (the run itself, same steps)."""
    at = getattr(cls, "check_cosine_at", None)
    if not at:
        return [_hypergradient_check(registry, cls, spec, steps)]
    cosine = _hypergradient_check(registry, cls, spec, steps, at)
    defaults = _hypergradient_check(registry, cls, spec, steps, {}, cosine_min=-math.inf)
    defaults.check = f"F decreases at defaults ({spec})"
    return [cosine, defaults]


def _hypergradient_check(registry: Registry, cls, spec: str, steps: int,
                         params: dict | None = None, cosine_min: float = COSINE_MIN
                         ) -> Finding:
    shown = ", ".join(f"{k}={v}" for k, v in (params or {}).items())
    label = f"hypergradient vs exact ({spec}{', ' + shown if shown else ''})"
    pname, grid = expand(spec)
    pcls = registry.problem(pname)
    try:
        problem = pcls(seed=0, **grid[0])
        algorithm = cls(**(params or {}))
        gen = torch.Generator().manual_seed(0)
        lam0 = problem.init_outer(gen)
        state = algorithm.init(problem, problem.init_inner(lam0, gen), lam0, gen)
        cosines, errors = [], []
        scale = float(problem.exact_hypergradient(lam0).norm())
        for _ in range(steps):
            state = algorithm.step(problem, state)
            if state.hypergrad is not None:
                at = state.hypergrad_at if state.hypergrad_at is not None else state.lam
                exact = problem.exact_hypergradient(at)
                if cosines and float(exact.norm()) < INFORMATIVE * scale:
                    continue
                err = hypergradient_error(state.hypergrad, exact)
                cosines.append(err["hypergrad_cosine"])
                errors.append(err["hypergrad_rel_error"])
        value = _objective(problem)
        f0, f1 = value(lam0), value(state.lam)
    except Exception as exc:
        return Finding(label, False, f"{type(exc).__name__}: {exc}")
    if not cosines:
        return Finding(label, f1 < f0, f"no hypergradient exposed; F {f0:.4g} → {f1:.4g}")
    mean_cos = sum(cosines) / len(cosines)
    ok = mean_cos >= cosine_min and f1 < f0 and math.isfinite(f1)
    return Finding(label, ok, f"mean cosine {mean_cos:+.3f} (need ≥ {cosine_min}) over the "
                              f"{len(cosines)} steps with ‖dF/dλ‖ ≥ {INFORMATIVE:g}×its start, "
                              f"last rel. error {errors[-1]:.2e}, F {f0:.4g} → {f1:.4g} "
                              f"in {steps} steps")


def _objective(problem) -> Callable[[torch.Tensor], float]:
    """F(λ) = f(θ̂(λ), λ) with θ̂ the problem's ground-truth inner solution (see
    :func:`check_problem`), as a function of λ."""
    solve = _inner_solver(problem)
    return lambda lam: float(problem.outer_loss(solve(lam), lam))


def _inner_solver(problem, steps: int = 20000, tol: float = 1e-12
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """θ̂(λ): ``inner_solution``, else ``min_norm_inner(λ, θ₀)``, else gradient descent from θ₀
    at ``inner_step_size`` until ‖∇_θ g‖ ≤ tol·(1 + ‖∇_θ g(θ₀)‖) (at most ``steps``)."""
    if problem.has("inner_solution"):
        return problem.inner_solution
    theta0 = problem.init_inner(problem.init_outer(torch.Generator().manual_seed(0)),
                                torch.Generator().manual_seed(0))
    if problem.has("min_norm_inner"):
        return lambda lam: problem.min_norm_inner(lam, theta0)

    def descend(lam: torch.Tensor) -> torch.Tensor:
        theta, lr = theta0.detach(), problem.inner_step_size(lam)
        stop = tol * (1 + float(autodiff.inner_grad(problem, theta, lam).norm()))
        for _ in range(steps):
            grad = autodiff.inner_grad(problem, theta, lam)
            if float(grad.norm()) <= stop:
                break
            theta = theta - lr * grad
        return theta
    return descend


def check_problem(registry: Registry, name: str) -> list[Finding]:
    cls = registry.problem(name)
    findings = []

    def attempt(label: str, fn) -> None:
        try:
            ok, detail = fn()
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        findings.append(Finding(label, ok, detail))

    def make(seed: int = 0):
        return cls(size="quick", seed=seed)

    def start(problem):
        gen = torch.Generator().manual_seed(0)
        lam0 = problem.init_outer(gen)
        return problem.init_inner(lam0, gen), lam0

    def api():
        p = make()
        theta0, lam0 = start(p)
        p.check_api(theta0, lam0)
        metrics = p.evaluate(theta0, lam0)
        if p.primary_metric not in metrics:
            return False, f"evaluate() lacks the primary metric {p.primary_metric!r}"
        return True, f"dim θ = {p.dim_inner}, dim λ = {p.dim_outer}, metrics {sorted(metrics)}"

    def determinism():
        values = []
        for seed in (0, 0, 1):
            p = make(seed)
            theta0, lam0 = start(p)
            values.append((float(p.inner_loss(theta0, lam0)), float(p.outer_loss(theta0, lam0)),
                           p.evaluate(theta0, lam0)[p.primary_metric]))
        return values[0] == values[1], (f"seed 0 twice: {values[0]} vs {values[1]}; "
                                        f"seed 1: {values[2]}")

    def descent():
        p = make()
        theta, lam = start(p)
        lr = p.inner_step_size(lam)
        losses = []
        for _ in range(50):
            losses.append(float(p.inner_loss(theta, lam)))
            theta = theta - lr * autodiff.inner_grad(p, theta, lam)
        worst = max(b - a for a, b in itertools.pairwise(losses))
        tol = 1e-9 * (1 + abs(losses[0]))
        return worst <= tol, f"g {losses[0]:.4g} → {losses[-1]:.4g} at step size {lr:.3g}"

    attempt("API (shapes, scalar losses, primary metric)", api)
    attempt("deterministic data from the seed", determinism)
    attempt("inner descent at inner_step_size", descent)
    probe = make()
    if probe.has("inner_solution"):
        def stationary():
            theta0, lam0 = start(probe)
            lam = lam0 + 0.1 * torch.randn(lam0.shape, generator=torch.Generator().manual_seed(1),
                                           dtype=lam0.dtype).to(lam0.device)
            if autodiff.has_inner_prox(probe):  # min g + r: the proximal-gradient mapping
                eta = probe.inner_step_size(lam)

                def mapping(theta):
                    step = theta - eta * autodiff.inner_grad(probe, theta, lam)
                    return (theta - probe.inner_prox(step, lam, eta)) / eta
                name = "‖(θ − prox_ηr(θ − η∇θ g))/η‖"
            else:
                def mapping(theta):
                    return autodiff.inner_grad(probe, theta, lam)
                name = "‖∇θ g‖"
            g_star = mapping(probe.inner_solution(lam)).norm()
            g_0 = mapping(theta0).norm()
            rel = float(g_star / (1 + g_0))
            return rel < 1e-6, f"{name} at θ* / (1 + at θ₀) = {rel:.2e}"
        attempt("inner_solution is stationary", stationary)
    if probe.has("exact_hypergradient") and probe.has("inner_solution"):
        def hypergradient():
            _, lam0 = start(probe)
            lam = lam0 + 0.1 * torch.randn(lam0.shape, generator=torch.Generator().manual_seed(2),
                                           dtype=lam0.dtype).to(lam0.device)
            theta = probe.inner_solution(lam)
            prox_step = (probe.inner_step_size(lam) if autodiff.prox_separable(probe)
                         else None)  # the proximal fixed point's IFT (autodiff/implicit.py)
            ift, _ = autodiff.implicit_hypergradient(
                probe, theta, lam, lambda ops, b: autodiff.dense_solve(ops.dense_hessian(), b),
                prox_step=prox_step)
            err = hypergradient_error(probe.exact_hypergradient(lam), ift)["hypergrad_rel_error"]
            return err < 1e-6, f"relative error vs dense IFT by autodiff: {err:.2e}"
        attempt("exact_hypergradient vs autodiff", hypergradient)
    if probe.has("exact_hypergradient"):
        attempt("exact_hypergradient vs finite differences of F",
                lambda: _finite_difference_check(probe, start(probe)[1]))
    return findings


def _finite_difference_check(problem, lam0: torch.Tensor) -> tuple[bool, str]:
    """⟨dF/dλ, u⟩ against central differences of F(λ) = f(θ̂(λ), λ) along 3 random unit
    directions, θ̂ as in :func:`_inner_solver` (which one is said in the detail)."""
    gen = torch.Generator().manual_seed(2)
    lam = lam0 + 0.1 * torch.randn(lam0.shape, generator=gen, dtype=lam0.dtype).to(lam0.device)
    value = _objective(problem)
    exact = problem.exact_hypergradient(lam)
    eps = 1e-4 * (1 + float(lam.norm()))
    worst = 0.0
    for _ in range(3):
        u = torch.randn(lam.shape, generator=gen, dtype=lam.dtype).to(lam.device)
        u = u / u.norm()
        fd = (value(lam + eps * u) - value(lam - eps * u)) / (2 * eps)
        worst = max(worst, abs(float(exact @ u) - fd))
    rel = worst / max(float(exact.norm()), 1e-300)
    solver = ("inner_solution" if problem.has("inner_solution") else "min_norm_inner(λ, θ₀)"
              if problem.has("min_norm_inner") else "gradient descent from θ₀ to ‖∇θ g‖ ≤ 1e-12")
    return rel < 1e-4, (f"worst |⟨dF/dλ, u⟩ − FD| / ‖dF/dλ‖ = {rel:.1e} over 3 directions "
                        f"(need < 1e-4), θ̂ = {solver}")


def format_report(title: str, findings: list[Finding]) -> str:
    width = max((len(f.check) for f in findings), default=10)
    lines = [title]
    lines += [f"  {'PASS' if f.passed else 'FAIL'}  {f.check:<{width}}  {f.detail}"
              for f in findings]
    failed = sum(not f.passed for f in findings)
    lines.append(f"{len(findings) - failed} passed, {failed} failed")
    return "\n".join(lines)
