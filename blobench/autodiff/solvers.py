"""The inner solvers (issue 21) and the no-graph inner loops: :class:`InnerSolver` (gd, heavy
ball, Adam, BDA aggregation) as one update rule in differentiable torch operations, the
problem's prox after every step (issue 22), :func:`inner_solve` and :func:`gradient_descent`.
Reverse and forward mode through the same updates are in :mod:`blobench.autodiff.unrolling`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from blobench.autodiff.derivatives import _zeros_if_none, inner_grad, oracle_counts, outer_grads
from blobench.contracts.problem import Batch, Problem

Tensor = torch.Tensor


#: the update rules of the lower level (issue 21); ``bda`` needs ∇_θ f as well
INNER_SOLVERS = ("gd", "momentum", "adam", "bda")


def has_inner_prox(problem: Problem | type[Problem]) -> bool:
    """Whether the problem (instance or class) overrides :meth:`Problem.inner_prox`: its lower
    level is constrained or has a non-smooth part, and every inner step ends with its prox."""
    cls = problem if isinstance(problem, type) else type(problem)
    return getattr(cls, "inner_prox", None) is not getattr(Problem, "inner_prox", None)


def inner_prox(problem: Problem, theta: Tensor, lam: Tensor, lr: float | Tensor) -> Tensor:
    """prox_{η r}(θ) of the problem's non-smooth part (:meth:`Problem.inner_prox`), or θ itself
    for a smooth, unconstrained lower level. Differentiable (clamp, soft-threshold) when the
    problem writes it in torch operations, as its contract asks."""
    if not has_inner_prox(problem):
        return theta
    out = problem.inner_prox(theta, lam, lr)
    return theta if out is NotImplemented else out


def _sqrt0(x: Tensor) -> Tensor:
    """√x with derivative 0 where x = 0 (Adam's v̂ of a coordinate whose gradient is exactly 0:
    √(c g²) = √c |g| is not differentiable at g = 0 and 0 is a subgradient; autograd's ∞ · 0
    would give NaN)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(),
                       torch.zeros_like(x))


