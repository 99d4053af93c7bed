"""Metrics of a state (θ, λ), computed outside the timed region.

Accuracy: outer loss f(θ, λ) on the full batch, the problem's held-out metrics, inner
suboptimality ‖∇_θ g‖ and ‖θ − θ*(λ)‖ where θ*(λ) is known. Implicit bias (Vicol et al.
2022): ‖θ‖, ‖θ − θ₀‖, ‖λ − λ₀‖ and the distance of θ to the minimum-‖θ − θ₀‖ inner solution
where the problem gives it (at the λ θ was solved for: the one before the last outer update,
``state.hypergrad_at``, when the state has it), and of λ to the minimum-‖λ − λ₀‖ outer
solution where the problem exposes ``min_norm_outer(lam0)``. Inner value gap g(θ, λ) − g*
with g* = g(θ*(λ), λ) where an inner solution is known. Hypergradient quality where
``exact_hypergradient`` exists: cosine and relative error of the algorithm's last estimate,
against the exact dF/dλ at the λ it was estimated at (along the trajectory; near a converged
λ the exact hypergradient is ≈ 0 and these say little), and — the informative figures, once
per cell — at λ₀ and at reference λ's shared by every algorithm on the problem instance
(:func:`reference_lambdas`, :func:`probe_hypergradients`: ``hypergrad_*_lam0``,
``hypergrad_*_ref``).

**The bilevel answer, re-trained** (issue 17): the problem's answer is λ; its value is
F(λ) = f(θ*(λ), λ) and the deployed model is θ*(λ). At every evaluation θ*(λ) is obtained as
a cold start converges to it from the cell's θ₀ (:func:`blobench.bases.algorithm.cell_theta0`, the
one θ₀ per cell): in closed form where the problem gives it (``min_norm_inner(λ, θ₀)``, else
the unique ``inner_solution(λ)``), otherwise by gradient descent with ``inner_step_size``
until ‖∇_θ g‖ falls below ``RESTART_TOL`` times its value at θ₀ or ``RESTART_MAX_STEPS``
steps (``restart_steps`` records how many; 0 = closed form) — or, where the problem sets
``retrain_steps`` (a non-convex inner problem: a network), exactly that many steps, a
fixed-budget training from θ₀ as Vicol et al. 2022's "re-train" (Table 3). Where the
problem declares a unique lower level (``inner_unique``) the descent starts from the
previous evaluation's re-solved θ (:class:`Retrainer`): with a unique minimizer and the same
stopping test the answer is the same, at a fraction of the steps; without closed form or
uniqueness the re-solve runs only on the expensive schedule (``expensive=True``). The
re-trained metrics are
``restart_outer_loss`` = F(λ) and ``restart_<key>`` for every key of ``evaluate`` (θ*(λ)'s
held-out metrics); the leaderboard ranks on them. ``cold_restart_gap = F(λ) − f(θ, λ)``:
positive when the algorithm's own θ holds outer-objective information that λ alone does not
give back (Vicol et al. 2022, §5 "re-train"; their sign is the opposite);
``restart_gap_primary`` is the same difference in the primary held-out metric. Problems whose
own θ is the deployed model (``own_theta_deployed``, MAML-type: θ is re-adapted from λ by
``evaluate``) have no re-trained metrics.

**Cost** (issue 15: evaluation ≤ 25 % of solver time). Nothing is computed twice: within a
cell the ground truth ``inner_solution(λ)`` / ``exact_hypergradient(λ)`` is memoized by λ
(:class:`GroundTruth`, active only outside the timed region, so that an algorithm calling the
ground truth pays for it) — the distance to θ*, the re-trained model, the exact hypergradient
(which itself solves for θ*) and the probe at the reference λ's then share one solve per λ,
with bit-identical values. The reference λ's and ∇F there are a function of the problem
instance only: they are computed once and stored (:func:`shared_references`, a file under
``$XDG_CACHE_HOME/blobench/references`` keyed by the instance's configuration, seed, λ₀ and
code version), so every other algorithm's cell on that instance reads them back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from blobench import autodiff
from blobench.bases.algorithm import State, cell_theta0
from blobench.contracts.problem import Problem
from blobench.toolkit.glm import LambdaMemo


def _norm(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x))


def hypergradient_error(estimate: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Cosine similarity and relative error ‖ĥ − h‖ / ‖h‖ of an estimate ĥ of h."""
    denom = _norm(exact)
    cos = float(torch.nn.functional.cosine_similarity(estimate.flatten(), exact.flatten(),
                                                      dim=0, eps=1e-30))
    rel = _norm(estimate - exact) / denom if denom > 0 else math.nan
    return {"hypergrad_cosine": cos, "hypergrad_rel_error": rel}


