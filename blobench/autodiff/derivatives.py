"""Derivatives of a problem's losses: gradients, and H v / J v products sharing one graph.

Gradients ∇_θ g, (∇_θ g, ∇_λ g), (∇_θ f, ∇_λ f) — detached, counted in :data:`oracle_counts` —
and :class:`InnerDerivatives`, the Hessian-vector and mixed products at a point (H v = ∇²_θθ g·v,
J v = ∇²_λθ g·v), each a vector-Jacobian product of ∇_θ g computed once with ``create_graph``,
or the problem's analytic oracle (``inner_grad_oracle``, ``inner_hessian_operator``,
``mixed_oracle``, ``outer_grads_oracle``; ``NotImplemented`` falls back to autograd). Also
J v by central finite differences (:func:`mixed_fd`, DARTS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch

from blobench.contracts.problem import Batch, Problem

Tensor = torch.Tensor
MatVec = Callable[[Tensor], Tensor]

#: oracle calls since the last reset (the harness resets it per cell)
oracle_counts: Counter[str] = Counter()


def _leaf(x: Tensor) -> Tensor:
    return x.detach().requires_grad_(True)


_ORACLES = ("inner_grad_oracle", "inner_hessian_operator", "mixed_oracle", "outer_grads_oracle")
_oracle_cache: dict[type, frozenset[str]] = {}


def _oracles(problem: Problem) -> frozenset[str]:
    """The analytic oracles this problem's class overrides (cached per class)."""
    cls = type(problem)
    found = _oracle_cache.get(cls)
    if found is None:
        found = frozenset(m for m in _ORACLES
                          if getattr(cls, m, None) is not getattr(Problem, m, None))
        _oracle_cache[cls] = found
    return found


def _call_oracle(problem: Problem, hook: str, *args: object) -> object:
    """The problem's analytic oracle ``hook`` called without recording a graph, or
    ``NotImplemented`` when the problem has none (or declines this call)."""
    if hook not in _oracles(problem):
        return NotImplemented
    with torch.no_grad():
        return getattr(problem, hook)(*args)


def _autodiff_inner_grad(problem: Problem, theta: Tensor, lam: Tensor, batch: Batch) -> Tensor:
    theta = _leaf(theta)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(problem.inner_loss(theta, lam.detach(), batch), theta)
    return g


# --------------------------------------------------------------------- first order
def inner_grad(problem: Problem, theta: Tensor, lam: Tensor, batch: Batch = None) -> Tensor:
    """∇_θ g(θ, λ), detached (the problem's analytic oracle when it has one)."""
    oracle_counts["grad_inner"] += 1
    g = _call_oracle(problem, "inner_grad_oracle", theta.detach(), lam.detach(), batch)
    return _autodiff_inner_grad(problem, theta, lam, batch) if g is NotImplemented else g


def inner_grads(problem: Problem, theta: Tensor, lam: Tensor, batch: Batch = None
                ) -> tuple[Tensor, Tensor]:
    """(∇_θ g, ∇_λ g), detached: one backward pass."""
    oracle_counts["grad_inner"] += 1
    theta, lam = _leaf(theta), _leaf(lam)
    with torch.enable_grad():
        return _grads_or_zeros(problem.inner_loss(theta, lam, batch), (theta, lam))


def outer_grads(problem: Problem, theta: Tensor, lam: Tensor, batch: Batch = None
                ) -> tuple[Tensor, Tensor]:
    """(∇_θ f, ∇_λ f), detached: one backward pass (or the problem's analytic oracle)."""
    oracle_counts["grad_outer"] += 1
    out = _call_oracle(problem, "outer_grads_oracle", theta.detach(), lam.detach(), batch)
    if out is not NotImplemented:
        return out
    theta, lam = _leaf(theta), _leaf(lam)
    with torch.enable_grad():
        return _grads_or_zeros(problem.outer_loss(theta, lam, batch), (theta, lam))


