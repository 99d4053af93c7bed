"""Shared autodiff primitives: every algorithm computes its derivatives through these.

Notation: inner loss g(θ, λ), outer loss f(θ, λ), H = ∇²_θθ g, J = ∇²_λθ g (the mixed second
derivative, shape dim λ × dim θ). The implicit function theorem gives the hypergradient

    dF/dλ = ∇_λ f − J H⁻¹ ∇_θ f                                    (IFT; Pedregosa 2016, eq. 3)

The package, by job (issue 19); every name is re-exported here, so ``from blobench import
autodiff; autodiff.X`` is the import path of plugins and tests:

- :mod:`~blobench.autodiff.derivatives` — gradients and the H v / J v products of
  :class:`InnerDerivatives` (one graph of ∇_θ g reused by every product of a solve: a k-step
  CG solve costs k + O(1) gradient evaluations), analytic oracles, :func:`mixed_fd`; oracle
  calls counted in :data:`oracle_counts` (``grad_inner``, ``grad_outer``, ``hvp``, ``mixed``);
- :mod:`~blobench.autodiff.linear` — CG (with its singular-H fallback), Neumann, fixed point,
  least-squares gradient descent, dense pseudo-inverse solves;
- :mod:`~blobench.autodiff.implicit` — the IFT hypergradient, and its proximal fixed-point
  form for constrained lower levels;
- :mod:`~blobench.autodiff.solvers` — the inner solvers (:class:`InnerSolver`: gd, heavy
  ball, Adam, BDA), the prox after every step, the no-graph inner loops;
- :mod:`~blobench.autodiff.unrolling` — reverse mode through the T steps (RHG, with the
  explicit adjoint recursion when the problem has the three inner oracles), forward mode (FHG),
  BDA's aggregation.

Analytic oracles: a problem may override ``inner_grad_oracle``, ``inner_hessian_operator``,
``mixed_oracle`` and ``outer_grads_oracle`` (:class:`~blobench.contracts.problem.Problem`);
the gradients, :class:`InnerDerivatives` and the inner loops use them instead of autograd (a
call answered ``NotImplemented`` falls back to autodiff), checked against autodiff in
tests/test_oracles.py, cost ratios measured by ``blobench bench``.

A test that replaces a primitive (monkeypatch) replaces it in the submodule that calls it,
e.g. ``autodiff.solvers.inner_grad`` for the inner loops.
"""

from __future__ import annotations

from blobench.autodiff.derivatives import (  # noqa: F401
    _ORACLES,
    InnerDerivatives,
    _autodiff_inner_grad,
    _call_oracle,
    _grads_or_zeros,
    _leaf,
    _oracle_cache,
    _oracles,
    _zeros_if_none,
    inner_grad,
    inner_grads,
    mixed_fd,
    oracle_counts,
    outer_grads,
)
from blobench.autodiff.implicit import (  # noqa: F401
    FreeCoordinates,
    implicit_hypergradient,
    prox_separable,
)
from blobench.autodiff.linear import (  # noqa: F401
    CG_CURVATURE_EPS,
    CG_RESIDUAL_GROWTH,
    _cg_iterations,
    _host,
    _no_grad_needed,
    cg,
    cg_normal,
    dense_solve,
    fixed_point,
    least_squares_gd,
    neumann,
)
from blobench.autodiff.solvers import (  # noqa: F401
    GD,
    INNER_SOLVERS,
    InnerSolver,
    _outer_theta_grad,
    _solver,
    _sqrt0,
    gradient_descent,
    has_inner_prox,
    inner_prox,
    inner_solve,
)
from blobench.autodiff.unrolling import (  # noqa: F401
    _REVERSE_ORACLES,
    _forward_unroll_solver,
    _ReverseUnroll,
    aggregated_unroll,
    forward_unroll,
    outer_hypergradient,
    unroll,
)

__all__ = [n for n in dir() if not n.startswith('__') and n != 'annotations']
