"""Distillation of a 1-D regression data set into a few learned points (Vicol et al. 2022, T2).

Vicol, Lorraine, Pedregosa, Duvenaud, Grosse, "On Implicit Bias in Overparameterized Bilevel
Optimization", ICML 2022, toy problem T2 ("one-point distillation", references.md §1): a
linear model on a rich feature map is trained on ``n_synthetic`` synthetic points whose inputs
and targets are the outer variables; the outer objective is the fit to the real data.

Features φ: ℝ → ℝ^D, Fourier with a decaying spectrum (so that the minimum-norm interpolant is
smooth): φ(x) = [1, cos πx, sin πx, cos 2πx, sin 2πx, ...]_{1..D} with the pair of frequency j
scaled by j^(−``decay``), the whole vector by 1/√(1 + Σ_j j^(−2·decay)), so ‖φ(x)‖ = 1 for every x
when D is odd (every cosine has its sine).
λ = (x_s, y_s) ∈ ℝ^{2n} (n = ``n_synthetic``; with ``learn_inputs=false`` λ = y_s only and the
x_s stay at their initial values), Φ = φ(x_s) ∈ ℝ^{n×D}, D > n:

    inner  g(θ, λ) = ½ Σ_s (θᵀφ(x_s) − y_s)² = ½ ‖Φθ − y_s‖²       (underdetermined: D ≫ n)
    outer  f(θ, λ) = 1/(2N) Σ_i (θᵀφ(x_i) − y_i)²                   (N real points)

Real data: x_i ~ U[−1, 1], y_i = sin(πx) + ½ cos(3πx)... (``target`` below) + N(0, ``noise``²);
N = ``n_real`` training points (the outer objective) and ``n_test`` held-out points.
λ₀: x_s stratified (one uniform draw in each 1/n-cell of [−1, 1], well-conditioned Φ), y_s = 0.
θ₀ ~ N(0, ``init_scale``²/D), fixed by the seed (the same vector for every cold start).

The inner solution set S(λ) = {θ : Φθ = y_s} is an affine space of dimension D − n that
*rotates* when the inputs x_s move. Ground truth (float64):

- ``min_norm_inner(λ, θ₀)`` = θ_cs(λ) = θ₀ + Φᵀ(ΦΦᵀ)⁻¹(y_s − Φθ₀) = argmin_{θ∈S(λ)} ‖θ − θ₀‖,
  where gradient descent on g from θ₀ converges (cold start);
- ``exact_hypergradient(λ)`` = d/dλ f(θ_cs(λ), λ) with the problem's θ₀, by reverse-mode
  autodiff through this closed form (``torch.linalg.solve`` on the n×n Gram matrix ΦΦᵀ).
  This is the true cold-start hypergradient. It is *not* the pseudo-inverse IFT formula
  −J H⁺ ∇_θ f: when x_s moves, S(λ) rotates and dθ_cs/dx_s has an extra null-space term
  (I − P) dΦᵀ (ΦΦᵀ)⁻¹(y_s − Φθ₀) (P the projector on the row space of Φ) that the IFT
  formula leaves out. With ``learn_inputs=false`` the two agree.

Warm start with a converged inner loop projects the previous θ onto the new S(λ) (a proximal
best response); when S rotates, θ − θ₀ acquires null-space components and leaves θ_cs(λ):
warm-started θ can fit the real data better than any θ_cs(λ) — a fit that re-training from θ₀
on the final synthetic points loses (Vicol et al. §5; Table 3's "warm-start + re-train").

Evaluation: ``test_mse`` (primary, lower is better) = mean squared error of θ on the test
points, ``train_mse`` on the real training points, ``retrain_test_mse`` = test MSE of θ_cs(λ)
(re-trained from θ₀ on the synthetic points alone).
``inner_step_size`` = 1/λ_max(ΦΦᵀ). Quick: D = 65, n = 1, N = 100; full: D = 257, n = 10,
N = 400 (our sizes; the paper's figure uses the same construction at small scale).
Cost: O(n²D + n³) per ground-truth evaluation.
"""

from __future__ import annotations

import math

import torch

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem


def target(x: torch.Tensor) -> torch.Tensor:
    """The 1-D regression function of the real data."""
    return torch.sin(math.pi * x) + 0.5 * torch.cos(3 * math.pi * x) - 0.3 * x


