"""Shared autodiff primitives: every algorithm computes its derivatives through these.

Notation (design.md): inner loss g(θ, λ), outer loss f(θ, λ), H = ∇²_θθ g,
J = ∇²_λθ g (the mixed second derivative, shape dim λ × dim θ). The implicit function
theorem gives the hypergradient

    dF/dλ = ∇_λ f − J H⁻¹ ∇_θ f                                    (IFT; Pedregosa 2016, eq. 3)

Every Hessian-vector product ``H v`` and mixed product ``J v`` is a vector-Jacobian product of
the inner gradient ∇_θ g(θ, λ), computed once with ``create_graph`` and reused across all the
products of a solve (:class:`InnerDerivatives`): a k-step CG solve then costs k + O(1)
gradient evaluations, not k fresh double-backward graphs.

Oracle calls are counted in :data:`oracle_counts` (``grad_inner``, ``grad_outer``, ``hvp``,
``mixed``) so the harness can report cost in oracle calls beside wall-clock.

Analytic oracles: a problem may override ``inner_grad_oracle``, ``inner_hessian_operator``,
``mixed_oracle`` and ``outer_grads_oracle`` (:class:`~blobench.contracts.problem.Problem`);
:func:`inner_grad`, :func:`gradient_descent`, :func:`unroll`, :func:`outer_grads` and
:class:`InnerDerivatives` use them instead of autograd (a call answered ``NotImplemented`` falls
back to autodiff). On small problems this removes most of autograd's per-call overhead; the
oracles are checked against autodiff in tests/test_oracles.py and the cost ratios are measured
by ``blobench bench``. With all three inner oracles, :func:`unroll` runs its reverse pass as the
explicit adjoint recursion of RHG (:class:`_ReverseUnroll`) instead of replaying autograd's
graph of every step.

Performance notes (measured by ``blobench bench``): the linear solvers update their vectors in
place (no allocation per iteration, which matters for large θ) whenever nothing they touch
requires grad; the only host-side reads in their loops are the stopping tests of CG.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

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


# ----------------------------------------------------------------- linear solvers
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


# -------------------------------------------------------------- implicit hypergrad
def implicit_hypergradient(problem: Problem, theta: Tensor, lam: Tensor,
                           solve: Callable[[InnerDerivatives, Tensor], Tensor],
                           inner_batch: Batch = None, outer_batch: Batch = None,
                           prox_step: float | None = None) -> tuple[Tensor, Tensor]:
    """dF/dλ ≈ ∇_λ f − J v with v = solve(H, ∇_θ f) ≈ H⁻¹ ∇_θ f, at the given θ.

    ``prox_step`` η (a problem with a separable prox, :func:`prox_separable`): the lower level
    is min g + r with the proximal fixed point θ = P(z, λ), z = θ − η ∇_θ g(θ, λ),
    P = prox_{ηr}. Differentiating it (Bertrand et al. 2022, "Implicit differentiation for fast
    hyperparameter selection in non-smooth convex learning", JMLR, the fixed-point equation of
    proximal gradient) with D = ∂P/∂z diagonal with entries 0/1 (box, soft-threshold; free
    set F where D = 1) and P_λ = ∂P/∂λ gives, with v_F = H_FF⁻¹ (∇_θ f)_F, v = 0 off F
    (:class:`FreeCoordinates`) and the adjoint w = v/η on F, w = ∇_θ f − H v off F:

        dF/dλ = ∇_λ f − J v + P_λᵀ w

    — the IFT restricted to the free coordinates, plus the λ-dependence of the prox: zero for
    a λ-independent box; −e^λ sᵀ H_SS⁻¹ (∇_θ f)_S for r = e^λ‖θ‖₁ on the support S with signs
    s (Bertrand et al. 2020, ICML, Prop. 1); C 1ᵀ((∇_θ f)_U − (H v)_U) for coordinates U at a
    bound C = e^λ. Valid under strict complementarity (P differentiable at z); independent
    of η (it cancels).

    Returns (hypergradient, v); v lets a solver warm-start its next solve.
    """
    f_theta, f_lam = outer_grads(problem, theta, lam, outer_batch)
    ops = InnerDerivatives(problem, theta, lam, inner_batch)
    if prox_step is None:
        v = solve(ops, f_theta)
        return f_lam - ops.mixed(v), v
    z = (ops._theta - prox_step * ops.grad).detach().requires_grad_(True)
    lam_ = ops._lam.clone().requires_grad_(True)
    with torch.enable_grad():
        out = problem.inner_prox(z, lam_, prox_step)
        (diag,) = torch.autograd.grad(out, z, torch.ones_like(z), retain_graph=True)
    restricted = FreeCoordinates(ops, diag > 0.5)
    v = restricted.restrict(solve(restricted, restricted.restrict(f_theta)))
    p = restricted.p
    w = p * v / prox_step + (1 - p) * (f_theta - ops.hvp(v))
    (p_lam,) = torch.autograd.grad(out, lam_, w, allow_unused=True)
    return f_lam - restricted.mixed(v) + _zeros_if_none(p_lam, f_lam), v


def prox_separable(problem: Problem | type[Problem]) -> bool:
    """Whether the problem has a prox (:func:`has_inner_prox`) and declares it separable
    (class attribute ``inner_prox_separable = True``: coordinate i of prox_{ηr}(z; λ) depends
    on z_i and λ only, with ∂/∂z_i ∈ {0, 1} — a box, possibly with bounds depending on λ, or a
    soft-threshold): the declaration that the implicit entries may use the proximal
    fixed-point optimality condition of :func:`implicit_hypergradient`."""
    cls = problem if isinstance(problem, type) else type(problem)
    return has_inner_prox(cls) and bool(getattr(cls, "inner_prox_separable", False))


class FreeCoordinates:
    """:class:`InnerDerivatives` restricted to the free coordinates F (mask P = diag(free)):

    ``hvp(v)`` = P H P v + (I − P) v  (H_FF on F, the identity off F: invertible, decoupled),
    ``mixed(v)`` = J P v, ``grad`` = P ∇_θ g; the dense matrices likewise."""

    def __init__(self, ops: InnerDerivatives, free: Tensor):
        self.ops = ops
        self.problem, self.batch, self.theta, self.lam = ops.problem, ops.batch, ops.theta, ops.lam
        self.p = free.to(dtype=ops.theta.dtype)

    def restrict(self, v: Tensor) -> Tensor:
        return self.p * v

    @property
    def grad(self) -> Tensor:
        return self.p * self.ops.grad

    def hvp(self, v: Tensor) -> Tensor:
        return self.p * self.ops.hvp(self.p * v) + (1 - self.p) * v

    def mixed(self, v: Tensor) -> Tensor:
        return self.ops.mixed(self.p * v)

    def dense_hessian(self) -> Tensor:
        h = self.ops.dense_hessian()
        return self.p[:, None] * h * self.p[None, :] + torch.diag(1 - self.p)

    def dense_mixed(self) -> Tensor:
        return self.ops.dense_mixed() * self.p[None, :]


# --------------------------------------------------------------------- inner solvers
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


# --------------------------------------------------------------------- inner loops
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


# ------------------------------------------------- forward mode, finite differences, aggregation
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