RESTART_MAX_STEPS = 1000
RESTART_TOL = 1e-6
_CHUNK = 10  # steps between two convergence tests


def closed_form_inner(problem: Problem) -> bool:
    """Whether θ*(λ) of a cold start has a closed form here (no descent needed)."""
    return problem.has("min_norm_inner") or problem.has("inner_solution")


def cold_restart(problem: Problem, lam: torch.Tensor, start: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, int]:
    """θ*(λ) as a cold start from the cell's θ₀ converges to it (module docstring), and the
    gradient steps used. ``start``: where the descent begins instead of θ₀ (only meaningful
    for a unique lower level; the stopping test still refers to ‖∇g(θ₀)‖)."""
    theta0 = cell_theta0(problem, lam).detach()
    if problem.formulation and problem.has("inner_solution"):
        # a non-singleton lower level whose problem names its answer (optimistic /
        # pessimistic): F(λ) is f at that point of S(λ), not at the solver's selection
        return problem.inner_solution(lam).detach(), 0
    if problem.has("min_norm_inner"):
        return problem.min_norm_inner(lam, theta0).detach(), 0
    if problem.has("inner_solution"):
        return problem.inner_solution(lam).detach(), 0
    if problem.retrain_steps:  # fixed budget (Problem.retrain_steps), from θ₀ in any case
        steps = problem.retrain_steps
        return autodiff.gradient_descent(problem, theta0, lam, steps,
                                         problem.inner_step_size(lam)), steps
    scale = _norm(autodiff.inner_grad(problem, theta0, lam))
    theta, steps = (theta0 if start is None else start.detach()), 0
    lr = problem.inner_step_size(lam)
    while steps < RESTART_MAX_STEPS:
        if _norm(autodiff.inner_grad(problem, theta, lam)) <= RESTART_TOL * max(scale, 1e-30):
            break
        theta = autodiff.gradient_descent(problem, theta, lam, _CHUNK, lr)
        steps += _CHUNK
        if not bool(torch.isfinite(theta).all()):
            break
    return theta, steps


class Retrainer:
    """θ*(λ) at successive evaluations of one cell, warm-started from the previous re-solve
    where the lower level is unique (``problem.inner_unique``); see the module docstring."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.previous: torch.Tensor | None = None
        self.cheap = closed_form_inner(problem) or bool(problem.inner_unique)

    def __call__(self, lam: torch.Tensor) -> tuple[torch.Tensor, int]:
        start = self.previous if self.problem.inner_unique else None
        theta, steps = cold_restart(self.problem, lam, start)
        if bool(torch.isfinite(theta).all()):
            self.previous = theta
        return theta, steps


#: iterates of exact gradient descent on F from λ₀ used as reference points (0 = λ₀)
REFERENCE_STEPS = (0, 5, 20)
#: a reference point is kept only where ‖∇F‖ ≥ this fraction of ‖∇F(λ₀)‖ (informative)
REFERENCE_MIN_NORM = 0.1
#: offset of the seed of the probe's generator (stochastic estimators draw from it)
PROBE_SEED_OFFSET = 7477


def reference_points(problem: Problem, lam0: torch.Tensor
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The reference λ's of hypergradient quality on this problem instance (issue 23), each
    with the exact ∇F there: the iterates ``REFERENCE_STEPS`` of exact gradient descent
    λ ← λ − η ∇F(λ) from λ₀ with the problem's ``outer_step_size`` η — points on a typical
    path, the same for every algorithm — keeping λ₀ and those where
    ‖∇F(λ)‖ ≥ ``REFERENCE_MIN_NORM`` ‖∇F(λ₀)‖, where the direction of ∇F is defined well
    enough for a cosine to mean something. Needs ``exact_hypergradient``."""
    lam = lam0.detach().clone()
    eta = problem.outer_step_size()
    refs, first = [], None
    for k in range(max(REFERENCE_STEPS) + 1):
        grad = problem.exact_hypergradient(lam).detach()
        norm = _norm(grad)
        if not math.isfinite(norm):
            break
        first = norm if first is None else first
        if k in REFERENCE_STEPS and (k == 0 or norm >= REFERENCE_MIN_NORM * first):
            refs.append((lam.clone(), grad.clone()))
        lam = lam - eta * grad
    return refs


