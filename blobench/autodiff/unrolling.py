"""Differentiating the T-step map of an inner solver: reverse mode (:func:`unroll`, RHG; with
the three inner oracles and gd, the explicit adjoint recursion :class:`_ReverseUnroll`), the
outer derivative through it (:func:`outer_hypergradient`), forward mode with the tangents of
the solver's state (:func:`forward_unroll`, FHG), and BDA's aggregated steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from blobench.autodiff.derivatives import (
    InnerDerivatives,
    _autodiff_inner_grad,
    _grads_or_zeros,
    _oracles,
    inner_grad,
    oracle_counts,
    outer_grads,
)
from blobench.autodiff.solvers import (
    InnerSolver,
    _outer_theta_grad,
    _solver,
    has_inner_prox,
    inner_prox,
)
from blobench.contracts.problem import Batch, Problem

Tensor = torch.Tensor


def unroll(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
           sample: Callable[[], Batch] | None = None,
           solver: InnerSolver | str | None = None, state: tuple[Tensor, ...] | None = None,
           start: int = 0, sample_outer: Callable[[], Batch] | None = None) -> Tensor:
    """θ_T of T steps of ``solver`` (:class:`InnerSolver`, default gd; each step followed by the
    problem's prox), differentiable w.r.t. λ (and θ₀ when it is a function of λ).

    Reverse-mode differentiation of f(θ_T(λ), λ) through this map is the RHG hypergradient
    (Maclaurin et al. 2015; Franceschi et al. 2017, Alg. 1); its memory grows with T. With
    heavy ball or Adam the graph holds the solver's update itself (velocity, moments and bias
    corrections), so the derivative is that of the map that ran. ``lam`` must require grad
    for the graph to reach it. ``state``/``start`` resume a solve (the state is then a
    constant: truncation). When the solver is gd, the problem has all three inner oracles and
    no prox and ``lr`` is a number, the T steps are one :class:`_ReverseUnroll` node (plain
    forward steps, the adjoint recursion on the way back); else a problem's
    ``inner_grad_oracle`` (a differentiable torch expression) or autograd's double-backward
    graph is recorded step by step.
    """
    solver = _solver(solver)
    batches = [sample() if sample is not None else None for _ in range(steps)]
    if (solver.name == "gd" and isinstance(lr, float) and _REVERSE_ORACLES <= _oracles(problem)
            and not has_inner_prox(problem)):
        oracle_counts["grad_inner"] += steps
        with torch.enable_grad():
            return _ReverseUnroll.apply(theta, lam, problem, lr, batches)
    with torch.enable_grad():
        if not theta.requires_grad:
            theta = theta.detach().requires_grad_(True)
        state = solver.init(theta) if state is None else tuple(s.detach() for s in state)
        oracle = "inner_grad_oracle" in _oracles(problem)
        for t, batch in enumerate(batches, start):
            oracle_counts["grad_inner"] += 1
            g = problem.inner_grad_oracle(theta, lam, batch) if oracle else NotImplemented
            if g is NotImplemented:
                (g,) = torch.autograd.grad(problem.inner_loss(theta, lam, batch), theta,
                                           create_graph=True)
            f_grad = None
            if solver.needs_outer and solver.weight(t) != 0.0:
                f_grad = _outer_theta_grad(problem, theta, lam,
                                           sample_outer() if sample_outer is not None else None,
                                           create_graph=True)
            theta, state = solver.step(theta, state, g, lr, t, f_grad)
            theta = inner_prox(problem, theta, lam, lr)
    return theta


_REVERSE_ORACLES = frozenset({"inner_grad_oracle", "inner_hessian_operator", "mixed_oracle"})


class _ReverseUnroll(torch.autograd.Function):
    """θ_T = Φ_T ∘ … ∘ Φ_1(θ₀) with Φ_t(θ) = θ − η ∇_θ g(θ, λ), and its exact reverse pass.

    Forward: the T steps without a graph, keeping θ_0 … θ_{T−1}. Backward, from a_T = ∂f/∂θ_T
    (Franceschi et al. 2017, Alg. 1, reverse-HG): the adjoint of a step is its transposed
    Jacobian, ∂Φ_t/∂θ = I − η H_t (H symmetric) and ∂Φ_t/∂λ = −η J_tᵀ (J is dim λ × dim θ, as
    in the module notation), so

        d_λ ← d_λ − η J_t a_{t+1},    a_t = a_{t+1} − η H_t a_{t+1},     t = T−1, …, 0

    returning (a_0, d_λ) as the gradients of θ₀ and λ: the same numbers as autograd through
    the T steps (tests/test_oracles.py), but two oracle products per step instead of the
    replay of every recorded operation, and only the T iterates stored.
    Once differentiable: MAML-style second derivatives through it are not available (problems
    with all three inner oracles do not have θ₀ depending on λ through another graph that
    needs them).
    """

    @staticmethod
    def forward(ctx, theta0: Tensor, lam: Tensor, problem: Problem, lr: float,
                batches: list[Batch]) -> Tensor:
        iterates = []
        theta = theta0.detach()
        for batch in batches:
            iterates.append(theta)
            g = problem.inner_grad_oracle(theta, lam, batch)
            if g is NotImplemented:
                g = _autodiff_inner_grad(problem, theta, lam, batch)
            theta = torch.add(theta, g, alpha=-lr)
        ctx.save_for_backward(lam, *iterates)
        ctx.problem, ctx.lr, ctx.batches = problem, lr, batches
        return theta

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, adjoint: Tensor) -> tuple[Tensor | None, ...]:
        lam, *iterates = ctx.saved_tensors
        problem, lr = ctx.problem, ctx.lr
        a = adjoint.clone()
        d_lam = torch.zeros_like(lam)
        for theta, batch in zip(reversed(iterates), reversed(ctx.batches), strict=True):
            mixed = problem.mixed_oracle(theta, lam, a, batch)
            hessian = problem.inner_hessian_operator(theta, lam, batch)
            if mixed is NotImplemented or hessian is NotImplemented:  # autodiff for this step
                ops = InnerDerivatives(problem, theta, lam, batch, counted=False)
                mixed, hessian = ops.mixed(a), ops.hvp
            d_lam.sub_(mixed, alpha=lr)
            a.sub_(hessian(a), alpha=lr)
        return a, d_lam, None, None, None


def outer_hypergradient(problem: Problem, theta_of_lam: Tensor, lam: Tensor,
                        batch: Batch = None) -> Tensor:
    """d f(θ(λ), λ) / dλ = ∇_λ f + (dθ/dλ)ᵀ ∇_θ f by reverse mode, for θ(λ) built with a graph
    (e.g. by :func:`unroll`). With the problem's ``outer_grads_oracle`` the backward pass starts
    at θ(λ) with ∇_θ f (no graph of f is recorded)."""
    if "outer_grads_oracle" in _oracles(problem):
        f_theta, f_lam = outer_grads(problem, theta_of_lam, lam, batch)  # counted there
        if not theta_of_lam.requires_grad:
            return f_lam
        (hg,) = torch.autograd.grad(theta_of_lam, lam, f_theta, allow_unused=True)
        return f_lam if hg is None else f_lam + hg
    oracle_counts["grad_outer"] += 1
    with torch.enable_grad():
        return _grads_or_zeros(problem.outer_loss(theta_of_lam, lam, batch), (lam,))[0]


def forward_unroll(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
                   tangent: Tensor | None = None, sample: Callable[[], Batch] | None = None,
                   chunk_size: int | None = None, solver: InnerSolver | str | None = None,
                   state: tuple[Tensor, ...] | None = None, start: int = 0,
                   sample_outer: Callable[[], Batch] | None = None) -> tuple[Tensor, Tensor]:
    """(θ_T, Z_T) of T inner steps with the tangent Z_t = dθ_t/dλ carried forward.

    Forward-mode differentiation of the inner dynamics (Franceschi et al. 2017, Alg. 2, FHG).
    For gd on a smooth lower level:

        θ_{t+1} = θ_t − η ∇_θ g(θ_t, λ)
        Z_{t+1} = Z_t − η (H_t Z_t + J_tᵀ),    H_t = ∇²_θθ g(θ_t, λ),  J_tᵀ = ∇²_θλ g(θ_t, λ)

    Z has shape (dim θ × dim λ); ``tangent`` is Z_0 (zeros when None, i.e. θ₀ independent of λ).
    Each column of H_t Z_t + J_tᵀ is one Jacobian-vector product of the map (θ, λ) ↦ ∇_θ g
    along (Z_t e_i, e_i) (forward-over-reverse, ``torch.func.jvp``), batched over the dim λ
    columns with ``torch.func.vmap`` (``chunk_size`` columns at a time; None = all at once).
    No Hessian is formed. Cost per step: one gradient + dim λ JVPs; memory O(dim θ · dim λ),
    independent of T.

    Any other ``solver`` (:class:`InnerSolver`: heavy ball, Adam, BDA) or a problem with a prox:
    the JVP is taken of the whole step (θ_t, s_t, λ) ↦ (θ_{t+1}, s_{t+1}) — gradient, solver
    update, prox — so the tangents of the solver's state s (the previous iterate, Adam's
    moments) are carried too: Z_t^s = ds_t/dλ, starting from the JVP of ``solver.init`` along
    Z_0 (the previous iterate's tangent is Z_0, the moments' zero; zeros for a resumed
    ``state``, a constant as in truncation).
    """
    solver = _solver(solver)
    theta, lam = theta.detach(), lam.detach()
    n_lam = lam.numel()
    z = (torch.zeros(theta.numel(), n_lam, dtype=theta.dtype, device=theta.device)
         if tangent is None else tangent.detach().reshape(theta.numel(), n_lam))
    eye = torch.eye(n_lam, dtype=lam.dtype, device=lam.device)
    if solver.name != "gd" or has_inner_prox(problem):
        return _forward_unroll_solver(problem, theta, lam, steps, lr, z, eye, sample,
                                      chunk_size, solver, state, start, sample_outer)
    for _ in range(steps):
        batch = sample() if sample is not None else None

        def grad_theta(t: Tensor, lam_: Tensor, batch: Batch = batch) -> Tensor:
            return torch.func.grad(lambda t_: problem.inner_loss(t_, lam_, batch))(t)

        def column(z_col: Tensor, e_col: Tensor, t: Tensor = theta,
                   grad_theta: Callable[..., Tensor] = grad_theta) -> Tensor:
            return torch.func.jvp(grad_theta, (t, lam), (z_col, e_col))[1]

        with torch.enable_grad():
            products = torch.func.vmap(column, in_dims=(1, 0), out_dims=1,
                                       chunk_size=chunk_size)(z, eye)
        oracle_counts["hvp"] += n_lam
        oracle_counts["mixed"] += n_lam
        g = inner_grad(problem, theta, lam, batch)
        z = z - lr * products.detach()
        theta = theta - lr * g
    return theta, z


def _forward_unroll_solver(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
                           z: Tensor, eye: Tensor, sample: Callable[[], Batch] | None,
                           chunk_size: int | None, solver: InnerSolver,
                           state: tuple[Tensor, ...] | None, start: int,
                           sample_outer: Callable[[], Batch] | None) -> tuple[Tensor, Tensor]:
    """:func:`forward_unroll` for a solver with state, BDA's ∇_θ f term or a prox: tangents
    of the whole step, the solver's state included."""
    n_lam = lam.numel()
    if state is None:  # init is linear in θ (θ itself or zeros): its tangent is init(Z_0)
        state, z_state = solver.init(theta), solver.init(z)
    else:
        state = tuple(s.detach() for s in state)
        z_state = tuple(torch.zeros(s.numel(), n_lam, dtype=s.dtype, device=s.device)
                        for s in state)
    for t in range(start, start + steps):
        batch = sample() if sample is not None else None
        outer = solver.needs_outer and solver.weight(t) != 0.0
        outer_batch = sample_outer() if outer and sample_outer is not None else None

        def full_step(th: Tensor, st: tuple[Tensor, ...], lam_: Tensor, t: int = t,
                      batch: Batch = batch, outer_batch: Batch = outer_batch, outer: bool = outer
                      ) -> tuple[Tensor, tuple[Tensor, ...]]:
            g = torch.func.grad(lambda t_: problem.inner_loss(t_, lam_, batch))(th)
            fg = (torch.func.grad(lambda t_: problem.outer_loss(t_, lam_, outer_batch))(th)
                  if outer else None)
            new, st = solver.step(th, st, g, lr, t, fg)
            return inner_prox(problem, new, lam_, lr), st

        def column(zt: Tensor, zs: tuple[Tensor, ...], e: Tensor, th: Tensor = theta,
                   st: tuple[Tensor, ...] = state, full_step: Callable[..., tuple] = full_step
                   ) -> tuple[Tensor, tuple[Tensor, ...]]:
            return torch.func.jvp(full_step, (th, st, lam), (zt, zs, e))[1]

        with torch.enable_grad():
            z, z_state = torch.func.vmap(column, in_dims=(1, 1, 0), out_dims=1,
                                         chunk_size=chunk_size)(z, z_state, eye)
        oracle_counts["hvp"] += n_lam
        oracle_counts["mixed"] += n_lam
        g = inner_grad(problem, theta, lam, batch)
        f_grad = (_outer_theta_grad(problem, theta, lam, outer_batch, create_graph=False)
                  if outer else None)
        theta, state = solver.step(theta, state, g, lr, t, f_grad)
        theta = inner_prox(problem, theta, lam, lr)
        z, z_state = z.detach(), tuple(zs.detach() for zs in z_state)
    return theta, z


def aggregated_unroll(problem: Problem, theta: Tensor, lam: Tensor, steps: int, lr: float,
                      upper_lr: float, weights: list[float],
                      sample: Callable[[], Batch] | None = None,
                      sample_outer: Callable[[], Batch] | None = None) -> Tensor:
    """θ_T of T aggregated descent steps, differentiable w.r.t. λ (BDA, Liu et al. 2020):

        θ_{t+1} = θ_t − [(1 − α_t) s_l ∇_θ g(θ_t, λ) + α_t s_u ∇_θ f(θ_t, λ)]

    with s_l = ``lr``, s_u = ``upper_lr`` and α_t = ``weights[t]``: :func:`unroll` with the
    ``bda`` :class:`InnerSolver`. A step with α_t = 0 is exactly a step of gd (the f term is
    then not evaluated).
    """
    if len(weights) != steps:
        raise ValueError(f"aggregated_unroll: {len(weights)} weights for {steps} steps")
    solver = InnerSolver("bda", upper_lr=upper_lr, weights=tuple(float(w) for w in weights))
    return unroll(problem, theta, lam, steps, lr, sample=sample, solver=solver,
                  sample_outer=sample_outer)
