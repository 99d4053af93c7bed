"""Finite-sum quadratic bilevel problem: benchopt's ``simulated`` problem (Dagréou et al. 2022).

The synthetic problem of the bilevel benchmark of Dagréou, Ablin, Vaiter & Moreau (NeurIPS
2022, §4 and Fig. 2; benchopt's ``benchmark_bilevel``, dataset ``simulated``), written here
from its mathematical definition. Both levels are means of sample quadratics

    q_i(θ, λ) = ½ (x_iᵀθ)² + ½ (y_iᵀλ)² + (p_iᵀλ)(q_iᵀθ) + a_iᵀθ + b_iᵀλ ,

    inner  g(θ, λ) = (1/n) Σ_{i≤n} q_i^in(θ, λ)        outer  f(θ, λ) = (1/m) Σ_{j≤m} q_j^out(θ, λ)

with independent samples for the two levels. In matrix form (H = (1/n) Σ x_i x_iᵀ,
K = (1/n) Σ y_i y_iᵀ, C = (1/n) Σ p_i q_iᵀ ∈ ℝ^{p×d}, ā, b̄ the means; primes for the outer)

    g = ½ θᵀHθ + ½ λᵀKλ + λᵀCθ + āᵀθ + b̄ᵀλ,   f = ½ θᵀH'θ + ½ λᵀK'λ + λᵀC'θ + ā'ᵀθ + b̄'ᵀλ.

Every per-sample Hessian is rank one (as in the reference, which draws each H_i as the
empirical covariance of one Gaussian vector): x_i = A z_i with A symmetric, A² of spectrum
log-spaced in [μ, L_inner], so E[H_i] = A²; y_i likewise with spectrum {0} ∪ [μ, L_outer]
(one flat direction of the λ-quadratic); p_i = U D z_i, q_i = W z_i with U, W Haar-orthogonal
and D's singular values log-spaced in [μ, L_cross], so E[p_i q_iᵀ] = U D Wᵀ (the mixed
Jacobian is non-zero and not square-symmetric); a_i, b_i standard normal. Storing the rank-one
factors (n × d) instead of the n d×d matrices makes a mini-batch oracle O(b d), not O(b d²).

Closed forms (S = −H⁻¹Cᵀ, s = −H⁻¹ā):

    θ*(λ) = S λ + s,
    h(λ) = F(λ) = f(θ*(λ), λ)   (a quadratic in λ),
    ∇h(λ) = ∇_λ f(θ*, λ) − C H⁻¹ ∇_θ f(θ*, λ)               (IFT, J = ∇²_λθ g = C)
          = Q λ + ∇h(0),   Q = SᵀH'S + K' + C'S + SᵀC'ᵀ,
    λ* = −Q⁻¹ ∇h(0),  h* = h(λ*).

Data are redrawn (at most 20 times, from the same generator) until Q ≻ 0, as the reference
does, so that λ* is unique. Metrics (the reference's): ``suboptimality`` h(λ) − h*,
``grad_norm_sq`` ‖∇h(λ)‖², ``inner_distance_sq`` ‖θ − θ*(λ)‖² (benchopt's ``inner_distance``
is this square; the engine's ``inner_solution_dist`` is its root). Ground truth is computed in
float64 from the problem's own (possibly float32-rounded) data.

Sizes: ``full`` is the paper's: n = m = 1,024, d = p = 100, μ = 0.1, L_inner = L_outer = 1,
L_cross = 0.1 (inner and outer), mini-batches of 64, **float32** (the reference's precision);
``quick`` (seconds): n = m = 128, d = p = 10, batches of 16, float64. ``dtype`` overrides.
Mini-batches are index tensors over the samples (``n_inner_samples``/``n_outer_samples``), so
SABA and the other finite-sum methods apply; ``sampling`` chooses epochs of shuffled blocks
(``without_replacement``, the default and the reference's sampler) or i.i.d. draws
(``with_replacement``), see :mod:`blobench.toolkit.sampling`.

Initialization as the reference's objective: θ₀ = 0, λ₀ = −2 · 𝟙 (``init_outer``).

Step sizes: ``inner_step_size`` = 1/L_b with L_b the expected smoothness of a b-sample
mini-batch (Gower et al. 2019, Prop. 3.8): L_b = n(b−1)/(b(n−1)) L + (n−b)/(b(n−1)) L_max,
L = λ_max(H), L_max = max_i ‖x_i‖²; L_b = L for the full batch. ``outer_step_size`` = 1/λ_max(Q).
Cost: one oracle on b samples is O(b (d + p)) — the full batch too (n/b times a mini-batch
oracle, as a finite sum costs; the precomputed means H, K, C serve only the closed forms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param

Tensor = torch.Tensor
_TRIES = 20


@dataclass
class SampleQuadratics:
    """The rank-one factors of n sample quadratics q_i (rows), and their full-batch means."""

    x: Tensor  # n × d   ∇²_θθ q_i = x_i x_iᵀ
    y: Tensor  # n × p   ∇²_λλ q_i = y_i y_iᵀ
    p: Tensor  # n × p   ∇²_λθ q_i = p_i q_iᵀ
    q: Tensor  # n × d
    a: Tensor  # n × d
    b: Tensor  # n × p

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        self.h = self.x.T @ self.x / n
        self.k = self.y.T @ self.y / n
        self.c = self.p.T @ self.q / n
        self.a_mean, self.b_mean = self.a.mean(0), self.b.mean(0)

    def to(self, dtype: torch.dtype, device: torch.device) -> SampleQuadratics:
        return SampleQuadratics(*(t.to(dtype=dtype, device=device)
                                  for t in (self.x, self.y, self.p, self.q, self.a, self.b)))

    def _rows(self, batch: Tensor | None, names: str = "xypqab") -> tuple[Tensor, ...]:
        """The sample arrays ``names`` (of x, y, p, q, a, b) restricted to the batch: only the
        ones an oracle uses are gathered (a gather is costly under SABA's per-sample vmap)."""
        arrays = tuple(getattr(self, name) for name in names)
        return arrays if batch is None else tuple(t[batch] for t in arrays)

    # Every oracle, the full batch included, goes through the samples: O(|batch| (d + p)),
    # n/b times a mini-batch oracle, as a finite sum costs. (The means h, k, c would make a
    # full-batch oracle O(d²) — cheaper than a 64-sample one here — which no finite sum
    # offers in general; they serve the closed forms only.)
    def loss(self, theta: Tensor, lam: Tensor, batch: Tensor | None = None) -> Tensor:
        x, y, p, q, a, b = self._rows(batch)
        per_sample = (0.5 * (x @ theta) ** 2 + 0.5 * (y @ lam) ** 2 + (p @ lam) * (q @ theta)
                      + a @ theta + b @ lam)
        return per_sample.mean()

    def grad_theta(self, theta: Tensor, lam: Tensor, batch: Tensor | None = None) -> Tensor:
        """H θ + Cᵀλ + ā (on the batch)."""
        x, p, q, a = self._rows(batch, "xpqa")
        return (x.T @ (x @ theta) + q.T @ (p @ lam)) / len(x) + a.mean(0)

    def grad_lam(self, theta: Tensor, lam: Tensor, batch: Tensor | None = None) -> Tensor:
        """K λ + C θ + b̄ (on the batch)."""
        y, p, q, b = self._rows(batch, "ypqb")
        return (y.T @ (y @ lam) + p.T @ (q @ theta)) / len(y) + b.mean(0)

    def hessian_operator(self, batch: Tensor | None = None):
        """v ↦ H v (on the batch)."""
        (x,) = self._rows(batch, "x")
        x_n = x / len(x)
        return lambda v: x_n.T @ (x @ v)

    def mixed(self, v: Tensor, batch: Tensor | None = None) -> Tensor:
        """∇²_λθ · v = C v (on the batch)."""
        p, q = self._rows(batch, "pq")
        return p.T @ (q @ v) / len(p)


def _log_spectrum(low: float, high: float, k: int) -> Tensor:
    return torch.logspace(torch.log10(torch.tensor(low)).item(),
                          torch.log10(torch.tensor(high)).item(), k, dtype=torch.float64)


def _orthogonal(dim: int, generator: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def draw_samples(n: int, d: int, p: int, mu: float, l_theta: float, l_lam: float,
                 l_cross: float, generator: torch.Generator) -> SampleQuadratics:
    """n sample quadratics of the module docstring, float64 on CPU, from ``generator``."""
    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    u = _orthogonal(d, generator)
    root_h = (u * _log_spectrum(mu, l_theta, d).sqrt()) @ u.T      # A, A² of spectrum [μ, L]
    x = randn(n, d) @ root_h
    u = _orthogonal(p, generator)
    spec_k = torch.cat([torch.zeros(1, dtype=torch.float64), _log_spectrum(mu, l_lam, p - 1)])
    y = randn(n, p) @ ((u * spec_k.sqrt()) @ u.T)
    left, right = _orthogonal(p, generator), _orthogonal(d, generator)
    k = min(p, d)
    sing = torch.zeros(p, d, dtype=torch.float64)
    sing[torch.arange(k), torch.arange(k)] = _log_spectrum(mu, l_cross, k)
    z = randn(n, d)
    return SampleQuadratics(x=x, y=y, p=z @ (left @ sing).T, q=z @ right.T,
                            a=randn(n, d), b=randn(n, p))


@dataclass
class GroundTruth:
    """The closed forms of the module docstring, in float64: θ*(λ) = S λ + s, ∇h = Q λ + r."""

    inner: SampleQuadratics
    outer: SampleQuadratics

    def __post_init__(self) -> None:
        h, c = self.inner.h, self.inner.c
        self.s_mat = -torch.linalg.solve(h, c.T)
        self.s_vec = -torch.linalg.solve(h, self.inner.a_mean)
        o = self.outer
        cs = o.c @ self.s_mat
        self.q_mat = self.s_mat.T @ o.h @ self.s_mat + o.k + cs + cs.T
        self.r_vec = self.hypergradient(torch.zeros_like(o.b_mean))
        self.lam_star = -torch.linalg.solve(self.q_mat, self.r_vec)
        self.h_star = float(self.value(self.lam_star))
        eig = torch.linalg.eigvalsh(self.q_mat)
        self.min_eig, self.max_eig = float(eig[0]), float(eig[-1])

    def theta_star(self, lam: Tensor) -> Tensor:
        return self.s_mat @ lam + self.s_vec

    def value(self, lam: Tensor) -> Tensor:
        return self.outer.loss(self.theta_star(lam), lam)

    def hypergradient(self, lam: Tensor) -> Tensor:
        """∇_λ f(θ*, λ) − C H⁻¹ ∇_θ f(θ*, λ) (the IFT, not the Q λ + r shortcut)."""
        theta = self.theta_star(lam)
        v = torch.linalg.solve(self.inner.h, self.outer.grad_theta(theta, lam))
        return self.outer.grad_lam(theta, lam) - self.inner.c @ v


class FiniteSumQuadratic(FiniteSumSamplers, Problem):
    name = "finite_sum_quadratic"
    family = "synthetic (closed form, finite sum)"
    reference = ("Dagréou, Ablin, Vaiter, Moreau 2022 (NeurIPS), §4 / Fig. 2: benchopt "
                 "bilevel benchmark, simulated quadratics")
    params = {
        "n_inner": Param(int, 1024, "n, inner samples", low=2),
        "n_outer": Param(int, 1024, "m, outer samples", low=2),
        "dim_inner": Param(int, 100, "d = dim θ", low=1),
        "dim_outer": Param(int, 100, "p = dim λ", low=2),
        "mu": Param(float, 0.1, "μ: smallest curvature (inner strong convexity)", low=0.0,
                    low_open=True),
        "l_inner": Param(float, 1.0, "L_inner: largest curvature in θ", low=0.0, low_open=True),
        "l_outer": Param(float, 1.0, "L_outer: largest curvature in λ", low=0.0, low_open=True),
        "l_cross_inner": Param(float, 0.1, "largest singular value of the inner C", low=0.0,
                               low_open=True),
        "l_cross_outer": Param(float, 0.1, "largest singular value of the outer C'", low=0.0,
                               low_open=True),
        "batch_size": Param(int, 64, "mini-batch size of both samplers; 0 = full batch",
                            low=0),
        "init_outer": Param(float, -2.0, "λ₀ = init_outer · 𝟙 (the reference's −2); θ₀ = 0"),
        "sampling": sampling_param(),
        "dtype": dtype_param("float64"),
    }
    sizes = {
        "quick": {"n_inner": 128, "n_outer": 128, "dim_inner": 10, "dim_outer": 10,
                  "batch_size": 16, "dtype": "float64"},
        "full": {"n_inner": 1024, "n_outer": 1024, "dim_inner": 100, "dim_outer": 100,
                 "batch_size": 64, "dtype": "float32"},
    }
    primary_metric = "suboptimality"
    #: h(λ) − h* is the outer objective itself (no held-out data on a synthetic problem):
    #: step sizes are selected on it, as the reference benchmark does
    validation_metric = "suboptimality"
    budgets = {"quick": Budget(steps=200, eval_every=20),
               "full": Budget(steps=4000, eval_every=200)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        for _ in range(_TRIES):
            self.install(*(draw_samples(n, c["dim_inner"], c["dim_outer"], c["mu"], c["l_inner"],
                                        c["l_outer"], c[cross], generator)
                           for n, cross in ((c["n_inner"], "l_cross_inner"),
                                            (c["n_outer"], "l_cross_outer"))))
            if self.truth.min_eig > 1e-12:
                return
        raise ValueError(f"{self.name}: no strongly convex value function in {_TRIES} draws")

    def install(self, inner: SampleQuadratics, outer: SampleQuadratics) -> None:
        """Use these sample quadratics (any dtype/device: cast to the problem's) as the data,
        and compute the ground truth of the data as the problem holds it, in float64."""
        self.dtype = torch_dtype(self.config["dtype"])
        self.inner, self.outer = (lv.to(self.dtype, self.device) for lv in (inner, outer))
        self.truth = GroundTruth(*(lv.to(torch.float64, self.device)
                                   for lv in (self.inner, self.outer)))
        self.n_inner_samples, self.n_outer_samples = len(self.inner.x), len(self.outer.x)
        self.lipschitz = float(torch.linalg.eigvalsh(self.truth.inner.h)[-1])
        self.lipschitz_max = float((self.truth.inner.x ** 2).sum(1).max())

    @property
    def dim_inner(self) -> int:
        return self.config["dim_inner"]

    @property
    def dim_outer(self) -> int:
        return self.config["dim_outer"]

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        return self.inner.loss(theta, lam, batch)

    def outer_loss(self, theta, lam, batch=None):
        return self.outer.loss(theta, lam, batch)

    # ------------------------------------------------- analytic oracles (engine fast path)
    def inner_grad_oracle(self, theta, lam, batch=None):
        return self.inner.grad_theta(theta, lam, batch)

    def inner_hessian_operator(self, theta, lam, batch=None):
        return self.inner.hessian_operator(batch)

    def mixed_oracle(self, theta, lam, v, batch=None):
        return self.inner.mixed(v, batch)

    def outer_grads_oracle(self, theta, lam, batch=None):
        return self.outer.grad_theta(theta, lam, batch), self.outer.grad_lam(theta, lam, batch)

    # ------------------------------------------------------------ set-up
    def init_outer(self, generator):
        return torch.full((self.dim_outer,), self.config["init_outer"], dtype=self.dtype,
                          device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=self.dtype, device=self.device)

    def inner_step_size(self, lam):
        n, b = self.n_inner_samples, self.config["batch_size"]
        if b == 0 or b >= n:
            return 1.0 / self.lipschitz
        smooth = (n * (b - 1) * self.lipschitz + (n - b) * self.lipschitz_max) / (b * (n - 1))
        return 1.0 / smooth

    def outer_step_size(self):
        return 1.0 / self.truth.max_eig

    # ----------------------------------------------------------- ground truth
    def _f64(self, x: Tensor) -> Tensor:
        return x.detach().to(torch.float64)

    def evaluate(self, theta, lam):
        lam64 = self._f64(lam)
        grad = self.truth.hypergradient(lam64)
        return {"suboptimality": float(self.truth.value(lam64)) - self.truth.h_star,
                "grad_norm_sq": float(grad @ grad),
                "inner_distance_sq": float(((self._f64(theta)
                                             - self.truth.theta_star(lam64)) ** 2).sum())}

    def inner_solution(self, lam):
        return self.truth.theta_star(self._f64(lam)).to(self.dtype)

    def exact_hypergradient(self, lam):
        return self.truth.hypergradient(self._f64(lam)).to(self.dtype)

    def optimal_value(self):
        return self.truth.h_star
