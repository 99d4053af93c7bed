"""Linear solvers for v ≈ A⁻¹ b with A given as a product v ↦ A v (the Hessian of the IFT):
conjugate gradient with its breakdown fallback to the normal equations (:func:`cg`,
:func:`cg_normal`), the Neumann series, the fixed-point iteration, gradient descent on the
squared residual (ApproxGrad) and the dense pseudo-inverse.

Performance notes (measured by ``blobench bench``): the solvers update their vectors in place
(no allocation per iteration, which matters for large θ) whenever nothing they touch requires
grad; the only host-side reads in their loops are the stopping tests of CG.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor
MatVec = Callable[[Tensor], Tensor]


def _no_grad_needed(*tensors: Tensor) -> bool:
    """True when in-place updates of these tensors cannot break a graph being recorded."""
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _host(t: Tensor, host: bool) -> Tensor | float:
    """A scalar as a Python float when reading it is free (CPU, no graph), else the tensor."""
    return float(t) if host and not t.requires_grad else t


#: CG's breakdown tests (see :func:`cg`): curvature pᵀAp below this fraction of ‖p‖² times the
#: largest curvature met so far, or a residual norm this many times the initial one
CG_CURVATURE_EPS = 1e-10
CG_RESIDUAL_GROWTH = 100.0


def cg(matvec: MatVec, b: Tensor, steps: int, x0: Tensor | None = None, tol: float = 0.0
       ) -> Tensor:
    """Conjugate gradient for A x = b, A symmetric positive *semi*-definite.

    Positive definite A (or b ∈ range(A)): Hestenes & Stiefel 1952, at most ``steps``
    iterations, fewer if ‖r‖ ≤ tol·‖b‖; ``x0`` warm-starts; one product with A per iteration.

    Singular A with b ∉ range(A) (overparameterized inner problems, H = AᵀA of rank < dim θ):
    there plain CG is meaningless — its Lanczos process finds a Ritz value near 0 within a few
    iterations, the step sizes blow up and the iterate grows without bound (measured ‖v‖ ≈ 1e32
    on ``overparam_linreg``). CG detects it (breakdown): the residual norm grows past
    ``CG_RESIDUAL_GROWTH`` × its initial value, or the curvature pᵀAp falls below
    ``CG_CURVATURE_EPS``·‖p‖² × the largest curvature seen, or the last residual is larger
    than the first (measured: singular cases grow ×20–×6000 in 8 iterations; definite ones with
    κ ≤ 1e6 stay under ×25, and only those with κ ≳ 1e3 end a short solve above ×1). It then
    restarts from ``x0`` as CG on the normal equations A² x = A b (:func:`cg_normal`,
    ``steps`` iterations of two products), which converges to the least-squares solution
    nearest to x0 — from x0 = 0 (or any x0 ∈ range(A)) the minimum-norm solution A⁺ b, the
    pseudo-inverse answer of :func:`dense_solve` and of Vicol et al. 2022. A false alarm on an
    ill-conditioned definite A costs speed only: the normal equations have the same solution.
    """
    x, broke = _cg_iterations(matvec, b, steps, x0, tol)
    return cg_normal(matvec, b, steps, x0, tol) if broke else x


def cg_normal(matvec: MatVec, b: Tensor, steps: int, x0: Tensor | None = None,
              tol: float = 0.0) -> Tensor:
    """CG on the normal equations A² x = A b for symmetric A (CGNR; Hestenes & Stiefel 1952
    §10), ``steps`` iterations of two products, stopping when ‖A(b − A x)‖ ≤ tol·‖A b‖ (tol at
    least 1e3 × the dtype's machine epsilon).

    A² x = A b is consistent even when A x = b is not, and its Krylov space
    K(A², A(b − A x0)) lies in range(A), so the iterates converge to x0's component in null(A)
    plus A⁺(b − A x0): A⁺ b from x0 = 0, the minimum-norm least-squares solution. Rate set by
    κ(A)² on range(A) (CG's is √κ): the price of robustness to a singular A.
    """
    floor = 1e3 * torch.finfo(b.dtype).eps  # past it, rounding only drifts into null(A)
    return _cg_iterations(lambda v: matvec(matvec(v)), matvec(b), steps, x0, max(tol, floor))[0]


def _cg_iterations(matvec: MatVec, b: Tensor, steps: int, x0: Tensor | None, tol: float
                   ) -> tuple[Tensor, bool]:
    """Hestenes–Stiefel CG; returns (x, broke): ``broke`` when a breakdown test of :func:`cg`
    stopped it (x is then the last iterate before the breakdown).

    When no graph is recorded through them, the vectors are updated in place and, on CPU, the
    step sizes are Python floats (a CPU scalar read is no device sync; it saves a tensor
    operation per scalar).
    """
    host = b.device.type == "cpu"
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = _host(torch.dot(r, r), host)
    rr0, grown = rr, rr * CG_RESIDUAL_GROWTH**2
    stop = 0.0 if tol == 0.0 else _host((tol * torch.linalg.vector_norm(b)) ** 2, host)
    top = 0.0  # the largest curvature pᵀAp / ‖p‖² met so far
    in_place: bool | None = None  # decided at the first product (does A carry a graph?)
    for _ in range(steps):
        if rr <= stop:
            break
        ap = matvec(p)
        pap = _host(torch.dot(p, ap), host)
        curvature = pap / _host(torch.dot(p, p), host)
        top = curvature if curvature > top else top
        if curvature <= CG_CURVATURE_EPS * top:  # no curvature along p: A singular here
            return x, True
        alpha = rr / pap
        if in_place is None:
            in_place = _no_grad_needed(x, r, p, ap)
        if in_place and isinstance(alpha, float):  # six tensor operations per iteration
            x.add_(p, alpha=alpha)
            r.add_(ap, alpha=-alpha)
            rr_new = float(torch.dot(r, r))
            torch.add(r, p, alpha=rr_new / rr, out=p)  # p ← r + β p
        elif in_place:
            x.addcmul_(alpha, p)
            r.addcmul_(alpha, ap, value=-1.0)
            rr_new = torch.dot(r, r)
            p.mul_(rr_new / rr).add_(r)
        else:
            x = x + alpha * p
            r = r - alpha * ap
            rr_new = r @ r
            p = r + (rr_new / rr) * p
        rr = rr_new
        if rr > grown:  # the residual grows: b has a component outside range(A)
            return x, True
    return x, rr > rr0  # ending farther from b than it started is no solve either


def neumann(matvec: MatVec, b: Tensor, terms: int, alpha: float) -> Tensor:
    """A⁻¹ b ≈ α Σ_{j=0..K} (I − αA)^j b, the K-term Neumann series (Lorraine et al. 2020, eq. 8).

    Converges for 0 < α < 2/λ_max(A); ``terms`` = K.
    """
    term = b.clone()
    total = b.clone()
    for _ in range(terms):
        product = matvec(term)
        if _no_grad_needed(term, total, product):
            term.sub_(product, alpha=alpha)
            total.add_(term)
        else:
            term = term - alpha * product
            total = total + term
    return total.mul_(alpha) if _no_grad_needed(total) else alpha * total


def fixed_point(matvec: MatVec, b: Tensor, steps: int, alpha: float, x0: Tensor | None = None
                ) -> Tensor:
    """x ← x − α(A x − b): the fixed-point iteration of Grazzi et al. 2020 (ITD of the
    adjoint), equal to the Neumann series when x0 = 0."""
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    for _ in range(steps):
        product = matvec(x)
        if _no_grad_needed(x, product, b):
            x.sub_(product, alpha=alpha).add_(b, alpha=alpha)
        else:
            x = x - alpha * (product - b)
    return x


def dense_solve(a: Tensor, b: Tensor) -> Tensor:
    """A⁺ b for symmetric A: equal to A⁻¹ b when A is invertible, else the minimum-norm
    least-squares solution (eigenvalues below n·eps·λ_max count as zero; this is the solution
    the implicit-bias analysis of Vicol et al. 2022 uses for singular inner Hessians)."""
    return torch.linalg.pinv(a, hermitian=True) @ b


def least_squares_gd(matvec: MatVec, b: Tensor, steps: int, lr: float,
                     x0: Tensor | None = None) -> Tensor:
    """x ← x − lr · A(A x − b): gradient descent on ½‖A x − b‖² for symmetric A.

    The iterative solver of ApproxGrad (Mehra & Hamm 2021), which minimizes the squared residual
    of the linear system rather than a quadratic form, so it also works when A is indefinite.
    Converges for 0 < lr < 2/λ_max(A)²; two products with A per step; ``x0`` warm-starts.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    for _ in range(steps):
        x = x - lr * matvec(matvec(x) - b)
    return x
