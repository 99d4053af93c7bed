"""The ``Problem`` API: a bilevel problem as two pure functions of flat tensors.

    min_λ  F(λ) = f(θ*(λ), λ)      s.t.  θ*(λ) ∈ argmin_θ g(θ, λ)

θ (inner) and λ (outer) are flat 1-D tensors on ``problem.device``. A problem owns its
data (generated deterministically from ``seed``), the inner loss ``g = inner_loss`` and the
outer loss ``f = outer_loss``, initializations, optional mini-batch samplers for stochastic
algorithms, held-out evaluation, and ground truth where the math gives it.

A subclass declares class attributes (``name``, ``family``, ``reference``, ``params``,
``sizes``, ``primary_metric``, ...) and implements :meth:`build`, :meth:`inner_loss`,
:meth:`outer_loss`, :meth:`init_inner`, :meth:`init_outer` and :meth:`evaluate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from blobench.contracts.errors import PluginError, UserError, unknown_name
from blobench.contracts.params import Param, resolve

Batch = Any  # whatever the problem's samplers return; None means the full batch

#: the values of :attr:`Problem.inner_prox_kind` (None: not declared)
PROX_KINDS = ("indicator", "coupled_indicator", "regularizer")


@dataclass(frozen=True)
class Budget:
    """How long a cell runs: outer steps and/or wall-clock seconds of solver time."""

    steps: int | None = 100
    seconds: float | None = None
    eval_every: int = 10


class Problem(ABC):
    """Base class of every bilevel problem; see the module docstring."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    #: hyperparameters of the problem (data sizes, noise, ...), beside ``size`` and ``seed``
    params: ClassVar[dict[str, Param]] = {}
    #: presets of ``params``: at least ``quick`` (seconds on a laptop CPU) and ``full``
    sizes: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "full": {}}
    #: key of :meth:`evaluate` ranked on the leaderboard, and its direction
    primary_metric: ClassVar[str] = "test_loss"
    higher_is_better: ClassVar[bool] = False
    #: final metric that ``blobench tune`` minimizes (never a test metric): the outer
    #: (validation) objective by default, or a validation key of :meth:`evaluate`
    validation_metric: ClassVar[str] = "outer_loss"
    #: True when θ₀ is a function of λ (MAML-type problems: the inner init is λ itself)
    inner_init_is_outer: ClassVar[bool] = False
    #: True when g(·, λ) has a unique minimizer for every λ (e.g. strongly convex): the
    #: re-trained θ*(λ) of the metrics may then be warm-started (blobench/execution/metrics.py)
    inner_unique: ClassVar[bool] = False
    #: True when the algorithm's own θ is the deployed model (MAML-type problems: ``evaluate``
    #: re-adapts θ from λ per task), so there is no re-trained θ*(λ) to rank instead
    own_theta_deployed: ClassVar[bool] = False
    #: a fixed re-train budget (a non-convex inner problem, e.g. a network: no convergence
    #: test names one θ*(λ)): the re-trained θ*(λ) of the metrics is exactly this many
    #: full-batch gradient steps of ``inner_step_size`` from the cell's θ₀
    #: (blobench/execution/metrics.py); None = descend until the convergence test
    retrain_steps: int | None = None
    #: False when F(λ) is f after a fixed number of inner steps from θ₀ (the outer variable
    #: drives the optimizer, e.g. a learning-rate schedule): there is no inner optimum, and
    #: only cold-start unrolled estimators (family "explicit (unrolled)") apply
    #: (:meth:`blobench.bases.algorithm.Algorithm.skip_reason`)
    inner_optimum: ClassVar[bool] = True
    #: for a lower level whose solution set S(λ) is not a singleton: "optimistic" (θ*(λ) is
    #: the point of S(λ) best for f, F = φ_o(λ) = min_{θ∈S(λ)} f) or "pessimistic" (the
    #: worst, φ_p(λ) = max_{θ∈S(λ)} f); ``inner_solution`` returns that point and the
    #: metrics' re-trained θ*(λ) is it (not the solver's selection ``min_norm_inner``).
    #: None: a singleton lower level, or θ*(λ) = what a cold re-training reaches
    #: (docs/lower-levels.md)
    formulation: ClassVar[str | None] = None
    #: default budget per size (a size missing here uses ``Budget()``)
    budgets: ClassVar[dict[str, Budget]] = {}
    #: what the non-smooth part r(θ; λ) of a lower level with :meth:`inner_prox` is (one of
    #: :data:`PROX_KINDS`): "indicator" (of a λ-independent closed convex set Y),
    #: "coupled_indicator" (of {θ ∈ Y, c(θ, λ) ≤ 0}: the set moves with λ,
    #: :meth:`inner_coupled_constraints`) or "regularizer" (finite, smooth in λ,
    #: :meth:`inner_nonsmooth`); None: not declared (methods that need to know refuse)
    inner_prox_kind: ClassVar[str | None] = None
    #: True when prox_{ηr} acts coordinate-wise: coordinate i depends on z_i and λ only, with
    #: ∂/∂z_i ∈ {0, 1} (a box, with bounds possibly depending on λ, or a soft-threshold) — the
    #: declaration that the implicit entries may differentiate the proximal fixed point
    #: (:func:`blobench.autodiff.implicit_hypergradient`)
    inner_prox_separable: ClassVar[bool] = False

    def __init__(self, size: str = "quick", seed: int = 0, device: str | torch.device = "cpu",
                 **overrides: Any) -> None:
        if size not in self.sizes:
            raise unknown_name(f"size of problem {self.name}", size, self.sizes)
        if not isinstance(seed, int) or seed < 0:
            raise UserError(f"seed must be a non-negative integer, got {seed!r}")
        self.size = size
        self.seed = seed
        self.device = torch.device(device)
        self.config = resolve(self.name, self.params, {**self.sizes[size], **overrides})
        self.build(torch.Generator().manual_seed(seed))

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def build(self, generator: torch.Generator) -> None:
        """Create the data from ``generator`` (CPU generator; move tensors to ``device``)."""

    @property
    @abstractmethod
    def dim_inner(self) -> int:
        """Length of θ."""

    @property
    @abstractmethod
    def dim_outer(self) -> int:
        """Length of λ."""

    @abstractmethod
    def inner_loss(self, theta: torch.Tensor, lam: torch.Tensor, batch: Batch = None
                   ) -> torch.Tensor:
        """g(θ, λ), a scalar tensor differentiable in both arguments."""

    @abstractmethod
    def outer_loss(self, theta: torch.Tensor, lam: torch.Tensor, batch: Batch = None
                   ) -> torch.Tensor:
        """f(θ, λ), a scalar tensor differentiable in both arguments."""

    @abstractmethod
    def init_outer(self, generator: torch.Generator) -> torch.Tensor:
        """λ₀."""

    @abstractmethod
    def init_inner(self, lam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """θ₀ (may depend on λ, e.g. θ₀ = λ for MAML)."""

    @abstractmethod
    def evaluate(self, theta: torch.Tensor, lam: torch.Tensor) -> dict[str, float]:
        """Held-out metrics (must include :attr:`primary_metric`)."""

    # ------------------------------------------------------------------- defaults
    def sample_inner_batch(self, generator: torch.Generator) -> Batch:
        """A mini-batch for g; ``None`` (the default) is the full batch."""
        return None

    def sample_outer_batch(self, generator: torch.Generator) -> Batch:
        """A mini-batch for f; ``None`` (the default) is the full batch."""
        return None

    def inner_step_size(self, lam: torch.Tensor) -> float:
        """A safe gradient step on g at this λ (``1/L`` where L is known)."""
        return 0.1

    def outer_step_size(self) -> float:
        """A reasonable first step size on λ for plain gradient descent."""
        return 0.1

    def budget(self) -> Budget:
        """The default budget of this problem at its size."""
        return self.budgets.get(self.size, Budget())

    # --------------------------------------------------------------- ground truth
    def inner_solution(self, lam: torch.Tensor) -> torch.Tensor:
        """θ*(λ) when the inner problem has a unique, computable minimizer."""
        raise NotImplementedError

    def min_norm_inner(self, lam: torch.Tensor, theta0: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """argmin ‖θ − θ₀‖ over the inner solution set (θ₀ = 0 when None)."""
        raise NotImplementedError

    def exact_hypergradient(self, lam: torch.Tensor) -> torch.Tensor:
        """dF/dλ at λ, exactly (closed form or dense solve)."""
        raise NotImplementedError

    def optimal_value(self) -> float:
        """min_λ F(λ) when known."""
        raise NotImplementedError

    # ------------------------------------------------------ constrained / non-smooth lower levels
    def inner_prox(self, theta: torch.Tensor, lam: torch.Tensor, step: float
                   ) -> torch.Tensor:
        """The proximal map of the non-smooth part r(·; λ) of the lower level, or
        ``NotImplemented`` (the default: an unconstrained, smooth lower level).

        A problem whose lower level is min_θ g(θ, λ) + r(θ; λ) — ``inner_loss`` returning the
        smooth part g, r an indicator of a constraint set C (box, simplex) or a regularizer
        (e^λ‖θ‖₁) — returns prox_{step·r}(θ) = argmin_z ½‖z − θ‖² / step + r(z; λ); for an
        indicator this is the Euclidean projection onto C and ``step`` is ignored. Written in
        differentiable torch operations of ``theta`` and ``lam`` (clamp, soft-threshold), so
        that unrolled estimators differentiate through the projected / proximal step
        θ ← prox_{η r}(θ − η ∇_θ g(θ, λ)) (Beck & Teboulle 2009; proximal gradient)."""
        return NotImplemented

    # Optional hooks of a constrained lower level, read by the methods built for one (meha,
    # lv_hba, gaffo; blobench/bases/constrained.py) beside ``inner_prox`` and
    # ``inner_prox_kind``; ``problem.has(name)`` tells which a problem overrides
    # (docs/lower-levels.md, "Constrained lower levels").
    def inner_nonsmooth(self, theta: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """r(θ; λ) at a feasible θ, a scalar differentiable in λ (∂_λ r for value-function
        gradients; e^λ‖θ‖₁ for the Lasso), or ``NotImplemented`` (the default: r does not
        depend on λ — a smooth lower level or a λ-independent set, where r = 0 at feasible θ)."""
        return NotImplemented

    def inner_coupled_constraints(self, theta: torch.Tensor, lam: torch.Tensor
                                  ) -> torch.Tensor:
        """c(θ, λ), the m constraints c ≤ 0 that couple θ and λ (flat, differentiable in both),
        or ``NotImplemented`` (the default: m = 0)."""
        return NotImplemented

    def inner_uncoupled_projection(self, theta: torch.Tensor) -> torch.Tensor:
        """The Euclidean projection onto the λ-independent part Y of the feasible set, or
        ``NotImplemented`` (the default: Y = the set of ``inner_prox`` for an "indicator", else
        ℝ^d)."""
        return NotImplemented

    def project_feasible(self, theta: torch.Tensor, lam: torch.Tensor,
                         lam_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The projection of the pair (θ, λ) onto {(θ, λ): θ ∈ Y, c(θ, λ) ≤ 0} in the metric
        ‖Δθ‖² + ``lam_weight``·‖Δλ‖², or ``NotImplemented`` (the default: without coupled
        constraints it is (Proj_Y θ, λ))."""
        return NotImplemented

    # ------------------------------------------------------ optional analytic oracles
    # Closed-form derivatives of g that the engine (blobench.autodiff) uses instead of
    # autodiff when a problem overrides them: they cut the per-call overhead of autograd on
    # small problems. Each may return ``NotImplemented`` for a call it does not cover (e.g. a
    # mini-batch), and the engine then falls back to autodiff. Contract: written in
    # differentiable torch operations of ``theta`` and ``lam`` (reverse-mode unrolling
    # differentiates through ``inner_grad_oracle``), no in-place updates of the arguments, and
    # equal to the autodiff derivatives of :meth:`inner_loss` (tests/test_oracles.py).
    def inner_grad_oracle(self, theta: torch.Tensor, lam: torch.Tensor, batch: Batch = None
                          ) -> torch.Tensor:
        """∇_θ g(θ, λ) (dim θ), or ``NotImplemented`` (the default: autodiff is used)."""
        return NotImplemented

    def inner_hessian_operator(self, theta: torch.Tensor, lam: torch.Tensor,
                               batch: Batch = None
                               ) -> Callable[[torch.Tensor], torch.Tensor]:
        """H = ∇²_θθ g(θ, λ) as a linear operator ``v ↦ H v`` (dim θ → dim θ), or
        ``NotImplemented`` (the default).

        Everything that depends only on the point (θ, λ) — e^λ, the curvature weights of a
        GLM, or H itself as a small dense matrix — is computed once here, so that the k
        products of a CG / Neumann solve (and each step of a reverse unroll) pay only for the
        product itself."""
        return NotImplemented

    def mixed_oracle(self, theta: torch.Tensor, lam: torch.Tensor, v: torch.Tensor,
                     batch: Batch = None) -> torch.Tensor:
        """∇²_λθ g(θ, λ) · v (dim λ), the J v of the IFT, or ``NotImplemented`` (the default)."""
        return NotImplemented

    def outer_grads_oracle(self, theta: torch.Tensor, lam: torch.Tensor, batch: Batch = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """(∇_θ f(θ, λ), ∇_λ f(θ, λ)), or ``NotImplemented`` (the default)."""
        return NotImplemented

    def head_mask(self) -> torch.Tensor | None:
        """Boolean mask over λ marking the task-specific head (the last layer of a model whose
        initialization λ is meta-learned), for head-only adaptation (ANIL, Raghu et al. 2020);
        ``None`` (the default): the problem declares no head. Overriding it is the declaration
        (``problem.has("head_mask")``)."""
        return None

    @classmethod
    def lam_in_losses(cls, params: dict[str, Any] | None = None) -> bool:
        """Whether λ enters g or f directly (for these resolved parameters; None = defaults).

        False only for problems where λ acts solely through θ₀(λ) (``inner_init_is_outer``
        without a term in λ, e.g. MAML without iMAML's proximal term): there ∇_λ g = ∇_λ f = 0,
        and every hypergradient that does not differentiate through θ₀ is identically zero."""
        return True

    def has(self, method: str) -> bool:
        """Whether this problem overrides the optional ground-truth ``method``."""
        return getattr(type(self), method) is not getattr(Problem, method)

    # ------------------------------------------------------------------- helpers
    def tensor(self, data: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A tensor on this problem's device (and dtype, default float64)."""
        return torch.as_tensor(data, dtype=dtype or torch.float64, device=self.device)

    def index_batch(self, n: int, batch_size: int, generator: torch.Generator
                    ) -> torch.Tensor | None:
        """A mini-batch of a finite sum over n examples, for the ``sample_*_batch`` methods:
        ``None`` (the full batch) when ``batch_size`` is 0 or ≥ n, else ``batch_size``
        indices drawn uniformly with replacement from ``generator``, as a LongTensor on
        :attr:`device`."""
        if batch_size == 0 or batch_size >= n:
            return None
        return torch.randint(n, (batch_size,), generator=generator).to(self.device)

    def check_api(self, theta0: torch.Tensor, lam0: torch.Tensor) -> None:
        """Raise :class:`~blobench.contracts.errors.PluginError` if this problem breaks the API
        contract:
        θ₀ / λ₀ flat of the declared sizes, losses finite scalar tensors."""
        where = f"problem {self.name!r}"
        for label, x, dim in (("init_inner", theta0, self.dim_inner),
                              ("init_outer", lam0, self.dim_outer)):
            if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.numel() != dim:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise PluginError(f"{where}: {label} returned {shape}, expected a flat "
                                  f"tensor of length {dim}")
        if self.inner_prox_kind not in (None, *PROX_KINDS):
            raise PluginError(f"{where}: inner_prox_kind = {self.inner_prox_kind!r}, expected "
                              f"None or one of {PROX_KINDS}")
        for label, fn in (("inner_loss", self.inner_loss), ("outer_loss", self.outer_loss)):
            value = fn(theta0, lam0)
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise PluginError(f"{where}: {label} returned {shape}, expected a scalar tensor")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size!r}, seed={self.seed}, {self.config})"
