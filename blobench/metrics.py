"""Metrics of a state (θ, λ), computed outside the timed region.

Accuracy: outer loss f(θ, λ) on the full batch, the problem's held-out metrics, inner
suboptimality ‖∇_θ g‖ and ‖θ − θ*(λ)‖ where θ*(λ) is known. Implicit bias (Vicol et al.
2022): ‖θ‖, ‖θ − θ₀‖, ‖λ − λ₀‖ and the distance of θ to the minimum-‖θ − θ₀‖ inner solution
where the problem gives it. Hypergradient quality where ``exact_hypergradient`` exists:
cosine and relative error of the algorithm's last estimate, against the exact dF/dλ at the
λ it was estimated at.
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
        if problem.has("inner_solution"):
            out["inner_solution_dist"] = _norm(theta - problem.inner_solution(lam))
        if problem.has("min_norm_inner"):
            out["min_norm_dist"] = _norm(theta - problem.min_norm_inner(lam, theta0))
        if problem.has("exact_hypergradient") and state.hypergrad is not None:
            at = state.hypergrad_at if state.hypergrad_at is not None else lam
            out.update(hypergradient_error(state.hypergrad, problem.exact_hypergradient(at)))
        return out
    finally:
        autodiff.oracle_counts.clear()
        autodiff.oracle_counts.update(saved)
