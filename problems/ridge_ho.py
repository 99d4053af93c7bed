"""Ridge regression hyperparameter optimization (per-feature or scalar regularization).

Data: X ∈ ℝ^{n×d} with i.i.d. N(0, 1) entries, y = X θ_true + σ ε, θ_true with half of its
entries zero (so per-feature regularization has something to find); separate train,
validation and test draws, all from the seed.

    inner  g(θ, λ) = 1/(2n) ‖X θ − y‖² + ½ Σ_j e^{λ_j} θ_j²          (θ ∈ ℝ^d)
    outer  f(θ, λ) = 1/(2n_val) ‖X_val θ − y_val‖²                     (λ ∈ ℝ^d or ℝ)

g is strongly convex in θ: θ*(λ) = (XᵀX/n + diag e^λ)⁻¹ Xᵀy/n. With H = XᵀX/n + diag e^λ the
implicit function theorem gives the exact hypergradient

    dF/dλ = −e^λ ⊙ θ* ⊙ H⁻¹ ∇_θ f(θ*)        (summed over j for a scalar λ)

This is the classic testbed of gradient-based hyperparameter optimization (Pedregosa 2016,
HOAG; Franceschi et al. 2017) and of benchopt's quadratic bilevel benchmark.
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param


class RidgeHO(FiniteSumSamplers, Problem):
    name = "ridge_ho"
    family = "hyperparameter optimization"
    reference = "Pedregosa 2016 (HOAG); Franceschi et al. 2017"
    params = {
        "n_train": Param(int, 100, "training points", low=1),
        "n_val": Param(int, 100, "validation points (outer objective)", low=1),
        "n_test": Param(int, 1000, "held-out test points", low=1),
        "n_features": Param(int, 20, "d", low=1),
        "noise": Param(float, 1.0, "σ, noise standard deviation", low=0.0),
        "per_feature": Param(bool, True, "one regularization per feature (else one scalar)"),
        "batch_size": Param(int, 0, "mini-batch size of the samplers; 0 = full batch", low=0),
        "sampling": sampling_param(),
    }
    sizes = {
        "quick": {"n_train": 100, "n_val": 100, "n_test": 1000, "n_features": 20},
        "full": {"n_train": 500, "n_val": 500, "n_test": 5000, "n_features": 100},
    }
    primary_metric = "test_mse"
    higher_is_better = False
    #: quick: an evaluation against the exact ground truth costs 3–4 of these cheap steps
    #: (1.5–3 ms each), so every 20th step keeps it under 25 % of solver time (issue 15)
    budgets = {"quick": Budget(steps=100, eval_every=20),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        d = c["n_features"]
        theta_true = torch.randn(d, generator=generator, dtype=torch.float64)
        theta_true[torch.randperm(d, generator=generator)[: d // 2]] = 0.0

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randn(n, d, generator=generator, dtype=torch.float64)
            y = x @ theta_true + c["noise"] * torch.randn(n, generator=generator,
                                                          dtype=torch.float64)
            return self.tensor(x), self.tensor(y)

        self.x, self.y = draw(c["n_train"])
        self.x_val, self.y_val = draw(c["n_val"])
        self.x_test, self.y_test = draw(c["n_test"])
        self.theta_true = self.tensor(theta_true)
        self.gram = self.x.T @ self.x / c["n_train"]
        self.xty = self.x.T @ self.y / c["n_train"]
        self.lipschitz_data = float(torch.linalg.eigvalsh(self.gram)[-1])

    @property
    def n_inner_samples(self) -> int:
        """g is a mean over the n_train rows (plus the regularizer): a finite sum for SABA."""
        return self.config["n_train"]

    @property
    def n_outer_samples(self) -> int:
        return self.config["n_val"]

    @property
    def dim_inner(self) -> int:
        return self.config["n_features"]

    @property
    def dim_outer(self) -> int:
        return self.config["n_features"] if self.config["per_feature"] else 1

    # ---------------------------------------------------------------- losses
    def _rows(self, x: torch.Tensor, y: torch.Tensor, batch: torch.Tensor | None):
        return (x, y) if batch is None else (x[batch], y[batch])

    def inner_loss(self, theta, lam, batch=None):
        x, y = self._rows(self.x, self.y, batch)
        residual = x @ theta - y
        return 0.5 * (residual @ residual) / x.shape[0] + 0.5 * (lam.exp() * theta**2).sum()

    def outer_loss(self, theta, lam, batch=None):
        x, y = self._rows(self.x_val, self.y_val, batch)
        residual = x @ theta - y
        return 0.5 * (residual @ residual) / x.shape[0]

    # ------------------------------------------------- analytic oracles (engine fast path)
    # ∇_θ g = Xᵀ(Xθ − y)/n + e^λ ⊙ θ,  H v = XᵀX v/n + e^λ ⊙ v (two tensor operations
    # per product once e^λ is known),  J v = e^λ ⊙ θ ⊙ v
    # (summed to one entry for a scalar λ); full batch through the precomputed Gram matrix;
    # ∇_θ f = X_valᵀ(X_val θ − y_val)/n_val, ∇_λ f = 0.
    def inner_grad_oracle(self, theta, lam, batch=None):
        if batch is None:
            data = torch.addmv(self.xty, self.gram, theta, beta=-1.0)
        else:
            x, y = self._rows(self.x, self.y, batch)
            data = x.T @ (x @ theta - y) / x.shape[0]
        return torch.addcmul(data, lam.exp(), theta)

    def inner_hessian_operator(self, theta, lam, batch=None):
        weights = lam.exp()  # e^λ, once per point; broadcasts for a scalar λ
        if batch is None:
            return lambda v: torch.addmv(weights * v, self.gram, v)
        x = self.x[batch]
        x_n = x / x.shape[0]
        return lambda v: torch.addmv(weights * v, x_n.T, x @ v)

    def mixed_oracle(self, theta, lam, v, batch=None):
        out = lam.exp() * theta * v
        return out if self.config["per_feature"] else out.sum().reshape(1)

    def outer_grads_oracle(self, theta, lam, batch=None):
        x, y = self._rows(self.x_val, self.y_val, batch)
        return x.T @ (x @ theta - y) / x.shape[0], torch.zeros_like(lam)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / (self.lipschitz_data + float(lam.detach().exp().max()))

    def outer_step_size(self):
        return 10.0 if self.config["per_feature"] else 1.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            residual = self.x_test @ theta - self.y_test
            return {"test_mse": float(residual @ residual) / self.config["n_test"],
                    "val_loss": float(self.outer_loss(theta, lam))}

    # ----------------------------------------------------------- ground truth
    def _hessian(self, lam: torch.Tensor) -> torch.Tensor:
        reg = lam.detach().exp().expand(self.dim_inner)
        return self.gram + torch.diag(reg)

    def inner_solution(self, lam):
        return torch.linalg.solve(self._hessian(lam), self.xty)

    def exact_hypergradient(self, lam):
        theta = self.inner_solution(lam)
        grad_theta = self.x_val.T @ (self.x_val @ theta - self.y_val) / self.config["n_val"]
        v = torch.linalg.solve(self._hessian(lam), grad_theta)
        per_feature = -lam.detach().exp().expand(self.dim_inner) * theta * v
        return per_feature if self.config["per_feature"] else per_feature.sum().reshape(1)