def reference_lambdas(problem: Problem, lam0: torch.Tensor) -> list[torch.Tensor]:
    """The λ's of :func:`reference_points`."""
    return [lam for lam, _ in reference_points(problem, lam0)]


def cache_dir() -> Path:
    """Where computed-once ground truth is stored (``$XDG_CACHE_HOME/blobench``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blobench"


def shared_references(problem: Problem, lam0: torch.Tensor, instance: dict[str, Any]
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`reference_points`, computed once per problem instance and read back by every
    later cell (module docstring). ``instance``: what determines the instance (problem name,
    size, parameters, seed, device, code version); λ₀'s bytes and the reference schedule are
    added to the key. Written atomically (a temporary file, then a rename); an unreadable file
    is recomputed."""
    blob = json.dumps({**instance, "lam0": lam0.detach().cpu().numpy().tobytes().hex(),
                       "steps": REFERENCE_STEPS, "min_norm": REFERENCE_MIN_NORM},
                      sort_keys=True, default=str)
    path = cache_dir() / "references" / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.pt"
    refs = _stored_references(path, lam0.device)
    if refs is not None:
        return refs
    with _exclusive(path):  # concurrent cells of a new instance: the first computes, the rest read
        refs = _stored_references(path, lam0.device)
        if refs is not None:
            return refs
        refs = reference_points(problem, lam0)
        try:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save([(lam.cpu(), grad.cpu()) for lam, grad in refs], tmp)
            os.replace(tmp, path)
        except OSError:  # a read-only cache costs only the recomputation
            pass
    return refs


def _stored_references(path: Path, device: torch.device
                       ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    try:
        stored = torch.load(path, map_location=device, weights_only=True)
        return [(lam, grad) for lam, grad in stored]
    except Exception:  # absent or unreadable: compute (and store) it
        return None


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an advisory lock (POSIX ``flock``) on ``<path>.lock`` so that cells starting together
    on a new instance compute its reference points once: the others wait and read the file.
    The operating system releases it when its holder dies (a killed cell cannot wedge the
    rest). Without ``fcntl`` (Windows) or a writable cache: no lock, each cell computes."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a")  # closed in the finally below
    except (ImportError, OSError):
        handle = None
    if handle is None:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # closing the descriptor releases the lock


class GroundTruth:
    """The problem's ``inner_solution`` / ``exact_hypergradient`` memoized by λ for one cell
    (the last ``size`` λ's, :class:`blobench.toolkit.glm.LambdaMemo`; exact, the same values bit for
    bit). Inside :meth:`active` the problem instance's methods are the memoized ones — its own
    calls too (an exact hypergradient that solves for θ* finds it) — and outside it the
    problem is untouched, so the timed solver never sees a memoized value."""

    METHODS = ("inner_solution", "exact_hypergradient")

    def __init__(self, problem: Problem, size: int = 16) -> None:
        self.problem = problem
        self.memos = {name: LambdaMemo(self._uncached(getattr(problem, name)), size)
                      for name in self.METHODS if problem.has(name)}

    @staticmethod
    def _uncached(method: Any) -> Any:
        return lambda lam, _latest: method(lam).detach()

    def add(self, name: str, lam: torch.Tensor, value: torch.Tensor) -> None:
        """Store a value known from elsewhere (:func:`shared_references`)."""
        memo = self.memos.get(name)
        if memo is not None:
            memo.entries = [*memo.entries[-(memo.size - 1):],
                            (lam.detach().clone(), value.detach().clone())]

    @contextmanager
    def active(self) -> Iterator[None]:
        for name, memo in self.memos.items():
            setattr(self.problem, name, lambda lam, memo=memo: memo(lam).clone())
        try:
            yield
        finally:
            for name in self.memos:
                self.problem.__dict__.pop(name, None)


