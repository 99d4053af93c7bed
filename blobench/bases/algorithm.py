"""The ``Algorithm`` API and the double-loop base most bilevel methods share.

An algorithm declares typed hyperparameters (:class:`~blobench.contracts.params.Param`) and
implements ``init(problem, theta0, lam0, generator) -> State`` and
``step(problem, state) -> State`` — one outer iteration. The harness reads ``state.theta``,
``state.lam`` and, where the method has one, ``state.hypergrad`` (its last estimate of dF/dλ).

:class:`DoubleLoop` is the shape of most methods: at each outer step an inner solver runs
``inner_steps`` gradient steps on g from a warm start (the previous θ) or a cold start
(a fresh θ₀), a hypergradient estimator gives dF/dλ, and a ``torch.optim`` optimizer updates
λ. Warm vs cold start is a hyperparameter of every double-loop entry (Vicol et al. 2022).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from blobench import autodiff
from blobench.contracts.params import POSITIVE, Param, resolve
from blobench.contracts.problem import Problem

Tensor = torch.Tensor


@dataclass
class State:
    """What an algorithm carries between outer steps."""

    theta: Tensor
    lam: Tensor
    hypergrad: Tensor | None = None
    #: the λ at which ``hypergrad`` was estimated (before the update it drove)
    hypergrad_at: Tensor | None = None
    #: algorithm-specific state (optimizers, warm-start vectors, schedules, ...)
    extra: dict[str, Any] = field(default_factory=dict)


class Algorithm(ABC):
    """Base class of every algorithm entry; see the module docstring."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, **given: Any) -> None:
        self.config = resolve(self.name, self.params, given)
        self.check_config()

    def check_config(self) -> None:
        """Cross-parameter validation (e.g. truncation ≤ unroll); raise UserError."""
        return None

    def __getattr__(self, key: str) -> Any:
        config = self.__dict__.get("config", {})
        if key in config:
            return config[key]
        raise AttributeError(key)

    def applies_to(self, problem: type[Problem], params: dict[str, Any] | None = None
                   ) -> str | None:
        """None if this algorithm applies to problems of this class (with these resolved
        problem parameters, when given), else the reason it does not."""
        return None

    @property
    def differentiates_through_init(self) -> bool:
        """Whether the hypergradient includes the path through θ₀(λ) (cold-start unrolling,
        the MAML family); see :meth:`Problem.lam_in_losses`."""
        return False

    def skip_reason(self, problem: type[Problem], params: dict[str, Any] | None = None
                    ) -> str | None:
        """Why this configuration does not run on this problem (None: it runs): the structural
        rule below, then the entry's own :meth:`applies_to`. What planning, tuning and
        ``blobench check`` ask.

        Rule: where λ acts only through θ₀(λ) (``not problem.lam_in_losses(params)``) an
        algorithm that does not differentiate through θ₀ computes a hypergradient that is
        identically zero, so it would only rank the initial λ. Where the problem has no inner
        optimum (``problem.inner_optimum`` False: F is defined by T steps from θ₀) only
        cold-start entries of the family :data:`UNROLLED_FAMILY` apply."""
        if (problem.inner_init_is_outer and not problem.lam_in_losses(params)
                and not self.differentiates_through_init):
            return ("λ enters this problem only as θ's initialization (∇_λ g = ∇_λ f = 0): "
                    "a hypergradient that does not differentiate through θ₀(λ) is zero")
        if not problem.inner_optimum and (self.family != UNROLLED_FAMILY
                                          or self.config.get("warm_start", False)):
            return ("F(λ) is f after a fixed number of inner steps from θ₀ (no inner optimum "
                    "to solve for): only cold-start unrolled estimators apply (unrolled, "
                    "truncated, forward_mode with warm_start=false)")
        if autodiff.has_inner_prox(problem):
            reason = self.constrained_reason(problem)
            if reason is not None:
                return reason
        return self.applies_to(problem, params)

    #: True for an entry built to handle a constrained / non-smooth lower level
    #: (:meth:`Problem.inner_prox`): it differentiates the proximal steps (the unrolled
    #: estimators), or its iteration projects / takes prox steps and its λ direction carries the
    #: constraint's or r's dependence on λ (meha, lv_hba, gaffo). The default is False: an entry
    #: that sees only the smooth g would leave θ infeasible and, where λ enters only the
    #: constraint or r (∇_λ g = ∇_λ f = 0), never move λ from λ₀ — so it is refused.
    handles_inner_prox: ClassVar[bool] = False

    def constrained_reason(self, problem: type[Problem]) -> str | None:
        """Why this entry does not run on a problem with a constrained / non-smooth lower level
        (one that overrides :meth:`Problem.inner_prox`), or None. The default: it runs only if
        it declares :attr:`handles_inner_prox` (the implicit entries decide by the prox's
        separability: :class:`ImplicitDoubleLoop`); the reason names the entries that apply."""
        if self.handles_inner_prox:
            return None
        return (f"{self.name} ignores the lower level's constraint / non-smooth part "
                "(Problem.inner_prox): its steps see only the smooth g, so θ leaves the "
                "feasible set and, where λ enters only the constraint or r, λ stays at λ₀; "
                f"entries that apply: {CONSTRAINED_ENTRIES}")

    @abstractmethod
    def init(self, problem: Problem, theta0: Tensor, lam0: Tensor, generator: torch.Generator
             ) -> State:
        """The state before the first outer step."""

    @abstractmethod
    def step(self, problem: Problem, state: State) -> State:
        """One outer iteration."""


