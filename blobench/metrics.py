"""Metrics of a state (θ, λ), computed outside the timed region.

Accuracy: outer loss f(θ, λ) on the full batch, the problem's held-out metrics, inner
suboptimality ‖∇_θ g‖ and ‖θ − θ*(λ)‖ where θ*(λ) is known. Implicit bias (Vicol et al.
2022): ‖θ‖, ‖θ − θ₀‖, ‖λ − λ₀‖ and the distance of θ to the minimum-‖θ − θ₀‖ inner solution
where the problem gives it (at the λ θ was solved for: the one before the last outer update,
``state.hypergrad_at``, when the state has it), and of λ to the minimum-‖λ − λ₀‖ outer
solution where the problem exposes ``min_norm_outer(lam0)``. Inner value gap g(θ, λ) − g*
with g* = g(θ*(λ), λ) where an inner solution is known. Hypergradient quality where
``exact_hypergradient`` exists: cosine and relative error of the algorithm's last estimate,
against the exact dF/dλ at the λ it was estimated at.

Expensive (on their own schedule, ``expensive=True``): the cold-restart gap. At the current
λ the inner problem is re-solved from a fresh θ₀ = ``init_inner(λ, Generator(RESTART_SEED))``
— in closed form where the problem gives the solution a cold start converges to
(``min_norm_inner(λ, θ₀)``, else the unique ``inner_solution(λ)``), otherwise by gradient
descent with ``inner_step_size`` until ‖∇_θ g‖ falls below ``RESTART_TOL`` times its value at
θ₀ or ``RESTART_MAX_STEPS`` steps (``restart_steps`` records how many; 0 = closed form).
``cold_restart_gap = f(θ_restart, λ) − f(θ, λ)``: positive when the algorithm's own θ holds
outer-objective information that λ alone does not give back (Vicol et al. 2022, §5 "re-train";
their sign is the opposite). ``restart_gap_primary`` is the same difference in the problem's
primary held-out metric.
"""

from __future__ import annotations

import math

import torch

from blobench import autodiff
from blobench.algorithm import State
from blobench.problem import Problem


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x))


def hypergradient_error(estimate: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Cosine similarity and relative error ‖ĥ − h‖ / ‖h‖ of an estimate ĥ of h."""
    denom = _norm(exact)
    cos = float(torch.nn.functional.cosine_similarity(estimate.flatten(), exact.flatten(),
                                                      dim=0, eps=1e-30))
    rel = _norm(estimate - exact) / denom if denom > 0 else math.nan
    return {"hypergrad_cosine": cos, "hypergrad_rel_error": rel}


#: seed of the fresh θ₀ of the cold restart (the same for every algorithm, so gaps compare)
RESTART_SEED = 20221
RESTART_MAX_STEPS = 1000
RESTART_TOL = 1e-6
_CHUNK = 100


def cold_restart(problem: Problem, lam: torch.Tensor) -> tuple[torch.Tensor, int]:
    """θ from a fresh cold start at ``lam`` (see the module docstring) and the GD steps used."""
    theta0 = problem.init_inner(lam, torch.Generator().manual_seed(RESTART_SEED)).detach()
    if problem.has("min_norm_inner"):
        return problem.min_norm_inner(lam, theta0).detach(), 0
    if problem.has("inner_solution"):
        return problem.inner_solution(lam).detach(), 0
    theta, steps = theta0, 0
    start = _norm(autodiff.inner_grad(problem, theta, lam))
    lr = problem.inner_step_size(lam)
    while steps < RESTART_MAX_STEPS:
        theta = autodiff.gradient_descent(problem, theta, lam, _CHUNK, lr)
        steps += _CHUNK
        if not bool(torch.isfinite(theta).all()):
            break
        if _norm(autodiff.inner_grad(problem, theta, lam)) <= RESTART_TOL * max(start, 1e-30):
            break
    return theta, steps


def restart_metrics(problem: Problem, theta: torch.Tensor, lam: torch.Tensor,
                    own: dict[str, float]) -> dict[str, float]:
    """Cold-restart gap in outer loss and in the primary metric (``own``: metrics of θ)."""
    restart, steps = cold_restart(problem, lam)
    out = {"restart_steps": float(steps)}
    with torch.no_grad():
        out["restart_outer_loss"] = float(problem.outer_loss(restart, lam))
    out["cold_restart_gap"] = out["restart_outer_loss"] - own["outer_loss"]
    primary = problem.primary_metric
    if primary in own and primary != "outer_loss":
        value = float(problem.evaluate(restart, lam)[primary])
        out[f"restart_{primary}"] = value
        out["restart_gap_primary"] = value - own[primary]
    return out


def evaluate_state(problem: Problem, state: State, theta0: torch.Tensor, lam0: torch.Tensor,
                   expensive: bool = True) -> dict[str, float]:
    """All metrics of ``state``; oracle counters are left as they were.

    ``expensive`` turns on the metrics that cost a solve (on their own schedule).
    """
    saved = autodiff.oracle_counts.copy()
    try:
        theta, lam = state.theta.detach(), state.lam.detach()
        out: dict[str, float] = {}
        with torch.no_grad():
            out["outer_loss"] = float(problem.outer_loss(theta, lam))
        out["inner_grad_norm"] = _norm(autodiff.inner_grad(problem, theta, lam))
        out.update({k: float(v) for k, v in problem.evaluate(theta, lam).items()})
        out["theta_norm"] = _norm(theta)
        out["theta_displacement"] = _norm(theta - theta0)
        out["lam_displacement"] = _norm(lam - lam0)
        solution = None
        if problem.has("inner_solution"):
            solution = problem.inner_solution(lam).detach()
            out["inner_solution_dist"] = _norm(theta - solution)
        if problem.has("min_norm_inner"):
            # θ was solved for the λ before the last outer update (hypergrad_at), when known
            at = state.hypergrad_at.detach() if state.hypergrad_at is not None else lam
            min_norm = problem.min_norm_inner(at, theta0).detach()
            out["min_norm_dist"] = _norm(theta - min_norm)
            if solution is None:
                solution = problem.min_norm_inner(lam, theta0).detach()
        if solution is not None:  # g* is the same at every point of the solution set
            with torch.no_grad():
                out["inner_value_gap"] = float(problem.inner_loss(theta, lam)
                                               - problem.inner_loss(solution, lam))
        if hasattr(problem, "min_norm_outer"):
            out["lam_min_norm_dist"] = _norm(lam - problem.min_norm_outer(lam0).detach())
        if problem.has("exact_hypergradient") and state.hypergrad is not None:
            at = state.hypergrad_at if state.hypergrad_at is not None else lam
            out.update(hypergradient_error(state.hypergrad, problem.exact_hypergradient(at)))
        if expensive and not problem.inner_init_is_outer:
            # for MAML-type problems θ is already a re-adaptation from λ (evaluate() does it)
            out.update(restart_metrics(problem, theta, lam, out))
        return out
    finally:
        autodiff.oracle_counts.clear()
        autodiff.oracle_counts.update(saved)