def probe_hypergradients(algorithm: Any, problem: Problem, refs: list[torch.Tensor]
                         ) -> dict[str, float]:
    """The algorithm's hypergradient at each reference λ against the exact one: a fresh
    ``init`` at (θ₀(λ), λ) — the cell's θ₀ — and one ``step``, whose estimate (made at λ) is
    compared. ``hypergrad_cosine_lam0`` / ``hypergrad_rel_error_lam0`` at λ₀,
    ``hypergrad_cosine_ref`` / ``hypergrad_rel_error_ref`` the means over the reference
    points (λ₀ included). Oracle counters are left as they were; an estimator that fails or
    gives no estimate contributes nothing."""
    saved = autodiff.oracle_counts.copy()
    rows = []
    try:
        for lam in refs:
            gen = torch.Generator().manual_seed(problem.seed + PROBE_SEED_OFFSET)
            try:
                state = algorithm.init(problem, cell_theta0(problem, lam).detach(),
                                       lam.clone(), gen)
                state = algorithm.step(problem, state)
            except Exception:
                rows.append(None)
                continue
            if state.hypergrad is None:
                rows.append(None)
                continue
            at = state.hypergrad_at if state.hypergrad_at is not None else lam
            rows.append(hypergradient_error(state.hypergrad.detach(),
                                            problem.exact_hypergradient(at.detach())))
    finally:
        autodiff.oracle_counts.clear()
        autodiff.oracle_counts.update(saved)
    out: dict[str, float] = {}
    if rows and rows[0] is not None:
        out.update({f"{k}_lam0": v for k, v in rows[0].items()})
    kept = [r for r in rows if r is not None and all(map(math.isfinite, r.values()))]
    if kept:
        for key in kept[0]:
            out[f"{key}_ref"] = sum(r[key] for r in kept) / len(kept)
        out["hypergrad_ref_points"] = float(len(kept))
    return out


def restart_metrics(problem: Problem, theta: torch.Tensor, lam: torch.Tensor,
                    own: dict[str, float], retrainer: Retrainer | None = None
                    ) -> dict[str, float]:
    """Re-trained metrics of θ*(λ) and the cold-restart gaps (``own``: metrics of θ)."""
    restart, steps = (retrainer or Retrainer(problem))(lam)
    out = {"restart_steps": float(steps)}
    with torch.no_grad():
        out["restart_outer_loss"] = float(problem.outer_loss(restart, lam))
    out["cold_restart_gap"] = out["restart_outer_loss"] - own["outer_loss"]
    held_out = {k: float(v) for k, v in problem.evaluate(restart, lam).items()}
    out.update({f"restart_{k}": v for k, v in held_out.items()})
    primary = problem.primary_metric
    if primary in own and primary != "outer_loss":
        out["restart_gap_primary"] = held_out[primary] - own[primary]
    return out


def evaluate_state(problem: Problem, state: State, theta0: torch.Tensor, lam0: torch.Tensor,
                   expensive: bool = True, retrainer: Retrainer | None = None
                   ) -> dict[str, float]:
    """All metrics of ``state``; oracle counters are left as they were.

    The re-trained metrics are computed when they are cheap (closed form, or a warm-started
    re-solve of a unique lower level: ``retrainer`` carries it between evaluations) or when
    ``expensive`` (their schedule otherwise). ``theta0`` is the cell's θ₀ at λ₀; the min-norm
    distances use the cell's θ₀ at the λ they refer to (:func:`cell_theta0`).
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
            min_norm = problem.min_norm_inner(at, cell_theta0(problem, at).detach()).detach()
            out["min_norm_dist"] = _norm(theta - min_norm)
            if solution is None:
                solution = problem.min_norm_inner(lam, cell_theta0(problem, lam).detach())
                solution = solution.detach()
        if solution is not None:  # g* is the same at every point of the solution set
            with torch.no_grad():
                out["inner_value_gap"] = float(problem.inner_loss(theta, lam)
                                               - problem.inner_loss(solution, lam))
        if hasattr(problem, "min_norm_outer"):
            out["lam_min_norm_dist"] = _norm(lam - problem.min_norm_outer(lam0).detach())
        if problem.has("exact_hypergradient") and state.hypergrad is not None:
            at = state.hypergrad_at if state.hypergrad_at is not None else lam
            out.update(hypergradient_error(state.hypergrad, problem.exact_hypergradient(at)))
        retrainer = retrainer or Retrainer(problem)
        if not problem.own_theta_deployed and (expensive or retrainer.cheap):
            # for MAML-type problems θ is already a re-adaptation from λ (evaluate() does it)
            out.update(restart_metrics(problem, theta, lam, out, retrainer))
        return out
    finally:
        autodiff.oracle_counts.clear()
        autodiff.oracle_counts.update(saved)