class DistillLinear(Problem):
    name = "distill_linear"
    family = "dataset distillation (implicit bias)"
    reference = "Vicol et al. 2022 (ICML), toy problem T2 (one-point distillation)"
    params = {
        "n_synthetic": Param(int, 1, "n: learned synthetic points (paper: 1 and 10)", low=1),
        "dim_features": Param(int, 65, "D: Fourier features (D > n: overparameterized inner)",
                              low=2),
        "n_real": Param(int, 100, "N: real training points (outer objective)", low=1),
        "n_test": Param(int, 400, "held-out real points", low=1),
        "noise": Param(float, 0.05, "standard deviation of the label noise", low=0.0),
        "decay": Param(float, 1.0, "feature of frequency j scaled by j^(−decay)", low=0.0),
        "init_scale": Param(float, 1.0, "θ₀ ~ N(0, init_scale²/D)", low=0.0),
        "learn_inputs": Param(bool, True, "λ = (x_s, y_s) (else y_s only, x_s fixed)"),
    }
    sizes = {"quick": {"n_synthetic": 1, "dim_features": 65, "n_real": 100},
             "full": {"n_synthetic": 10, "dim_features": 257, "n_real": 400}}
    primary_metric = "test_mse"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n, d = c["n_synthetic"], c["dim_features"]
        if n >= d:
            raise UserError(f"distill_linear: n_synthetic={n} must be < dim_features={d} "
                            "(overparameterized inner problem)")

        def uniform(k: int) -> torch.Tensor:
            return torch.rand(k, generator=generator, dtype=torch.float64) * 2 - 1

        cells = torch.arange(n, dtype=torch.float64)
        x_s = -1 + 2 * (cells + torch.rand(n, generator=generator, dtype=torch.float64)) / n
        x_r, x_t = uniform(c["n_real"]), uniform(c["n_test"])
        y_r = target(x_r) + c["noise"] * torch.randn(c["n_real"], generator=generator,
                                                     dtype=torch.float64)
        y_t = target(x_t) + c["noise"] * torch.randn(c["n_test"], generator=generator,
                                                     dtype=torch.float64)
        self.theta0 = self.tensor(c["init_scale"] * torch.randn(d, generator=generator,
                                                                dtype=torch.float64) / d**0.5)
        j = torch.arange(1, d // 2 + 1, dtype=torch.float64)
        scale = torch.cat([torch.ones(1, dtype=torch.float64),
                           (j ** -c["decay"]).repeat_interleave(2)])[:d]
        # ‖φ(x)‖² = scale₀² + Σ_j s_j² (cos² + sin² = 1 per complete pair)
        self.feature_scale = self.tensor(scale / torch.sqrt(1 + (j ** (-2 * c["decay"])).sum()))
        self.freqs = self.tensor(math.pi * j)
        self.x_s0 = self.tensor(x_s)
        self.x_real, self.y_real = self.tensor(x_r), self.tensor(y_r)
        self.x_test, self.y_test = self.tensor(x_t), self.tensor(y_t)
        self.phi_real, self.phi_test = self.features(self.x_real), self.features(self.x_test)
        self.lam0 = torch.cat([self.x_s0, torch.zeros_like(self.x_s0)]) if c["learn_inputs"] \
            else torch.zeros_like(self.x_s0)
        gram = self.phi(self.lam0) @ self.phi(self.lam0).T
        ev = torch.linalg.eigvalsh(gram)
        if float(ev[0]) < 1e-10 * float(ev[-1]):
            raise UserError("distill_linear: synthetic features are rank-deficient for this seed")
        # one outer gradient step of size 1/‖J‖² on y_s (J = Φ_r Φ⁺ / √N, at λ₀)
        jac = self.phi_real @ torch.linalg.pinv(self.phi(self.lam0)) / c["n_real"] ** 0.5
        self._outer_step = 1.0 / float(torch.linalg.svdvals(jac)[0]) ** 2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) for a vector of inputs: (len(x) × D), differentiable in x."""
        arg = x[:, None] * self.freqs
        pairs = torch.stack([torch.cos(arg), torch.sin(arg)], 2).reshape(x.shape[0], -1)
        feats = torch.cat([torch.ones_like(x)[:, None], pairs], 1)[:, : self.dim_inner]
        return feats * self.feature_scale

    def split(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_s, y_s) from λ."""
        n = self.config["n_synthetic"]
        if self.config["learn_inputs"]:
            return lam[:n], lam[n:]
        return self.x_s0, lam

    def phi(self, lam: torch.Tensor) -> torch.Tensor:
        """Φ = φ(x_s(λ)), (n × D)."""
        return self.features(self.split(lam)[0])

    @property
    def dim_inner(self) -> int:
        return self.config["dim_features"]

    @property
    def dim_outer(self) -> int:
        return self.lam0.numel()

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        _, y_s = self.split(lam)
        r = self.phi(lam) @ theta - y_s
        return 0.5 * (r @ r)

    def outer_loss(self, theta, lam, batch=None):
        r = self.phi_real @ theta - self.y_real
        return 0.5 * (r @ r) / r.numel()

    def init_outer(self, generator):
        return self.lam0.clone()

    def init_inner(self, lam, generator):
        return self.theta0.clone()

    def inner_step_size(self, lam):
        phi = self.phi(lam.detach())
        return 1.0 / float(torch.linalg.eigvalsh(phi @ phi.T)[-1])

    def outer_step_size(self):
        return self._outer_step

    def _mse(self, theta: torch.Tensor) -> float:
        return float(((self.phi_test @ theta - self.y_test) ** 2).mean())

    def evaluate(self, theta, lam):
        with torch.no_grad():
            return {"test_mse": self._mse(theta),
                    "train_mse": float(((self.phi_real @ theta - self.y_real) ** 2).mean()),
                    "retrain_test_mse": self._mse(self.min_norm_inner(lam, self.theta0))}

    # ----------------------------------------------------------- ground truth
    def _cold_start(self, lam: torch.Tensor, theta0: torch.Tensor) -> torch.Tensor:
        """θ₀ + Φᵀ(ΦΦᵀ)⁻¹(y_s − Φθ₀), differentiable in λ."""
        phi = self.phi(lam)
        _, y_s = self.split(lam)
        coef = torch.linalg.solve(phi @ phi.T, y_s - phi @ theta0)
        return theta0 + phi.T @ coef

    def min_norm_inner(self, lam, theta0=None):
        if theta0 is None:
            theta0 = torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)
        return self._cold_start(lam.detach(), theta0.detach())

    def exact_hypergradient(self, lam):
        leaf = lam.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            value = self.outer_loss(self._cold_start(leaf, self.theta0), leaf)
            (grad,) = torch.autograd.grad(value, leaf)
        return grad

    def value(self, lam: torch.Tensor) -> float:
        """F(λ) = f(θ_cs(λ), λ): the outer loss after a converged cold start from θ₀."""
        with torch.no_grad():
            return float(self.outer_loss(self._cold_start(lam.detach(), self.theta0), lam))