@dataclass(frozen=True)
class InnerSolver:
    """One update rule of the lower level, with its state, in out-of-place differentiable
    torch operations: the same code is the no-graph inner loop (:func:`inner_solve`), the
    recorded graph of reverse mode (:func:`unroll`) and the map whose Jacobian-vector products
    forward mode propagates (:func:`forward_unroll`), so every estimator differentiates the
    update that actually ran. Step t = 0, 1, … from θ_0, step size η, g_t = ∇_θ g(θ_t, λ):

    - ``gd``: θ_{t+1} = θ_t − η g_t;
    - ``momentum`` (heavy ball, Polyak 1964): θ_{t+1} = θ_t − η g_t + β (θ_t − θ_{t−1}),
      θ_{−1} = θ_0, β = ``momentum``; state (θ_{t−1},);
    - ``adam`` (Kingma & Ba 2015, Alg. 1): m_{t+1} = β₁ m_t + (1 − β₁) g_t,
      v_{t+1} = β₂ v_t + (1 − β₂) g_t², θ_{t+1} = θ_t − η m̂ / (√v̂ + ε) with the bias
      corrections m̂ = m_{t+1}/(1 − β₁^{t+1}), v̂ = v_{t+1}/(1 − β₂^{t+1}); state (m_t, v_t),
      m_0 = v_0 = 0;
    - ``bda`` (Liu et al. 2020, Alg. 1, aggregation): θ_{t+1} = θ_t − [(1 − α_t) η g_t
      + α_t s_u ∇_θ f(θ_t, λ)], α_t = α₀/(t + 1), s_u = ``upper_lr`` (None: η).

    On a lower level with a non-smooth part r (:meth:`Problem.inner_prox`) each update is
    followed by prox_{η r}: proximal gradient (gd, bda), projected heavy ball (momentum) and
    projected Adam (adam: the Euclidean prox after the preconditioned step). The fixed points of
    the first two are the constrained minimizers (θ = prox_{ηr}(θ − η ∇g)). Projected Adam's are
    too when r is the indicator of a box (separable: coordinate i of m̂/(√v̂+ε) has the sign of
    g_i, so θ_i stays fixed exactly where g_i = 0 or θ_i sits on the bound it pushes against);
    for a regularizer (η‖θ‖₁) or a non-separable set (simplex) it is not the proximal step of
    Adam's metric and its fixed point differs: use gd or momentum there.

    The solver's state starts fresh at each inner solve (at θ_0 of that outer step); ``start``
    offsets t (the truncated estimator resumes an inner solve after its no-graph steps).
    """

    name: str = "gd"
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    alpha0: float = 0.5
    upper_lr: float | None = None
    #: BDA's α_t given step by step (None: α₀/(t + 1))
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.name not in INNER_SOLVERS:
            raise ValueError(f"unknown inner solver {self.name!r} (one of {INNER_SOLVERS})")

    @property
    def needs_outer(self) -> bool:
        """Whether a step reads ∇_θ f (BDA's aggregation)."""
        return self.name == "bda" and (any(self.weights) if self.weights is not None
                                       else self.alpha0 != 0.0)

    def init(self, theta: Tensor) -> tuple[Tensor, ...]:
        """The solver's state at θ_0."""
        if self.name == "momentum":
            return (theta,)
        if self.name == "adam":
            return (torch.zeros_like(theta), torch.zeros_like(theta))
        return ()

    def weight(self, t: int) -> float:
        """BDA's aggregation weight α_t: ``weights[t]`` when given, else α₀/(t + 1)."""
        return self.weights[t] if self.weights is not None else self.alpha0 / (t + 1)

    def step(self, theta: Tensor, state: tuple[Tensor, ...], g: Tensor, lr: float | Tensor,
             t: int, f_grad: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(θ_{t+1} before the prox, the new state) from θ_t, the state and g_t."""
        if self.name == "momentum":
            (previous,) = state
            return theta - lr * g + self.momentum * (theta - previous), (theta,)
        if self.name == "adam":
            b1, b2 = self.betas
            m, v = state
            m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
            return theta - lr * m_hat / (_sqrt0(v_hat) + self.eps), (m, v)
        if self.name == "bda":
            alpha = self.weight(t)
            step = ((1.0 - alpha) * lr) * g
            if f_grad is not None and alpha != 0.0:
                upper = lr if self.upper_lr is None else self.upper_lr
                step = step + (alpha * upper) * f_grad
            return theta - step, state
        if isinstance(lr, float):
            return torch.add(theta, g, alpha=-lr), state
        return theta - lr * g, state


GD = InnerSolver()


def _solver(solver: InnerSolver | str | None) -> InnerSolver:
    if solver is None:
        return GD
    return InnerSolver(solver) if isinstance(solver, str) else solver


def _outer_theta_grad(problem: Problem, theta: Tensor, lam: Tensor, batch: Batch,
                      create_graph: bool) -> Tensor:
    """∇_θ f at θ: detached (no graph) or with its graph (``create_graph``), counted."""
    if not create_graph:
        return outer_grads(problem, theta, lam, batch)[0]
    oracle_counts["grad_outer"] += 1
    (fg,) = torch.autograd.grad(problem.outer_loss(theta, lam, batch), theta,
                                create_graph=True, allow_unused=True)
    return _zeros_if_none(fg, theta)


def inner_solve(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
                solver: InnerSolver | str | None = None,
                sample: Callable[[], Batch] | None = None,
                sample_outer: Callable[[], Batch] | None = None,
                state: tuple[Tensor, ...] | None = None, start: int = 0,
                return_state: bool = False
                ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
    """``steps`` steps of ``solver`` (:class:`InnerSolver`, default gd) on g(·, λ), each followed
    by the problem's prox (:func:`inner_prox`), no graph kept. ``state`` (None: fresh at θ) and
    ``start`` resume a solve; ``return_state`` also returns the solver's state at the end."""
    solver = _solver(solver)
    if solver.name == "gd" and state is None and not return_state:
        return gradient_descent(problem, theta, lam, steps, lr, sample=sample)
    theta, lam = theta.detach(), lam.detach()
    state = solver.init(theta) if state is None else tuple(s.detach() for s in state)
    for t in range(start, start + steps):
        g = inner_grad(problem, theta, lam, sample() if sample is not None else None)
        f_grad = None
        if solver.needs_outer and solver.weight(t) != 0.0:
            f_grad = _outer_theta_grad(problem, theta, lam,
                                       sample_outer() if sample_outer is not None else None,
                                       create_graph=False)
        theta, state = solver.step(theta, state, g, lr, t, f_grad)
        theta = inner_prox(problem, theta, lam, lr)
    return (theta, state) if return_state else theta


def gradient_descent(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
                     sample: Callable[[], Batch] | None = None) -> Tensor:
    """``steps`` plain gradient steps θ ← θ − lr ∇_θ g(θ, λ), no graph kept; on a problem with
    :meth:`~Problem.inner_prox`, proximal gradient steps θ ← prox_{lr·r}(θ − lr ∇_θ g)."""
    theta = theta.detach()
    prox = has_inner_prox(problem)
    for _ in range(steps):
        batch = sample() if sample is not None else None
        g = inner_grad(problem, theta, lam, batch)
        theta = torch.add(theta, g, alpha=-lr) if isinstance(lr, float) else theta - lr * g
        if prox:
            theta = inner_prox(problem, theta, lam.detach(), lr)
    return theta
