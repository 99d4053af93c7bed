"""Constrained and non-smooth lower levels with exact answers (issue 22, part 3).

Three problems whose lower level is min_θ g(θ, λ) + r(θ; λ), ``inner_loss`` = the smooth part
g and ``inner_prox`` = the proximal map of r (:meth:`Problem.inner_prox`); θ*(λ) is unique,
computed by a certified solver (an active-set / support Newton polish of a first-order solve,
stopped only at an exact KKT point; the KKT residual of the last solve is kept in
``gt_kkt_residual``), and ``exact_hypergradient`` differentiates θ*(λ) through its active set
(valid where the active set is locally constant, i.e. strict complementarity — everywhere but
at finitely many λ's of a one-dimensional λ, a null set otherwise):

- ``box_qp`` — g = ½θᵀAθ − θᵀBλ − aᵀθ, r = indicator of the fixed box [−b, b]^d
  (a λ-independent constraint set). With F the free coordinates of θ*(λ):
  θ*_F = A_FF⁻¹(Bλ + a − A_F,act θ*_act)_F, dθ*_F/dλ = A_FF⁻¹ B_F, dθ*_act/dλ = 0, so
  dF/dλ = B_Fᵀ A_FF⁻¹ (∇_θ f)_F + ρλ (the implicit formula restricted to the free set).
- ``lasso_ho`` — g = ½‖Xθ − y‖²/n, r = e^λ ‖θ‖₁ (a λ-dependent non-smooth regularizer, scalar
  λ). On the support S with signs s (Bertrand, Klopfenstein, Blondel, Vaiter, Gramfort,
  Salmon 2020, "Implicit differentiation of Lasso-type models for hyperparameter
  optimization", ICML, eq. 9 / Prop. 1): dθ*_S/dλ = −(X_SᵀX_S/n)⁻¹ e^λ s, zero off S.
  Outer: validation loss ½‖X_val θ − y_val‖²/n_val.
- ``svm_dual_ho`` — the dual of a bias-free soft-margin linear SVM with λ = log C:
  g = ½αᵀQα − 1ᵀα, Q = diag(y)(XXᵀ + δI)diag(y), r = indicator of [0, e^λ]^n (a constraint
  that couples α and λ; δ > 0 makes g strongly convex: the SVM on features augmented with
  √δ·e_i, one private feature per training point). With U the support vectors at the bound
  α = C and F the free ones: dα*_U/dλ = C, dα*_F/dλ = −Q_FF⁻¹ Q_FU C 1, zero for α = 0.
  Outer: mean logistic loss of the validation margins y_v x_vᵀ w, w = Xᵀ(y ⊙ α).

The bilevel answer λ* (``lam_star``) and F* = F(λ*) (``optimal_value``): for ``box_qp`` the
stationary point reached by exact hypergradient descent from λ₀, certified by the closed-form
minimizer of F on its active-set piece (F is quadratic there) having the same active set; for
the scalar λ of ``lasso_ho`` / ``svm_dual_ho`` the best of the local minimizers located by
bisection on the sign of the exact dF/dλ in every cell of a 241-point grid of the stated range
where it changes from − to + (F is continuous and piecewise smooth, and may have several
local minima). All answers are checked in tests/test_lower_level_constrained.py against
central finite differences of F(λ) = f(θ*(λ), λ).

Each problem declares ``inner_prox_kind`` and ``inner_prox_separable`` and overrides the
optional constrained-lower-level hooks of the Problem contract it needs
(blobench/contracts/problem.py; docs/lower-levels.md, "Constrained lower levels"): the Lasso
``inner_nonsmooth`` (r = e^λ‖θ‖₁, for meha's ∂_λ r); the SVM ``inner_coupled_constraints``
(α − e^λ), ``inner_uncoupled_projection`` (α ≥ 0) and ``project_feasible`` (lv_hba's joint
projection); box_qp none (its Y is the set of ``inner_prox``).
"""

from __future__ import annotations

