"""Black-box hyperparameter search: F(λ) = f(θ(λ), λ) treated as a function of λ only.

The baseline an informed user tries first (random search, Bergstra & Bengio 2012; TPE,
Bergstra et al. 2011): every outer step is one *trial* — propose λ, solve the inner problem to
a tolerance from a fixed cold start, evaluate the full outer objective there, keep the best.
No hypergradient is computed (``state.hypergrad`` stays None); ``state.lam`` / ``state.theta``
are the best trial so far, so the leaderboard scores what the search would return;
``state.extra["history"]`` lists every trial's (λ, F(λ)).
Oracle calls of the inner solves and outer evaluations are counted like any entry's, so the
same budget (outer steps = trials, or seconds, or oracle calls) compares them with the
gradient-based methods.

Search space: the box λ₀ ± R per coordinate (``radius``); λ is unconstrained (often a log
parameter), so the box is uniform in λ. The trial at step 0 is λ₀ itself. Low-dimensional λ
only: an entry refuses problems with dim λ > ``max_dim`` (from a quick instance in
:meth:`applies_to`; the built instance in ``init``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from blobench import autodiff
from blobench.bases.algorithm import Algorithm, State
from blobench.bases.quick_facts import quick_facts
from blobench.contracts.errors import NotApplicable
from blobench.contracts.params import POSITIVE, Param
from blobench.contracts.problem import Problem

Tensor = torch.Tensor

BLACKBOX_PARAMS: dict[str, Param] = {
    "radius": Param(float, 3.0, "R: the search box is λ₀ ± R per coordinate", **POSITIVE),
    "max_dim": Param(int, 10, "refuse problems with more outer variables than this", low=1),
    "inner_tol": Param(float, 1e-6, "inner solve stops at ‖∇_θ g‖ ≤ tol · ‖∇_θ g(θ₀)‖",
                       **POSITIVE),
    "inner_max_steps": Param(int, 2000, "cap on the gradient steps of one inner solve", low=1),
}


def solve_to_tolerance(problem: Problem, theta: Tensor, lam: Tensor, tol: float,
                       max_steps: int) -> Tensor:
    """Gradient descent on g(·, λ) at the problem's step size until ‖∇_θ g‖ ≤ tol ‖∇_θ g(θ₀)‖
    (relative), or ``max_steps``."""
    lr = problem.inner_step_size(lam)
    grad = autodiff.inner_grad(problem, theta, lam)
    stop = tol * float(torch.linalg.vector_norm(grad))
    for _ in range(max_steps):
        if float(torch.linalg.vector_norm(grad)) <= stop:
            break
        theta = theta - lr * grad
        grad = autodiff.inner_grad(problem, theta, lam)
    return theta


def _quick_dim_outer(problem: type[Problem] | Problem) -> int | None:
    """dim λ of the problem (an instance's own; a class's quick instance's, remembered across
    processes: :func:`blobench.bases.quick_facts.quick_facts`); None if unknown."""
    if not isinstance(problem, type):
        return int(problem.dim_outer)
    facts = quick_facts(problem)
    return None if facts is None else int(facts["dim_outer"])


class BlackBoxSearch(Algorithm):
    """Base of the black-box entries: subclasses give :meth:`propose` and may :meth:`observe`."""

    family: ClassVar[str] = "black-box (zeroth order in λ)"
    params = BLACKBOX_PARAMS

    def applies_to(self, problem, params=None):
        dim = _quick_dim_outer(problem)
        if dim is not None and dim > self.max_dim:
            return f"black-box search needs a low-dimensional λ (dim λ = {dim} > {self.max_dim})"
        return None

    def init(self, problem, theta0, lam0, generator):
        if problem.dim_outer > self.max_dim:
            raise NotApplicable(f"black-box search needs a low-dimensional λ "
                                f"(dim λ = {problem.dim_outer} > {self.max_dim})")
        lam0 = lam0.detach().clone()
        state = State(theta=theta0.detach().clone(), lam=lam0)
        state.extra.update(generator=generator, trials=0, best=float("inf"), history=[],
                           low=lam0 - self.radius, high=lam0 + self.radius,
                           init_seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
        self.setup(problem, state)
        return state

    def setup(self, problem: Problem, state: State) -> None:
        return None

    def evaluate(self, problem: Problem, state: State, lam: Tensor) -> tuple[Tensor, float]:
        """(θ(λ), F(λ)): the inner problem solved to tolerance from the fixed cold start."""
        theta0 = problem.init_inner(lam, torch.Generator().manual_seed(state.extra["init_seed"]))
        theta = solve_to_tolerance(problem, theta0.detach(), lam, self.inner_tol,
                                   self.inner_max_steps)
        autodiff.oracle_counts["grad_outer"] += 1  # one outer evaluation, like a gradient
        with torch.no_grad():
            return theta, float(problem.outer_loss(theta, lam))

    def step(self, problem, state):
        ex = state.extra
        lam = state.lam.clone() if ex["trials"] == 0 else self.propose(problem, state)
        theta, value = self.evaluate(problem, state, lam)
        self.observe(state, lam, value)
        ex["history"].append((lam.detach().clone(), value))
        if value < ex["best"]:
            ex["best"], state.lam, state.theta = value, lam.detach().clone(), theta.detach()
        ex["trials"] += 1
        return state

    def propose(self, problem: Problem, state: State) -> Tensor:
        """The next λ to try (inside [low, high])."""
        raise NotImplementedError

    def observe(self, state: State, lam: Tensor, value: float) -> None:
        """Called with every trial's result (model-based searches update their model)."""
        return None
