"""``blobench check``: validate a new entry before it reaches the leaderboard.

Algorithm checks: hyperparameters resolve and validate; on every problem with an exact
hypergradient (quadratic, ridge_ho, ...) the entry's estimates point the right way (mean
cosine with the exact dF/dλ ≥ 0.5 over 20 outer steps) and the true objective
F(λ) = f(θ*(λ), λ) decreases; a cell is deterministic (same seed, same trace); and a short
cell finishes with status ok (no NaN, no exception) on every problem it applies to.

Problem checks: the API contract (flat θ₀/λ₀, scalar losses), data determinism from the seed,
the primary metric in ``evaluate``, a monotone inner descent at ``inner_step_size``, and every
ground-truth method against an independent computation by autodiff (∇_θ g(θ*) = 0; the exact
hypergradient against the implicit-function formula with a dense Hessian at θ*).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from blobench import autodiff
from blobench.harness import plan, run_cell
from blobench.metrics import hypergradient_error
from blobench.registry import Registry

COSINE_MIN = 0.5
GROUND_TRUTH_PROBLEMS = ("quadratic", "ridge_ho", "logreg_ho")


@dataclass
class Finding:
    check: str
    passed: bool
    detail: str


def _true_objective(problem, lam: torch.Tensor) -> float:
    return float(problem.outer_loss(problem.inner_solution(lam), lam))


def check_algorithm(registry: Registry, name: str, steps: int = 20,
                    problems: list[str] | None = None) -> list[Finding]:
    """Findings for algorithm ``name``; ``problems`` limits the problems it is run on."""
    cls = registry.algorithm(name)
    chosen = sorted(registry.problems) if not problems else problems
    for pname in chosen:
        registry.problem(pname)  # unknown names are a UserError
    findings = []
    try:
        algorithm = cls()
        findings.append(Finding("hyperparameters", True, ", ".join(
            f"{k}={v!r}" for k, v in algorithm.config.items()) or "(none)"))
    except Exception as exc:
        return [Finding("hyperparameters", False, f"{type(exc).__name__}: {exc}")]
    for pname in GROUND_TRUTH_PROBLEMS:
        pcls = registry.problems.get(pname) if pname in chosen else None
        if pcls is None or algorithm.skip_reason(pcls):
            continue
        findings.append(_hypergradient_check(cls, pcls, steps))
    applicable = [p for p in chosen if not algorithm.skip_reason(registry.problems[p])]
    det_problem = next((p for p in GROUND_TRUTH_PROBLEMS if p in applicable),
                       applicable[0] if applicable else None)
    if det_problem:
        cells, _ = plan(registry, [det_problem], [name], [0], steps=4, eval_every=2)
        a, b = run_cell(registry, cells[0]), run_cell(registry, cells[0])
        keys = ("outer_loss", "lam_displacement", "theta_norm")
        same = [[r.get(k) for k in keys] for r in a["trace"]] == [
            [r.get(k) for k in keys] for r in b["trace"]]
        findings.append(Finding(f"determinism ({det_problem})", same,
                                "same seed, same trace" if same else "traces differ"))
    for pname in chosen:
        pcls = registry.problems[pname]
        reason = algorithm.skip_reason(pcls)
        if reason:
            findings.append(Finding(f"runs on {pname}", True, f"skipped: {reason}"))
            continue
        cells, _ = plan(registry, [pname], [name], [0], steps=3, eval_every=3)
        rec = run_cell(registry, cells[0])
        findings.append(Finding(f"runs on {pname}", rec["status"] == "ok",
                                rec["status"] + (f": {rec['message']}" if rec["message"] else "")))
    return findings


def _hypergradient_check(cls, pcls, steps: int) -> Finding:
    label = f"hypergradient vs exact ({pcls.name})"
    try:
        problem = pcls(seed=0)
        algorithm = cls()
        gen = torch.Generator().manual_seed(0)
        lam0 = problem.init_outer(gen)
        state = algorithm.init(problem, problem.init_inner(lam0, gen), lam0, gen)
        cosines, errors = [], []
        for _ in range(steps):
            state = algorithm.step(problem, state)
            if state.hypergrad is not None:
                at = state.hypergrad_at if state.hypergrad_at is not None else state.lam
                err = hypergradient_error(state.hypergrad, problem.exact_hypergradient(at))
                cosines.append(err["hypergrad_cosine"])
                errors.append(err["hypergrad_rel_error"])
        f0, f1 = _true_objective(problem, lam0), _true_objective(problem, state.lam)
    except Exception as exc:
        return Finding(label, False, f"{type(exc).__name__}: {exc}")
    if not cosines:
        return Finding(label, f1 < f0, f"no hypergradient exposed; F {f0:.4g} → {f1:.4g}")
    mean_cos = sum(cosines) / len(cosines)
    ok = mean_cos >= COSINE_MIN and f1 < f0 and math.isfinite(f1)
    return Finding(label, ok, f"mean cosine {mean_cos:+.3f} (need ≥ {COSINE_MIN}), "
                              f"last rel. error {errors[-1]:.2e}, F {f0:.4g} → {f1:.4g} "
                              f"in {steps} steps")


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
            g_star = autodiff.inner_grad(probe, probe.inner_solution(lam), lam).norm()
            g_0 = autodiff.inner_grad(probe, theta0, lam).norm()
            rel = float(g_star / (1 + g_0))
            return rel < 1e-6, f"‖∇θ g(θ*)‖ / (1 + ‖∇θ g(θ₀)‖) = {rel:.2e}"
        attempt("inner_solution is stationary", stationary)
    if probe.has("exact_hypergradient") and probe.has("inner_solution"):
        def hypergradient():
            _, lam0 = start(probe)
            lam = lam0 + 0.1 * torch.randn(lam0.shape, generator=torch.Generator().manual_seed(2),
                                           dtype=lam0.dtype).to(lam0.device)
            theta = probe.inner_solution(lam)
            ift, _ = autodiff.implicit_hypergradient(
                probe, theta, lam, lambda ops, b: autodiff.dense_solve(ops.dense_hessian(), b))
            err = hypergradient_error(probe.exact_hypergradient(lam), ift)["hypergrad_rel_error"]
            return err < 1e-6, f"relative error vs dense IFT by autodiff: {err:.2e}"
        attempt("exact_hypergradient vs autodiff", hypergradient)
    return findings


def format_report(title: str, findings: list[Finding]) -> str:
    width = max((len(f.check) for f in findings), default=10)
    lines = [title]
    lines += [f"  {'PASS' if f.passed else 'FAIL'}  {f.check:<{width}}  {f.detail}"
              for f in findings]
    failed = sum(not f.passed for f in findings)
    lines.append(f"{len(findings) - failed} passed, {failed} failed")
    return "\n".join(lines)