import itertools
import math

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem

Tensor = torch.Tensor


# ------------------------------------------------------------------ certified solvers
def solve_box_qp(a_mat: Tensor, b: Tensor, lo: Tensor, hi: Tensor, max_rounds: int = 60
                 ) -> tuple[Tensor, float]:
    """argmin ½θᵀAθ − bᵀθ over lo ≤ θ ≤ hi (A ≻ 0), and its KKT residual.

    Primal-dual active set method (Hintermüller, Ito & Kunisch 2002, a semismooth Newton
    method): from θ, the sets {θ − (Aθ − b)/L ≤ lo}, {… ≥ hi} are fixed at their bounds and
    the free block solved exactly; it stops when the sets repeat, which is an exact KKT point
    (free coordinates strictly inside with zero gradient, the others with multipliers of the
    right sign). Projected-gradient steps separate rounds that did not settle (a cycle).
    The residual is L‖θ − Π(θ − ∇/L)‖, the proximal-gradient mapping (0 at a KKT point)."""
    lipschitz = float(torch.linalg.eigvalsh(a_mat)[-1])
    theta = torch.clamp(torch.zeros_like(b), lo, hi)
    previous = None
    for rnd in range(max_rounds):
        trial = theta - (a_mat @ theta - b) / lipschitz
        at_lo, at_hi = trial <= lo, trial >= hi
        key = (at_lo.clone(), at_hi.clone())
        if previous is not None and torch.equal(key[0], previous[0]) and torch.equal(
                key[1], previous[1]):
            break
        previous = key
        free = ~(at_lo | at_hi)
        new = torch.where(at_lo, lo, torch.where(at_hi, hi, theta))
        if bool(free.any()):
            fixed = ~free
            rhs = b[free] - a_mat[free][:, fixed] @ new[fixed]
            new[free] = torch.linalg.solve(a_mat[free][:, free], rhs)
        theta = new
        if rnd % 10 == 9:  # not settled: a few projected-gradient steps break a cycle
            for _ in range(50):
                theta = torch.clamp(theta - (a_mat @ theta - b) / lipschitz, lo, hi)
    theta = torch.clamp(theta, lo, hi)
    return theta, _box_residual(a_mat, b, lo, hi, theta, lipschitz)


def _box_residual(a_mat, b, lo, hi, theta, lipschitz) -> float:
    step = torch.clamp(theta - (a_mat @ theta - b) / lipschitz, lo, hi)
    return lipschitz * float(torch.linalg.vector_norm(theta - step))