def _zeros_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def _grads_or_zeros(output: Tensor, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """∂output/∂input for each input, zeros where the output does not depend on it (also when
    it depends on none of them, e.g. ∇_λ g of a problem whose λ enters only θ₀)."""
    if not output.requires_grad:
        return tuple(torch.zeros_like(x) for x in inputs)
    grads = torch.autograd.grad(output, inputs, allow_unused=True)
    return tuple(_zeros_if_none(g, x) for g, x in zip(grads, inputs, strict=True))


# -------------------------------------------------------------------- second order
class InnerDerivatives:
    """H v and J v at a fixed (θ, λ), reusing one graph of ∇_θ g for every product.

    ``hvp(v)``   = ∇²_θθ g · v         (dim θ)
    ``mixed(v)`` = ∇²_λθ g · v         (dim λ) — the J of the IFT formula above
    ``grad``     = ∇_θ g (detached), available for free.

    ``counted=False`` keeps its products out of :data:`oracle_counts` (the reverse pass of
    :func:`unroll`, whose cost is counted like autograd's: one gradient per step).

    When the problem has analytic oracles (``inner_hessian_operator`` / ``mixed_oracle``) the
    products use them (the operator is built once, at the first product), and the graph of
    ∇_θ g is only built if a product without an oracle (or a dense matrix) is asked for.
    """

    def __init__(self, problem: Problem, theta: Tensor, lam: Tensor, batch: Batch = None,
                 counted: bool = True):
        self._counts = oracle_counts if counted else Counter()
        self._counts["grad_inner"] += 1
        self.problem, self.batch = problem, batch
        self.theta, self.lam = _leaf(theta), _leaf(lam)
        self._theta, self._lam = theta.detach(), lam.detach()  # what the oracles see
        oracles = _oracles(problem)
        self._hvp_oracle = "inner_hessian_operator" in oracles
        self._hessian: MatVec | None = None
        self._mixed_oracle = "mixed_oracle" in oracles
        self._grad_oracle = "inner_grad_oracle" in oracles
        self._grad: Tensor | None = None
        self._grad_value: Tensor | None = None
        if not (self._hvp_oracle and self._mixed_oracle and self._grad_oracle):
            self._graph()  # products by autodiff share this graph

    @property
    def grad(self) -> Tensor:
        """∇_θ g (detached): from the graph when there is one, else the oracle (on first use)."""
        if self._grad_value is None:
            value = NotImplemented
            if self._grad is None and self._grad_oracle:
                value = self.problem.inner_grad_oracle(self._theta, self._lam, self.batch)
            self._grad_value = (self._graph().detach() if value is NotImplemented
                                else value.detach())
        return self._grad_value

    def _graph(self) -> Tensor:
        """∇_θ g with ``create_graph`` (built on first use, then reused)."""
        if self._grad is None:
            with torch.enable_grad():
                (self._grad,) = torch.autograd.grad(
                    self.problem.inner_loss(self.theta, self.lam, self.batch), self.theta,
                    create_graph=True)
        return self._grad

    def hvp(self, v: Tensor) -> Tensor:
        self._counts["hvp"] += 1
        if self._hessian is not None:
            return self._hessian(v)
        if self._hvp_oracle:
            operator = self.problem.inner_hessian_operator(self._theta, self._lam, self.batch)
            if operator is not NotImplemented:
                self._hessian = operator
                return operator(v)
            self._hvp_oracle = False
        (out,) = torch.autograd.grad(self._graph(), self.theta, v, retain_graph=True,
                                     allow_unused=True)
        return _zeros_if_none(out, self.theta)

    def mixed(self, v: Tensor) -> Tensor:
        self._counts["mixed"] += 1
        if self._mixed_oracle:
            out = self.problem.mixed_oracle(self._theta, self._lam, v, self.batch)
            if out is not NotImplemented:
                return out
            self._mixed_oracle = False
        (out,) = torch.autograd.grad(self._graph(), self.lam, v, retain_graph=True,
                                     allow_unused=True)
        return _zeros_if_none(out, self.lam)

    def dense_hessian(self) -> Tensor:
        """H as a dense (dim θ × dim θ) matrix, one batched product per column."""
        eye = torch.eye(self.theta.numel(), dtype=self.theta.dtype, device=self.theta.device)
        self._counts["hvp"] += eye.shape[0]
        (h,) = torch.autograd.grad(self._graph(), self.theta, eye, retain_graph=True,
                                   is_grads_batched=True)
        return 0.5 * (h + h.T)

    def dense_mixed(self) -> Tensor:
        """J as a dense (dim λ × dim θ) matrix."""
        eye = torch.eye(self.theta.numel(), dtype=self.theta.dtype, device=self.theta.device)
        self._counts["mixed"] += eye.shape[0]
        (jt,) = torch.autograd.grad(self._graph(), self.lam, eye, retain_graph=True,
                                    is_grads_batched=True, allow_unused=True)
        if jt is None:
            return torch.zeros(self.lam.numel(), self.theta.numel(), dtype=self.lam.dtype,
                               device=self.lam.device)
        return jt.T  # row i of jt is J e_i, i.e. column i of J


def mixed_fd(problem: Problem, theta: Tensor, lam: Tensor, v: Tensor, eps: float,
             batch: Batch = None) -> Tensor:
    """J v ≈ (∇_λ g(θ + εv, λ) − ∇_λ g(θ − εv, λ)) / (2ε), by central finite differences.

    The mixed second derivative J = ∇²_λθ g applied to v with two gradient evaluations and no
    second-order autodiff (DARTS, Liu et al. 2019, eq. 8). Error O(ε² ‖v‖³) for smooth g; exact
    (up to rounding) when ∇_λ g is at most quadratic in θ.
    """
    def grad_lam(t: Tensor) -> Tensor:
        oracle_counts["grad_inner"] += 1
        lam_ = _leaf(lam)
        with torch.enable_grad():
            return _grads_or_zeros(problem.inner_loss(t.detach(), lam_, batch), (lam_,))[0]

    return (grad_lam(theta + eps * v) - grad_lam(theta - eps * v)) / (2.0 * eps)