#: the registered entries that run on a constrained / non-smooth lower level (named in every
#: refusal; tests/test_constrained_refusal.py checks this list against the registry)
CONSTRAINED_ENTRIES = (
    "unrolled, truncated, forward_mode, bda, iaptt_gm (they differentiate the proximal "
    "steps); exact, implicit_cg, neumann, fixed_point, nystrom, one_step, approxgrad (the "
    "proximal fixed point, where the problem declares its prox separable); meha (a "
    "λ-independent set or a regularizer smooth in λ); lv_hba, gaffo (constraint sets, also "
    "coupled to λ) — docs/lower-levels.md")


#: the family of the estimators that differentiate the T-step map itself (RHG, truncated,
#: forward mode): the only ones defined on a problem without an inner optimum
UNROLLED_FAMILY = "explicit (unrolled)"


#: offset that turns a cell's seed into the seed of its θ₀ generator (apart from the data's)
THETA0_SEED_OFFSET = 20221


def cell_theta0(problem: Problem, lam: Tensor) -> Tensor:
    """θ₀(λ) of the cell ``problem`` belongs to: ``init_inner(λ, Generator(seed + offset))``.

    The one θ₀ per cell (issue 23): the harness starts every algorithm from it, cold starts
    of :class:`DoubleLoop` restart from it, and the metrics that refer to θ₀ (the re-trained
    θ*(λ), the cold-restart gap, the distances to the min-norm inner solution) use it — the
    same tensor even when ``init_inner`` draws θ₀ at random. As a function of λ it also
    covers problems whose θ₀ depends on λ (MAML: θ₀ = λ)."""
    gen = torch.Generator().manual_seed(problem.seed + THETA0_SEED_OFFSET)
    return problem.init_inner(lam, gen)