def box_active_sets(a_mat: Tensor, b: Tensor, lo: Tensor, hi: Tensor, theta: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """(free, at lower bound, at upper bound) masks of a KKT point θ of the box QP."""
    grad = a_mat @ theta - b
    at_lo = (theta <= lo) & (grad >= 0)
    at_hi = (theta >= hi) & (grad <= 0)
    return ~(at_lo | at_hi), at_lo, at_hi


def soft_threshold(x: Tensor, t: Tensor | float) -> Tensor:
    """prox of t‖·‖₁: sign(x) max(|x| − t, 0) (differentiable in x and t)."""
    return torch.sign(x) * torch.relu(x.abs() - t)


def solve_lasso(gram: Tensor, corr: Tensor, alpha: float, start: Tensor | None = None,
                chunk: int = 50, max_chunks: int = 400) -> tuple[Tensor, float]:
    """argmin ½θᵀGθ − cᵀθ + α‖θ‖₁ (G = XᵀX/n ≻ 0 on the supports met, c = Xᵀy/n), and its
    KKT residual L‖θ − prox(θ − ∇/L)‖.

    FISTA (Beck & Teboulle 2009) from ``start`` to locate the support; after every ``chunk``
    steps the support Newton polish of Bertrand et al. 2020, θ_S = G_SS⁻¹(c_S − α s_S), is
    tried and kept only when it is an exact KKT point (signs of θ_S equal s, |c_j − G_jS θ_S|
    ≤ α off S)."""
    lipschitz = float(torch.linalg.eigvalsh(gram)[-1])
    theta = torch.zeros_like(corr) if start is None else start.clone()
    z, t = theta, 1.0
    for _round in range(max_chunks):
        support = theta != 0
        signs = torch.sign(theta)
        polished = torch.zeros_like(theta)
        if bool(support.any()):
            polished[support] = torch.linalg.solve(gram[support][:, support],
                                                   corr[support] - alpha * signs[support])
        grad = gram @ polished - corr
        if bool((torch.sign(polished[support]) == signs[support]).all()) and bool(
                (grad[~support].abs() <= alpha * (1 + 1e-12)).all()):
            theta = polished
            break
        for _ in range(chunk):
            new = soft_threshold(z - (gram @ z - corr) / lipschitz, alpha / lipschitz)
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            z = new + ((t - 1) / t_next) * (new - theta)
            theta, t = new, t_next
    step = soft_threshold(theta - (gram @ theta - corr) / lipschitz, alpha / lipschitz)
    return theta, lipschitz * float(torch.linalg.vector_norm(theta - step))


def scalar_argmin(value, derivative, low: float, high: float, points: int = 241,
                  bisections: int = 60) -> float:
    """The global minimizer of a continuous, piecewise smooth F on [low, high]: every grid cell
    [x_j, x_{j+1}] where dF/dλ changes sign from − to + holds a local minimizer (a smooth one or
    a kink), located by bisection on the sign of dF/dλ; the best of those and of the two ends
    is returned (F may have several local minima — e.g. ``svm_dual_ho`` with ``ridge`` = 1 —
    so the best *grid point*'s neighbourhood alone can miss the global one)."""
    grid = [float(x) for x in torch.linspace(low, high, points, dtype=torch.float64)]
    slopes = [derivative(x) for x in grid]
    candidates = [grid[0], grid[-1]]
    for (a, b), (da, db) in zip(itertools.pairwise(grid), itertools.pairwise(slopes),
                                strict=True):
        if not (da < 0 <= db):
            continue
        for _ in range(bisections):
            mid = 0.5 * (a + b)
            if derivative(mid) > 0:
                b = mid
            else:
                a = mid
        candidates.append(0.5 * (a + b))
    return min(candidates, key=value)


class _Constrained(Problem):
    """What the three problems share: float64 data, unique θ*(λ) memoized per λ."""

    family = "constrained lower level"
    inner_unique = True
    #: prox_{ηr} acts coordinate-wise (clamp, soft-threshold): the implicit entries may
    #: differentiate the proximal fixed point (blobench.autodiff.implicit_hypergradient)
    inner_prox_separable = True
    higher_is_better = False

    def _cache(self):
        if not hasattr(self, "_solutions"):
            self._solutions = {}
        return self._solutions

    def inner_solution(self, lam):
        key = tuple(lam.detach().cpu().tolist())
        cache = self._cache()
        if key not in cache:
            if len(cache) > 256:
                cache.clear()
            theta, residual = self._solve(lam.detach())
            cache[key] = theta
            self.gt_kkt_residual = residual
        return cache[key].clone()

    def _solve(self, lam: Tensor) -> tuple[Tensor, float]:
        raise NotImplementedError

    def value(self, lam: Tensor) -> float:
        """F(λ) = f(θ*(λ), λ)."""
        with torch.no_grad():
            return float(self.outer_loss(self.inner_solution(lam), lam))

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def optimal_value(self):
        return self._answer()[1]

    @property
    def lam_star(self) -> Tensor:
        return self._answer()[0]

    def _answer(self) -> tuple[Tensor, float]:
        """(λ*, F*), computed once per instance (on first use, not in ``build``)."""
        if not hasattr(self, "_answer_memo"):
            self._answer_memo = self._compute_answer()
        return self._answer_memo

    def _compute_answer(self) -> tuple[Tensor, float]:
        raise NotImplementedError


# ----------------------------------------------------------------------------- (a) box QP
class BoxQP(_Constrained):
    """Box-constrained quadratic lower level (the quadratic testbed with θ ∈ [−b, b]^d)."""

    name = "box_qp"
    reference = ("issue 22 (box-constrained quadratic, after Dagréou et al. 2022's "
                 "quadratic); active-set implicit derivative")
    inner_prox_kind = "indicator"
    params = {
        "dim_theta": Param(int, 30, "d, inner dimension", low=1),
        "dim_lambda": Param(int, 10, "p, outer dimension", low=1),
        "n_outer": Param(int, 40, "m, rows of C", low=1),
        "condition": Param(float, 10.0, "condition number of A", low=1.0),
        "rho": Param(float, 0.1, "ρ, outer ridge term", low=0.0),
        "bound": Param(float, 0.5, "b: the box is [−b, b]^d", low=0.0, low_open=True),
        "a_scale": Param(float, 3.0, "scale of a (larger: more active bounds)", low=0.0),
        "starts": Param(int, 16, "starts of the search for λ* (λ₀ and N(0, I) draws)",
                        low=1),
    }
    #: ``full``: 2 starts (each piece-hopping search costs minutes of PDAS solves at d = 300)
    sizes = {"quick": {"dim_theta": 30, "dim_lambda": 10, "n_outer": 40},
             "full": {"dim_theta": 300, "dim_lambda": 100, "n_outer": 400, "starts": 2}}
    primary_metric = "suboptimality"
    budgets = {"quick": Budget(steps=200, eval_every=20),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator):
        c = self.config
        d, p, m = c["dim_theta"], c["dim_lambda"], c["n_outer"]

        def randn(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        q, _ = torch.linalg.qr(randn(d, d))
        eig = torch.logspace(0, math.log10(c["condition"]), d, dtype=torch.float64)
        self.a_mat = self.tensor((q * eig) @ q.T)
        self.b_mat = self.tensor(randn(d, p) / d**0.5)
        self.a_vec = self.tensor(c["a_scale"] * randn(d))
        self.c_mat = self.tensor(randn(m, d))
        self.c_vec = self.tensor(randn(m))
        self.rho = c["rho"]
        self.lipschitz = float(eig.max())
        self.hi = self.tensor(torch.full((d,), c["bound"]))
        self.lo = -self.hi

    @property
    def dim_inner(self):
        return self.config["dim_theta"]

    @property
    def dim_outer(self):
        return self.config["dim_lambda"]

    def inner_loss(self, theta, lam, batch=None):
        return 0.5 * theta @ (self.a_mat @ theta) - theta @ (self.b_mat @ lam) - self.a_vec @ theta

    def outer_loss(self, theta, lam, batch=None):
        r = self.c_mat @ theta - self.c_vec
        return 0.5 * (r @ r) / r.shape[0] + 0.5 * self.rho * (lam @ lam)

    def inner_prox(self, theta, lam, step):
        return torch.clamp(theta, self.lo, self.hi)

    def inner_uncoupled_projection(self, theta):
        return torch.clamp(theta, self.lo, self.hi)

    def project_feasible(self, theta, lam, lam_weight: float = 1.0):
        return torch.clamp(theta, self.lo, self.hi), lam

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / self.lipschitz

    def outer_step_size(self):
        return 1.0

    def _solve(self, lam):
        return solve_box_qp(self.a_mat, self.b_mat @ lam + self.a_vec, self.lo, self.hi)

    def free_set(self, lam: Tensor) -> Tensor:
        theta = self.inner_solution(lam)
        return box_active_sets(self.a_mat, self.b_mat @ lam.detach() + self.a_vec, self.lo,
                               self.hi, theta)[0]

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        free = self.free_set(lam)
        grad_theta = self.c_mat.T @ (self.c_mat @ theta - self.c_vec) / self.config["n_outer"]
        out = self.rho * lam
        if bool(free.any()):
            v = torch.linalg.solve(self.a_mat[free][:, free], grad_theta[free])
            out = out + self.b_mat[free].T @ v
        return out

    def piece_minimizer(self, free: Tensor, theta: Tensor) -> Tensor:
        """argmin of the quadratic that F equals on the active-set piece of θ (its free set
        ``free``, the other coordinates at their bounds in θ): (CPᵀCP/m + ρI)λ = (CP)ᵀ(c − Cq)/m
        with θ_F = Pλ + q."""
        theta_fixed = torch.where(free, torch.zeros_like(theta), theta)
        a_ff = self.a_mat[free][:, free]
        # θ_F = A_FF⁻¹ (B_F λ + a_F − A_F,fix θ_fix) = P λ + q
        p_mat = torch.zeros(self.dim_inner, self.dim_outer, dtype=torch.float64)
        q = theta_fixed.clone()
        p_mat[free] = torch.linalg.solve(a_ff, self.b_mat[free])
        q[free] = torch.linalg.solve(a_ff, self.a_vec[free] - self.a_mat[free][:, ~free]
                                     @ theta_fixed[~free])
        cp = self.c_mat @ p_mat
        m = self.config["n_outer"]
        lhs = cp.T @ cp / m + self.rho * torch.eye(self.dim_outer, dtype=torch.float64)
        return torch.linalg.solve(lhs, cp.T @ (self.c_vec - self.c_mat @ q) / m)

    def local_minimum(self, lam: Tensor, rounds: int = 200) -> Tensor:
        """A local minimizer of F from λ by piece hopping: the closed-form minimizer λ_p of the
        quadratic piece containing λ; stop when θ*(λ_p) has the same active set (λ_p is then
        a stationary point of F, certified), else move along [λ, λ_p] by halving until F
        decreases (F is continuous and piecewise quadratic)."""
        for _ in range(rounds):
            theta = self.inner_solution(lam)
            free = self.free_set(lam)
            target = self.piece_minimizer(free, theta)
            if torch.equal(self.free_set(target), free):
                return target
            step, base = 1.0, self.value(lam)
            while step > 1e-12 and self.value(lam + step * (target - lam)) >= base:
                step *= 0.5
            if step <= 1e-12:  # at a kink between pieces: a small exact-gradient step
                lam = lam - 1e-3 * self.exact_hypergradient(lam)
            else:
                lam = lam + step * (target - lam)
        return lam

    def _compute_answer(self):
        gen = torch.Generator().manual_seed(self.seed + 7)
        starts = [self.init_outer(None)] + [
            torch.randn(self.dim_outer, generator=gen, dtype=torch.float64).to(self.device)
            for _ in range(self.config["starts"] - 1)]
        minima = [self.local_minimum(lam) for lam in starts]
        values = [self.value(lam) for lam in minima]
        best = min(range(len(minima)), key=values.__getitem__)
        star = minima[best]
        self.certificate = {
            "hypergrad_norm": float(self.exact_hypergradient(star).norm()),
            "local_minima_values": sorted(set(round(v, 10) for v in values)),
            "kkt_residual": self.gt_kkt_residual}
        return star, values[best]

    def evaluate(self, theta, lam):
        with torch.no_grad():
            star, f_star = self._answer()
            return {"suboptimality": self.value(lam) - f_star,
                    "lam_error": float(torch.linalg.vector_norm(lam - star)),
                    "infeasibility": float(torch.linalg.vector_norm(
                        theta - torch.clamp(theta, self.lo, self.hi)))}


# ---------------------------------------------------------------------------- (b) Lasso
class LassoHO(_Constrained):
    """Lasso lower level, hyperparameter λ = log of the ℓ1 weight (Bertrand et al. 2020)."""

    name = "lasso_ho"
    reference = ("Bertrand, Klopfenstein, Blondel, Vaiter, Gramfort, Salmon 2020 (ICML), "
                 "implicit differentiation of Lasso-type models")
    inner_prox_kind = "regularizer"
    params = {
        "n_train": Param(int, 50, "training points", low=1),
        "n_val": Param(int, 50, "validation points (outer objective)", low=1),
        "n_test": Param(int, 500, "held-out test points", low=1),
        "n_features": Param(int, 30, "d", low=1),
        "n_informative": Param(int, 5, "non-zeros of the true coefficients", low=1),
        "noise": Param(float, 1.0, "σ, noise standard deviation", low=0.0),
    }
    sizes = {"quick": {"n_train": 50, "n_val": 50, "n_test": 500, "n_features": 30},
             "full": {"n_train": 1000, "n_val": 1000, "n_test": 5000, "n_features": 500,
                      "n_informative": 20}}
    primary_metric = "suboptimality"
    budgets = {"quick": Budget(steps=200, eval_every=20),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator):
        c = self.config
        d = c["n_features"]
        coef = torch.zeros(d, dtype=torch.float64)
        idx = torch.randperm(d, generator=generator)[:min(c["n_informative"], d)]
        coef[idx] = torch.randn(len(idx), generator=generator, dtype=torch.float64)
        coef[idx] += torch.sign(coef[idx])  # |coef| ≥ 1 on the support

        def draw(n):
            x = torch.randn(n, d, generator=generator, dtype=torch.float64)
            y = x @ coef + c["noise"] * torch.randn(n, generator=generator,
                                                    dtype=torch.float64)
            return self.tensor(x), self.tensor(y)

        self.x, self.y = draw(c["n_train"])
        self.x_val, self.y_val = draw(c["n_val"])
        self.x_test, self.y_test = draw(c["n_test"])
        self.coef = self.tensor(coef)
        n = c["n_train"]
        self.gram = self.x.T @ self.x / n
        self.corr = self.x.T @ self.y / n
        self.lipschitz = float(torch.linalg.eigvalsh(self.gram)[-1])
        #: log of the smallest ℓ1 weight with θ* = 0
        self.log_alpha_max = math.log(float(self.corr.abs().max()))

    @property
    def dim_inner(self):
        return self.config["n_features"]

    @property
    def dim_outer(self):
        return 1

    def inner_loss(self, theta, lam, batch=None):
        r = self.x @ theta - self.y
        return 0.5 * (r @ r) / self.x.shape[0]

    def outer_loss(self, theta, lam, batch=None):
        r = self.x_val @ theta - self.y_val
        return 0.5 * (r @ r) / self.x_val.shape[0]

    def inner_prox(self, theta, lam, step):
        return soft_threshold(theta, step * lam.exp())

    def inner_nonsmooth(self, theta, lam):
        return lam.exp().sum() * theta.abs().sum()

    def init_outer(self, generator):
        """λ₀ = log α_max − 2: a few features in the support."""
        return torch.full((1,), self.log_alpha_max - 2.0, dtype=torch.float64,
                          device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / self.lipschitz

    def outer_step_size(self):
        return 1.0

    def _solve(self, lam):
        start = getattr(self, "_last_solution", None)
        theta, residual = solve_lasso(self.gram, self.corr, float(lam.exp().sum()), start)
        self._last_solution = theta  # warm start of the next solve (a nearby λ, usually)
        return theta, residual

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        support = theta != 0
        if not bool(support.any()):
            return torch.zeros(1, dtype=torch.float64, device=self.device)
        grad_theta = self.x_val.T @ (self.x_val @ theta - self.y_val) / self.config["n_val"]
        alpha = float(lam.exp().sum())
        dtheta = -torch.linalg.solve(self.gram[support][:, support],
                                     alpha * torch.sign(theta[support]))
        return (grad_theta[support] @ dtheta).reshape(1)

    def _compute_answer(self):
        top = self.log_alpha_max

        def at(x):
            return torch.tensor([x], dtype=torch.float64, device=self.device)

        star = scalar_argmin(lambda x: self.value(at(x)),
                             lambda x: float(self.exact_hypergradient(at(x))), top - 8.0, top)
        return at(star), self.value(at(star))

    def evaluate(self, theta, lam):
        with torch.no_grad():
            star, f_star = self._answer()
            r = self.x_test @ theta - self.y_test
            return {"suboptimality": self.value(lam) - f_star,
                    "lam_error": float((lam - star).abs().sum()),
                    "test_mse": float(r @ r) / self.config["n_test"],
                    "support_size": float((theta.abs() > 1e-10).sum())}


# ----------------------------------------------------------------------------- (c) SVM
class SvmDualHO(_Constrained):
    """Soft-margin SVM dual lower level (box [0, C]), hyperparameter λ = log C."""

    name = "svm_dual_ho"
    reference = ("issue 22 (SVM dual, box constraint coupled to C); LV-HBA's SVM experiment "
                 "(Yao, Yu, Zeng, Zhang, ICLR 2024) in dual form")
    inner_prox_kind = "coupled_indicator"
    params = {
        "n_train": Param(int, 40, "training points (dual variables)", low=1),
        "n_val": Param(int, 100, "validation points (outer objective)", low=1),
        "n_test": Param(int, 1000, "held-out test points", low=1),
        "n_features": Param(int, 40, "d", low=1),
        "flip": Param(float, 0.2, "fraction of flipped training labels", low=0.0, high=1.0),
        "ridge": Param(float, 0.01, "δ: Q = diag(y)(XXᵀ + δI)diag(y)", low=0.0,
                       low_open=True),
    }
    sizes = {"quick": {"n_train": 40, "n_val": 100, "n_test": 1000, "n_features": 40},
             "full": {"n_train": 400, "n_val": 400, "n_test": 5000, "n_features": 400}}
    primary_metric = "suboptimality"
    budgets = {"quick": Budget(steps=200, eval_every=20),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator):
        c = self.config
        d = c["n_features"]
        w_true = torch.randn(d, generator=generator, dtype=torch.float64)

        def draw(n, flip):
            x = torch.randn(n, d, generator=generator, dtype=torch.float64) / d**0.5
            y = torch.sign(x @ w_true + 0.3 * torch.randn(n, generator=generator,
                                                          dtype=torch.float64))
            y[y == 0] = 1.0
            flips = torch.rand(n, generator=generator, dtype=torch.float64) < flip
            return self.tensor(x), self.tensor(torch.where(flips, -y, y))

        self.x, self.y = draw(c["n_train"], c["flip"])
        self.x_val, self.y_val = draw(c["n_val"], 0.0)
        self.x_test, self.y_test = draw(c["n_test"], 0.0)
        kernel = self.x @ self.x.T + c["ridge"] * torch.eye(c["n_train"], dtype=torch.float64)
        self.q_mat = self.y[:, None] * kernel * self.y[None, :]
        self.lipschitz = float(torch.linalg.eigvalsh(self.q_mat)[-1])
        self.ones = torch.ones(c["n_train"], dtype=torch.float64, device=self.device)

    @property
    def dim_inner(self):
        return self.config["n_train"]

    @property
    def dim_outer(self):
        return 1

    def weights(self, alpha: Tensor) -> Tensor:
        """w = Σ_i α_i y_i x_i (the primal weights on the shared features)."""
        return self.x.T @ (self.y * alpha)

    def inner_loss(self, theta, lam, batch=None):
        return 0.5 * theta @ (self.q_mat @ theta) - theta.sum()

    def outer_loss(self, theta, lam, batch=None):
        margins = self.y_val * (self.x_val @ self.weights(theta))
        return torch.nn.functional.softplus(-margins).mean()

    def inner_prox(self, theta, lam, step):
        return torch.minimum(torch.clamp(theta, min=0.0), lam.exp())

    def inner_coupled_constraints(self, theta, lam):
        """c(α, λ) = α − e^λ ≤ 0 (one per dual variable)."""
        return theta - lam.exp()

    def inner_uncoupled_projection(self, theta):
        return torch.clamp(theta, min=0.0)

    def project_feasible(self, theta, lam, lam_weight: float = 1.0):
        """Projection of (α, λ) onto {0 ≤ α ≤ e^λ} in the metric ‖Δα‖² + w‖Δλ‖²
        (w = ``lam_weight``; 1 = Euclidean): α' = clamp(α, 0, e^t) with t the global minimizer
        of h(t) = ½w(t − λ)² + ½Σ_i (α_i − e^t)₊² on [λ, log max α] (the set is not convex
        in λ: every root of h' is located by a scan and bisection and the best kept)."""
        theta, lam = theta.detach(), lam.detach()
        values = sorted((float(v) for v in theta if v > 0), reverse=True)
        t0 = float(lam.sum())
        if not values or values[0] <= math.exp(t0):
            return torch.minimum(torch.clamp(theta, min=0.0), lam.exp()), lam

        def excess(t):
            cap = math.exp(t)
            return [v - cap for v in itertools.takewhile(lambda v: v > cap, values)]

        def h(t):
            return 0.5 * lam_weight * (t - t0) ** 2 + 0.5 * sum(e * e for e in excess(t))

        def dh(t):
            return lam_weight * (t - t0) - math.exp(t) * sum(excess(t))

        t1 = math.log(values[0])
        grid = [t0 + (t1 - t0) * i / 32 for i in range(33)]
        slopes = [dh(t) for t in grid]
        candidates = [t1]
        for (a, b), (da, db) in zip(itertools.pairwise(grid), itertools.pairwise(slopes),
                                    strict=True):
            if da < 0 <= db:
                for _ in range(50):
                    mid = 0.5 * (a + b)
                    a, b = (mid, b) if dh(mid) < 0 else (a, mid)
                candidates.append(0.5 * (a + b))
        t = min(candidates, key=h)
        new_lam = torch.full_like(lam, t)
        return torch.minimum(torch.clamp(theta, min=0.0), new_lam.exp()), new_lam

    def init_outer(self, generator):
        """λ₀ = −3 (C = 0.05: most training points at the bound)."""
        return torch.full((1,), -3.0, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / self.lipschitz

    def outer_step_size(self):
        return 1.0

    def _solve(self, lam):
        n = self.config["n_train"]
        hi = torch.full((n,), float(lam.exp().sum()), dtype=torch.float64, device=self.device)
        return solve_box_qp(self.q_mat, self.ones, torch.zeros_like(hi), hi)

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        alpha = self.inner_solution(lam)
        cap = float(lam.exp().sum())
        hi = torch.full_like(alpha, cap)
        free, _, at_hi = box_active_sets(self.q_mat, self.ones, torch.zeros_like(hi), hi, alpha)
        dalpha = torch.where(at_hi, torch.full_like(alpha, cap), torch.zeros_like(alpha))
        if bool(free.any()) and bool(at_hi.any()):
            dalpha[free] = -torch.linalg.solve(self.q_mat[free][:, free],
                                               self.q_mat[free][:, at_hi] @ dalpha[at_hi])
        theta = alpha.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.outer_loss(theta, lam), theta)
        return (grad @ dalpha).reshape(1)

    def _compute_answer(self):
        def at(x):
            return torch.tensor([x], dtype=torch.float64, device=self.device)

        star = scalar_argmin(lambda x: self.value(at(x)),
                             lambda x: float(self.exact_hypergradient(at(x))), -6.0, 6.0)
        return at(star), self.value(at(star))

    def evaluate(self, theta, lam):
        with torch.no_grad():
            star, f_star = self._answer()
            margins = self.y_test * (self.x_test @ self.weights(theta))
            return {"suboptimality": self.value(lam) - f_star,
                    "lam_error": float((lam - star).abs().sum()),
                    "test_loss": float(torch.nn.functional.softplus(-margins).mean()),
                    "test_error": float((margins <= 0).double().mean())}
