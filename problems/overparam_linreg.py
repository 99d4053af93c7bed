"""Overparameterized linear bilevel problems with exact implicit-bias answers (Vicol et al. 2022).

Both settings are instances of one quadratic form (Vicol, Lorraine, Pedregosa, Duvenaud,
Grosse, "On Implicit Bias in Overparameterized Bilevel Optimization", ICML 2022, sec. 4-5):

    inner  g(θ, λ) = ½ ‖A θ − (B λ + b)‖²         A ∈ ℝ^{n×d} with n < d (underdetermined)
    outer  f(θ, λ) = ½ ‖C θ − c‖²                   C ∈ ℝ^{m×d}

``setting="inner_overparam"`` (toy problem T1): A, B, b, C, c Gaussian (A, B, C scaled by
1/√columns), d > n, so the inner solution set S(λ) = {θ : Aθ = Bλ + b} is an affine space of
dimension d − n. Quick: d = 40, n = 10, p = dim λ = 5, m = 20; full: d = 400, n = 100,
p = 50, m = 200.

``setting="outer_overparam"`` (toy problem T3, "anti-distillation"): M ≫ 1 synthetic inputs x_s
(stratified: one uniform draw in each 1/M-cell of [−1, 1], so Φ is well conditioned) with
learnable targets λ ∈ ℝ^M, Fourier features φ(x) = [1, cos πx, sin πx, cos 2πx, ...] (the first
D, scaled by 1/√D; D > M); A = Φ = φ(x_s) (M×D), B = I, b = 0, and the outer loss on
``n_outer`` (default 1) real points x_o ~ U[−1, 1]: C = φ(x_o)ᵀ, c = y_o ~ 1 + ½N(0, 1) (kept
away from 0 so that F(λ₀) is not already ≈ 0). Here the outer problem has a whole affine set of
zero-loss solutions, and which one an algorithm reaches is decided by its hypergradient
approximation. Quick: D = 40, M = 20; full: D = 400, M = 200.
(The sizes are our choice; the paper's figures use the same construction at small scale.)

θ₀ (``init_inner``) is fixed by the seed: θ₀ ~ N(0, ``init_scale``²/d), the same vector for every
cold start; λ₀ = 0. Ground truth (float64, pseudo-inverses by SVD):

- cold-start (minimum-displacement) inner solution, what gradient descent from θ₀ converges to:
  ``min_norm_inner(λ, θ₀)`` = w_cs(λ) = θ₀ + A⁺(Bλ + b − Aθ₀) = argmin_{θ∈S(λ)} ‖θ − θ₀‖;
- ``exact_hypergradient(λ)`` = d/dλ f(w_cs(λ)) with θ₀ the problem's own init (cold start):
  = Jᵀ(C w_cs(λ) − c), J = C A⁺ B (equal to the IFT formula with H⁺ = (AᵀA)⁺ at w_cs);
- ``min_norm_outer(λ₀)`` = u_mn = λ₀ + J⁺(c − C w_cs(λ₀)): the outer solution gradient
  descent with exact cold-start hypergradients converges to (nearest λ₀ among minimizers of
  F(λ) = ½‖Jλ − r‖², r = c − C w_cs(0));
- ``optimal_value`` = ½‖(I − JJ⁺) r‖².

H = AᵀA is singular here (rank n < d): there is no unique ``inner_solution``, and implicit
methods must solve H v = ∇_θ f in the least-squares sense. ``inner_step_size`` = 1/L with
L = σ_max(A)²; ``outer_step_size`` = 1/σ_max(J)² (exact gradient descent on F is then stable).

Evaluation: ``cold_outer_loss`` = F(λ) = f(w_cs(λ)) (primary, lower is better: the value of λ
on its own, after re-training from θ₀ — Vicol et al.'s "re-train"), ``retrain_gap`` =
f(θ) − F(λ) (negative when a warm-started θ holds information that λ alone does not),
``outer_min_norm_dist`` = ‖λ − u_mn‖ and ``outer_min_norm_gap`` for the outer implicit bias.
"""

from __future__ import annotations

import math

import torch

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem


def fourier_features(x: torch.Tensor, dim: int) -> torch.Tensor:
    """φ(x) = [1, cos πx, sin πx, cos 2πx, sin 2πx, ...] (first ``dim`` entries) / √dim."""
    j = torch.arange(1, dim // 2 + 1, dtype=x.dtype, device=x.device)
    arg = math.pi * x[:, None] * j
    pairs = torch.stack([torch.cos(arg), torch.sin(arg)], 2).reshape(x.shape[0], -1)
    feats = torch.cat([torch.ones_like(x)[:, None], pairs], 1)[:, :dim]
    return feats / math.sqrt(dim)


class OverparamLinreg(Problem):
    name = "overparam_linreg"
    family = "synthetic (implicit bias)"
    reference = "Vicol et al. 2022 (ICML), toy problems T1 and T3"
    params = {
        "setting": Param(str, "inner_overparam", "T1 (underdetermined inner problem) or T3 "
                         "(anti-distillation: overparameterized outer problem)",
                         choices=("inner_overparam", "outer_overparam")),
        "dim_theta": Param(int, 40, "d (T1) or D Fourier features (T3)", low=2),
        "n_inner": Param(int, None, "rows of A: n (T1) or M synthetic points = dim λ (T3); "
                         "None = d/4 (T1) or d/2 (T3)", optional=True, low=1),
        "dim_lambda": Param(int, 5, "p = dim λ (T1 only)", low=1),
        "n_outer": Param(int, None, "rows of C: m (T1) or outer points (T3); None = d/2 (T1) "
                         "or 1 (T3)", optional=True, low=1),
        "init_scale": Param(float, 1.0, "θ₀ ~ N(0, init_scale²/d)", low=0.0),
    }
    sizes = {"quick": {"dim_theta": 40, "dim_lambda": 5},
             "full": {"dim_theta": 400, "dim_lambda": 50}}
    primary_metric = "cold_outer_loss"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        d = c["dim_theta"]
        t1 = c["setting"] == "inner_overparam"
        n = c["n_inner"] if c["n_inner"] is not None else max(1, d // 4 if t1 else d // 2)
        m = c["n_outer"] if c["n_outer"] is not None else (max(1, d // 2) if t1 else 1)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        if t1:
            if n >= d:
                raise UserError(f"overparam_linreg: n_inner={n} must be < dim_theta={d} "
                                "(underdetermined inner problem)")
            p = c["dim_lambda"]
            a, bm, bv = randn(n, d) / d**0.5, randn(n, p) / p**0.5, randn(n)
            cm, cv = randn(m, d) / d**0.5, randn(m)
        else:
            if n >= d:
                raise UserError(f"overparam_linreg: n_inner={n} synthetic points must be < "
                                f"dim_theta={d} features")
            # stratified: one synthetic input per cell of a uniform grid (well-conditioned Φ)
            cells = torch.arange(n, dtype=torch.float64)
            x_s = -1 + 2 * (cells + torch.rand(n, generator=generator, dtype=torch.float64)) / n
            x_o = torch.rand(m, generator=generator, dtype=torch.float64) * 2 - 1
            a = fourier_features(x_s, d)
            bm, bv = torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
            cm, cv = fourier_features(x_o, d), 1 + 0.5 * randn(m)
            self.x_synthetic, self.x_outer = self.tensor(x_s), self.tensor(x_o)
        self.a_mat, self.b_mat, self.b_vec = self.tensor(a), self.tensor(bm), self.tensor(bv)
        self.c_mat, self.c_vec = self.tensor(cm), self.tensor(cv)
        self.theta0 = self.tensor(c["init_scale"] * randn(d) / d**0.5)
        self.a_pinv = torch.linalg.pinv(self.a_mat)
        self.jac = self.c_mat @ self.a_pinv @ self.b_mat  # J = C A⁺ B  (m × p)
        self.jac_pinv = torch.linalg.pinv(self.jac)
        sv = torch.linalg.svdvals(self.a_mat)
        if float(sv[-1]) < 1e-8 * float(sv[0]):
            raise UserError("overparam_linreg: A is rank-deficient for this seed")
        self.lipschitz = float(sv[0]) ** 2
        self.outer_lipschitz = float(torch.linalg.svdvals(self.jac)[0]) ** 2
        r = self.c_vec - self.c_mat @ self.min_norm_inner(
            torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device), self.theta0)
        resid = r - self.jac @ (self.jac_pinv @ r)
        self.f_star = 0.5 * float(resid @ resid)
        self.lam_mn = self.min_norm_outer(self.init_outer(None))

    @property
    def dim_inner(self) -> int:
        return self.a_mat.shape[1]

    @property
    def dim_outer(self) -> int:
        return self.b_mat.shape[1]

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        r = self.a_mat @ theta - (self.b_mat @ lam + self.b_vec)
        return 0.5 * (r @ r)

    def outer_loss(self, theta, lam, batch=None):
        r = self.c_mat @ theta - self.c_vec
        return 0.5 * (r @ r)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return self.theta0.clone()

    def inner_step_size(self, lam):
        return 1.0 / self.lipschitz

    def outer_step_size(self):
        return 1.0 / self.outer_lipschitz

    def value(self, lam: torch.Tensor) -> float:
        """F(λ) = f(w_cs(λ)), the outer loss after a converged cold start from θ₀."""
        return float(self.outer_loss(self.min_norm_inner(lam, self.theta0), lam))

    def evaluate(self, theta, lam):
        with torch.no_grad():
            cold = self.value(lam)
            return {"cold_outer_loss": cold,
                    "retrain_gap": float(self.outer_loss(theta, lam)) - cold,
                    "outer_min_norm_dist": float(torch.linalg.vector_norm(lam - self.lam_mn)),
                    "suboptimality": cold - self.f_star}

    # ----------------------------------------------------------- ground truth
    def min_norm_inner(self, lam, theta0=None):
        if theta0 is None:
            theta0 = torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)
        target = self.b_mat @ lam.detach() + self.b_vec
        return theta0 + self.a_pinv @ (target - self.a_mat @ theta0)

    def exact_hypergradient(self, lam):
        w = self.min_norm_inner(lam, self.theta0)
        return self.jac.T @ (self.c_mat @ w - self.c_vec)

    def min_norm_outer(self, lam0: torch.Tensor) -> torch.Tensor:
        """u_mn = λ₀ + J⁺(c − C w_cs(λ₀)): where exact cold-start hypergradient descent goes."""
        lam0 = lam0.detach()
        resid = self.c_vec - self.c_mat @ self.min_norm_inner(lam0, self.theta0)
        return lam0 + self.jac_pinv @ resid

    def optimal_value(self):
        return self.f_star