def make_outer_optimizer(name: str, lam: Tensor, lr: float) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer over the leaf tensor λ (its ``.grad`` set by the caller)."""
    if name == "adam":
        return torch.optim.Adam([lam], lr=lr)
    return torch.optim.SGD([lam], lr=lr)


def outer_update(state: State, hypergrad: Tensor) -> None:
    """λ ← optimizer step along ``hypergrad`` (in place; records it in the state)."""
    lam = state.lam
    state.hypergrad_at = lam.detach().clone()
    lam.grad = hypergrad.detach().clone()
    state.extra["outer_optimizer"].step()
    lam.grad = None
    state.hypergrad = hypergrad.detach()


DOUBLE_LOOP_PARAMS: dict[str, Param] = {
    "inner_steps": Param(int, 20, "T: inner gradient steps per outer step", low=1),
    "inner_lr": Param(float, None, "inner step size; None = the problem's 1/L", optional=True,
                      **POSITIVE),
    "warm_start": Param(bool, True, "start the inner solver from the previous θ (else θ₀)"),
    "outer_lr": Param(float, None, "outer step size; None = the problem's default",
                      optional=True, **POSITIVE),
    "outer_optimizer": Param(str, "sgd", "torch.optim optimizer on λ", choices=("sgd", "adam")),
}


def meta_params(inner_steps: int, lr_help: str, optimizer_help: str) -> dict[str, Param]:
    """:data:`DOUBLE_LOOP_PARAMS` for initialization-based meta-learning (θ₀ = θ₀(λ)): T
    adaptation steps from λ, the cold start fixed (these methods adapt from λ by definition),
    Adam on λ by default (MAML's meta-optimizer)."""
    return {
        **DOUBLE_LOOP_PARAMS,
        "inner_steps": Param(int, inner_steps, "T: adaptation steps from λ per task", low=1),
        "inner_lr": Param(float, None, lr_help, optional=True, **POSITIVE),
        "warm_start": Param(bool, False, "fixed to False: every outer step adapts from λ",
                            check=(lambda v: v is False, "initialization-based meta-learning "
                                   "adapts from λ at every outer step (cold start)")),
        "outer_optimizer": Param(str, "adam", optimizer_help, choices=("sgd", "adam")),
    }


def init_dependence_reason(problem: type[Problem]) -> str | None:
    """Why an initialization-based meta-learner does not apply (None: θ₀ depends on λ)."""
    if not problem.inner_init_is_outer:
        return "inner init does not depend on λ (needs a problem with inner_init_is_outer)"
    return None


#: inner solvers of the implicit entries: their hypergradient uses the inner optimality
#: condition ∇_θ g(θ*, λ) = 0, which does not depend on the solver that approaches θ*. BDA's
#: aggregation is not among them: its iterate satisfies ∇_θ g = 0 only as α_t → 0 (bias
#: ≈ α₀/T, check_knob of ``bda``), so under the IFT it is a slower gd on a unique lower level,
#: and on a non-singleton one the IFT does not describe the solution it selects.
INNER_SOLVERS = ("gd", "momentum", "adam")

#: inner solvers of the estimators that differentiate the T-step map itself (unrolled,
#: truncated, forward mode): the derivative is that of the solver's actual update
#: (:class:`blobench.autodiff.InnerSolver`), so every solver is consistent with its own F_T
UNROLLED_INNER_SOLVERS = autodiff.INNER_SOLVERS


def inner_solver_param(choices: tuple[str, ...] = INNER_SOLVERS) -> dict[str, Param]:
    """The ``inner_solver`` hyperparameter (and, when ``bda`` is a choice, BDA's α₀ and s_u)."""
    params = {"inner_solver": Param(
        str, "gd", "update rule of the T inner steps: gd, heavy-ball momentum (β = 0.9), adam "
        "(0.9, 0.999, 1e-8)" + (", bda (aggregation with ∇_θ f, α_t = α₀/(t+1))"
                                 if "bda" in choices else ""), choices=choices)}
    if "bda" in choices:
        params.update(BDA_PARAMS)
    return params


#: BDA's aggregation (Liu et al. 2020, Alg. 1): α_t = α₀/(t + 1), s_u
BDA_PARAMS: dict[str, Param] = {
    "alpha0": Param(float, 0.5, "α₀ of BDA's aggregation weights α_t = α₀/(t+1) "
                    "(inner_solver=bda)", low=0.0, high=1.0),
    "upper_lr": Param(float, None, "BDA's s_u, step on ∇_θ f; None = the inner step size s_l",
                      optional=True, **POSITIVE),
}


def inner_solve(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
                solver: str = "gd", sample: Callable[[], Any] | None = None,
                momentum: float = 0.9) -> Tensor:
    """``steps`` steps of ``solver`` on g(·, λ) from θ at step size η = ``lr``, no graph kept,
    each followed by the problem's prox (:meth:`Problem.inner_prox`, when it has one); the
    solver's state (previous iterate, moments) starts fresh at every call. The update rules are
    :class:`blobench.autodiff.InnerSolver`'s (gd; heavy ball, Polyak 1964; Adam, Kingma & Ba
    2015, Alg. 1 with β₁ = 0.9, β₂ = 0.999, ε = 1e-8)."""
    return autodiff.inner_solve(problem, theta, lam, steps, lr,
                                autodiff.InnerSolver(solver, momentum=momentum), sample=sample)


class DoubleLoop(Algorithm):
    """Inner solver (T steps, warm or cold start) + hypergradient estimator + outer optimizer.

    Subclasses implement :meth:`hypergradient`, which gets the starting θ of this outer
    step and returns the inner iterate it ends at and its estimate of dF/dλ.
    """

    params = DOUBLE_LOOP_PARAMS

    # handles_inner_prox (Algorithm): the inner solvers apply Problem.inner_prox at every step,
    # but an estimator built on ∇_θ g = 0 or on the unconstrained dynamics is still wrong there;
    # the unrolled estimators, whose hypergradient is that of the proximal steps, declare it

    def init(self, problem: Problem, theta0: Tensor, lam0: Tensor, generator: torch.Generator
             ) -> State:
        lam = lam0.detach().clone()
        lr = self.outer_lr if self.outer_lr is not None else self.default_outer_lr(problem)
        state = State(theta=theta0.detach().clone(), lam=lam)
        state.extra["outer_optimizer"] = make_outer_optimizer(self.outer_optimizer, lam, lr)
        state.extra["generator"] = generator
        return state

    def default_outer_lr(self, problem: Problem) -> float:
        """The outer step when ``outer_lr`` is None: the problem's default (entries with a
        noisy hypergradient estimate override it with a smaller one)."""
        return problem.outer_step_size()

    def inner_lr_at(self, problem: Problem, lam: Tensor) -> float:
        return self.inner_lr if self.inner_lr is not None else problem.inner_step_size(lam)

    def start_theta(self, problem: Problem, state: State, lam: Tensor) -> Tensor:
        """θ to start the inner solver from: the previous θ (warm) or the cell's θ₀(λ)
        (cold, :func:`cell_theta0`: the θ₀ the harness started from)."""
        if self.warm_start:
            return state.theta
        return cell_theta0(problem, lam)

    def solve_inner(self, problem: Problem, state: State, lam: Tensor,
                    stochastic: bool = False) -> Tensor:
        """T gradient steps on g from the warm or cold start, at step size η = inner_lr.

        ``stochastic``: each step on a fresh mini-batch from ``problem.sample_inner_batch``
        (drawn from the run's generator), as the stochastic double-loop methods do.
        """
        gen = state.extra["generator"]
        sample = (lambda: problem.sample_inner_batch(gen)) if stochastic else None
        return autodiff.inner_solve(problem, self.start_theta(problem, state, lam), lam,
                                    self.inner_steps, self.inner_lr_at(problem, lam),
                                    self.inner_solver_spec(), sample=sample)

    def inner_solver_spec(self) -> autodiff.InnerSolver:
        """The update rule of the inner steps: the ``inner_solver`` hyperparameter (gd when the
        entry has none), with BDA's α₀ and s_u when it has them."""
        config = self.config
        return autodiff.InnerSolver(config.get("inner_solver", "gd"),
                                    alpha0=config.get("alpha0", 0.5),
                                    upper_lr=config.get("upper_lr"))

    def step(self, problem: Problem, state: State) -> State:
        theta, hypergrad = self.hypergradient(problem, state)
        state.theta = theta.detach()
        outer_update(state, hypergrad)
        return state

    @abstractmethod
    def hypergradient(self, problem: Problem, state: State) -> tuple[Tensor, Tensor]:
        """(θ after the inner solve, estimate of dF/dλ at the current λ)."""


class ImplicitDoubleLoop(DoubleLoop):
    """T inner gradient steps, then the IFT hypergradient ∇_λ f − J v with v ≈ H⁻¹ ∇_θ f.

    Subclasses give the linear solver :meth:`solve`; the previous v is passed to it so that
    iterative solvers can warm-start (as HOAG does, Pedregosa 2016, Alg. 1).
    """

    params = {**DOUBLE_LOOP_PARAMS,
              "inner_solver": Param(str, "gd", "solver of the T inner steps (gd, heavy-ball "
                                    "momentum 0.9, adam); the IFT needs only ∇_θ g = 0",
                                    choices=INNER_SOLVERS)}

    def constrained_reason(self, problem: type[Problem]) -> str | None:
        """On a constrained / non-smooth lower level the IFT of ∇_θ g = 0 is wrong; the
        proximal fixed-point condition replaces it when the problem declares its prox
        separable (``inner_prox_separable``, :func:`blobench.autodiff.implicit_hypergradient`)."""
        if autodiff.prox_separable(problem):
            return None
        return (f"{self.name}: the implicit function theorem of ∇_θ g = 0 does not hold on "
                "this constrained lower level (Problem.inner_prox) and the problem does not "
                "declare inner_prox_separable (for the proximal fixed-point condition); "
                f"entries that apply: {CONSTRAINED_ENTRIES}")

    def hypergradient(self, problem: Problem, state: State) -> tuple[Tensor, Tensor]:
        lam = state.lam.detach()
        theta = self.solve_inner(problem, state, lam)
        previous = state.extra.get("linear_solution")
        hypergrad, v = autodiff.implicit_hypergradient(
            problem, theta, lam, lambda ops, b: self.solve(problem, ops, b, previous),
            prox_step=(self.inner_lr_at(problem, lam) if autodiff.prox_separable(problem)
                       else None))
        state.extra["linear_solution"] = v.detach()
        return theta, hypergrad

    @abstractmethod
    def solve(self, problem: Problem, ops: Any, b: Tensor, previous: Tensor | None) -> Tensor:
        """v ≈ H⁻¹ b, with ``ops`` an :class:`~blobench.autodiff.InnerDerivatives`."""
