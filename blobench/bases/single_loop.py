"""Shared pieces of the single-loop, stochastic and first-order (penalty / value-function) entries.

These methods do not have the DoubleLoop shape (inner solve → hypergradient → outer step):
they move θ, λ and auxiliary variables (a linear-system estimate v, a second inner sequence,
multipliers) together, often with decaying step sizes. :class:`SingleLoop` gives them one
``init`` (state with a step counter, the harness's generator for the problem's mini-batch
samplers, and a ``torch.optim.SGD`` on λ whose learning rate is set at every step so that
:func:`~blobench.bases.algorithm.outer_update` records ``state.hypergrad`` /
``state.hypergrad_at``),
and helpers for batches and step-size schedules.

:func:`soba_oracles` evaluates the five stochastic oracles of the SOBA/SABA framework
(Dagréou, Ablin, Vaiter, Moreau, NeurIPS 2022, eq. 3–4) at (θ, v, λ) on one inner batch and
one outer batch: ∇_θ g, ∇²_θθ g v, ∇_θ f, ∇²_λθ g v, ∇_λ f.

Finite-sum capability (used by SABA and other variance-reduced methods): a problem whose
mini-batch samplers return index tensors into finite sums has the attributes (class attributes,
properties, or instance attributes set in ``build``) ``n_inner_samples`` and
``n_outer_samples``: g = (1/n) Σ_i g_i and
f = (1/m) Σ_j f_j, and ``inner_loss(θ, λ, batch=idx)`` is the mean of g_i over the indices in
the 1-D integer tensor ``idx`` (likewise for f); ``batch=None`` is the full sum.
:func:`finite_sum_reason` checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from blobench.autodiff import InnerDerivatives, _oracles, oracle_counts, outer_grads
from blobench.bases.algorithm import Algorithm, State, outer_update
from blobench.bases.quick_facts import quick_facts
from blobench.contracts.errors import UserError
from blobench.contracts.problem import Batch, Problem

Tensor = torch.Tensor


class SingleLoop(Algorithm):
    """Base of the entries that are not double loops; subclasses add :meth:`setup` and ``step``.

    ``state.extra``: ``generator`` (for the problem's samplers), ``k`` (outer steps done),
    ``outer_optimizer`` (SGD on λ; its lr is set by :func:`sgd_outer_step`).
    """

    def init(self, problem: Problem, theta0: Tensor, lam0: Tensor, generator: torch.Generator
             ) -> State:
        lam = lam0.detach().clone()
        state = State(theta=theta0.detach().clone(), lam=lam)
        state.extra["outer_optimizer"] = torch.optim.SGD([lam], lr=1.0)
        state.extra["generator"] = generator
        state.extra["k"] = 0
        self.setup(problem, state)
        return state

    def setup(self, problem: Problem, state: State) -> None:
        """Method-specific state (auxiliary variables, memories); default: nothing."""
        return None


def inner_batch(problem: Problem, state: State) -> Batch:
    """A fresh mini-batch for g from the problem's sampler (None = full batch)."""
    return problem.sample_inner_batch(state.extra["generator"])


def outer_batch(problem: Problem, state: State) -> Batch:
    """A fresh mini-batch for f from the problem's sampler (None = full batch)."""
    return problem.sample_outer_batch(state.extra["generator"])


def decayed(base: float, k: int, power: float) -> float:
    """base / (k + 1)^power: the polynomially decaying step sizes of the stochastic analyses."""
    return base / (k + 1) ** power


def grown_batch(problem: Problem, state: State, level: str, growth: float) -> Batch:
    """The problem's ``level`` ("inner"/"outer") mini-batch at outer step k = ``state.extra["k"]``
    grown ``growth``^k times: ⌈growth^k⌉ consecutive draws of its sampler concatenated (epochs
    without replacement: distinct samples), None (the full sum) once that reaches its
    ``n_<level>_samples``. Growing batches (Friedlander & Schmidt 2012) make the oracle noise
    vanish, so a method analysed with exact gradients converges under mini-batches."""
    draw = inner_batch if level == "inner" else outer_batch
    first = draw(problem, state)
    if growth == 1.0 or first is None:
        return first
    copies = math.ceil(math.exp(min(state.extra["k"] * math.log(growth), 30.0)) - 1e-9)
    if not (isinstance(first, torch.Tensor) and first.dim() == 1 and not first.is_floating_point()
            and hasattr(problem, f"n_{level}_samples")):
        raise UserError(f"batch_growth={growth} needs a finite-sum problem whose samplers return "
                        f"index tensors; {problem.name}'s {level} batch is not one")
    if copies * len(first) >= getattr(problem, f"n_{level}_samples"):
        return None
    return torch.cat([first] + [draw(problem, state) for _ in range(copies - 1)])


#: Default outer step of the single-loop entries, as a fraction of ``problem.outer_step_size()``
#: (a step tuned for a converged inner problem): λ moves while θ (and v) are still tracking
#: their targets, so the outer step must be smaller than the double-loop one (Dagréou et al.
#: 2022 tie the two with a ratio likewise). Measured: SOBA on ``quadratic`` diverges at 1× and
#: 0.5×, converges at 0.2× and 0.1×.
OUTER_SCALE = 0.1


def or_default(value: float | None, default: float) -> float:
    """A user-given step size, or the problem's default when it is None."""
    return float(default) if value is None else float(value)


def outer_lr_default(value: float | None, problem: Problem) -> float:
    """The user's outer step, or ``OUTER_SCALE · problem.outer_step_size()``."""
    return or_default(value, OUTER_SCALE * problem.outer_step_size())


def sgd_outer_step(state: State, direction: Tensor, lr: float) -> None:
    """λ ← λ − lr · direction through the state's SGD optimizer (records the hypergradient)."""
    for group in state.extra["outer_optimizer"].param_groups:
        group["lr"] = lr
    outer_update(state, direction)


def soba_oracles(problem: Problem, theta: Tensor, v: Tensor, lam: Tensor,
                 inner: Batch = None, outer: Batch = None) -> dict[str, Tensor]:
    """The SOBA oracles at (θ, v, λ): ∇_θ g, H v, J v on ``inner``; ∇_θ f, ∇_λ f on ``outer``."""
    f_theta, f_lam = outer_grads(problem, theta, lam, outer)
    ops = InnerDerivatives(problem, theta, lam, inner)
    return {"g_theta": ops.grad, "hv": ops.hvp(v), "jv": ops.mixed(v),
            "f_theta": f_theta, "f_lam": f_lam}


def per_sample_inner(problem: Problem, theta: Tensor, lam: Tensor, v: Tensor, idx: Tensor,
                     batched: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample (∇_θ g_i, ∇²_θθ g_i v, ∇²_λθ g_i v) for every index i of ``idx``, stacked
    (len(idx) × dim): the oracles SAGA-type memories store (SABA).

    ``batched``: one ``torch.func.vmap`` over the samples of the problem's analytic oracles
    (when it has all three inner ones) or of ``grad`` / grad-of-⟨∇_θ g_i, v⟩ (g_i =
    ``inner_loss(θ, λ, batch=i[None])``), a few batched calls instead of a Python loop;
    a problem whose losses cannot be vmapped falls back to the loop (``batched=False``, one
    :class:`InnerDerivatives` per sample — the reference the batched path is tested against).
    """
    theta, lam, v = theta.detach(), lam.detach(), v.detach()
    if batched:
        oracles = _oracles(problem)

        def sample(i: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            batch = i.reshape(1)

            def grad_theta(th: Tensor, la: Tensor) -> Tensor:
                return torch.func.grad(lambda t: problem.inner_loss(t, la, batch))(th)

            if _INNER_ORACLES <= oracles:  # the problem's closed forms, vmapped
                out = (problem.inner_grad_oracle(theta, lam, batch),
                       problem.inner_hessian_operator(theta, lam, batch),
                       problem.mixed_oracle(theta, lam, v, batch))
                if NotImplemented not in out:
                    return out[0], out[1](v), out[2]
            hv, jv = torch.func.grad(lambda th, la: grad_theta(th, la) @ v,
                                     argnums=(0, 1))(theta, lam)
            return grad_theta(theta, lam), hv, jv

        try:
            with torch.enable_grad():
                out = torch.func.vmap(sample)(idx)
            _count(len(idx), "grad_inner", "hvp", "mixed")
            return out
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            pass  # e.g. data-dependent Python control flow in the loss: the loop below
    rows = []
    for i in idx.tolist():
        ops = InnerDerivatives(problem, theta, lam, idx.new_tensor([i]))
        rows.append((ops.grad, ops.hvp(v), ops.mixed(v)))
    return tuple(torch.stack(col) for col in zip(*rows, strict=True))


def per_sample_outer(problem: Problem, theta: Tensor, lam: Tensor, idx: Tensor,
                     batched: bool = True) -> tuple[Tensor, Tensor]:
    """Per-sample (∇_θ f_j, ∇_λ f_j) for every index j of ``idx``, stacked; see
    :func:`per_sample_inner`."""
    theta, lam = theta.detach(), lam.detach()
    if batched:
        oracle = "outer_grads_oracle" in _oracles(problem)

        def sample(j: Tensor) -> tuple[Tensor, Tensor]:
            batch = j.reshape(1)
            out = problem.outer_grads_oracle(theta, lam, batch) if oracle else NotImplemented
            if out is not NotImplemented:
                return out
            return torch.func.grad(lambda th, la: problem.outer_loss(th, la, batch),
                                   argnums=(0, 1))(theta, lam)

        try:
            with torch.enable_grad():
                out = torch.func.vmap(sample)(idx)
            _count(len(idx), "grad_outer")
            return out
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            pass
    rows = [outer_grads(problem, theta, lam, idx.new_tensor([j])) for j in idx.tolist()]
    return tuple(torch.stack(col) for col in zip(*rows, strict=True))


_INNER_ORACLES = frozenset({"inner_grad_oracle", "inner_hessian_operator", "mixed_oracle"})


def _count(n: int, *kinds: str) -> None:
    """Oracle calls of a batched per-sample evaluation: n of each kind (as the loop counts)."""
    for kind in kinds:
        oracle_counts[kind] += n


class FreshBatchDerivatives:
    """Second-order products at a fixed (θ, λ), each on a fresh inner mini-batch.

    ``hvp(v)`` / ``mixed(v)`` draw a new batch with ``sample()`` per call (the stochastic
    Neumann series of StocBiO / TTSA use independent batches per factor); when the sampler
    returns None (full batch) one :class:`~blobench.autodiff.InnerDerivatives` is built once
    and reused, so deterministic runs pay one graph, not one per product.
    """

    def __init__(self, problem: Problem, theta: Tensor, lam: Tensor,
                 sample: Callable[[], Batch]) -> None:
        self.problem, self.theta, self.lam, self.sample = problem, theta, lam, sample
        self._full: InnerDerivatives | None = None

    def ops(self) -> InnerDerivatives:
        batch = self.sample()
        if batch is not None:
            return InnerDerivatives(self.problem, self.theta, self.lam, batch)
        if self._full is None:
            self._full = InnerDerivatives(self.problem, self.theta, self.lam, None)
        return self._full

    def hvp(self, v: Tensor) -> Tensor:
        return self.ops().hvp(v)

    def mixed(self, v: Tensor) -> Tensor:
        return self.ops().mixed(v)


def finite_sum_reason(problem: type[Problem] | Any) -> str | None:
    """None when the problem declares ``n_inner_samples`` and ``n_outer_samples``, else why.

    Given a class without them as class attributes, its quick-size instance is asked instead
    (they are often set in ``build`` from the data sizes; built once and remembered:
    :func:`blobench.bases.quick_facts.quick_facts`). Without the data, or if it cannot be
    built, the cell itself decides.
    """
    names = ("n_inner_samples", "n_outer_samples")
    missing = [a for a in names if not hasattr(problem, a)]
    if missing and isinstance(problem, type):
        facts = quick_facts(problem)
        if facts is None:
            return None
        missing = [a for a in names if not facts["has"].get(a, False)]
    if missing:
        return ("needs a finite-sum problem whose samplers return index tensors "
                f"(declare {' and '.join(missing)})")
    return None

