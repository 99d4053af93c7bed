"""Logistic regression with one L2 regularization per feature, on breast_cancer.

Data: scikit-learn's breast_cancer (569 points, 30 features, labels y ∈ {−1, +1}; shipped
with the package, no download). A permutation drawn from the seed splits it into
``n_train`` training, ``n_val`` validation and the remaining test points; features are
standardized with the *training* mean and standard deviation, and a constant column is
appended (the intercept, regularized like the other weights so that g is strongly convex).
d = 31.

    inner  g(θ, λ) = 1/n Σ_i log(1 + exp(−y_i x_iᵀθ)) + ½ Σ_j e^{λ_j} θ_j²   (θ ∈ ℝ^d)
    outer  f(θ, λ) = 1/n_val Σ_i log(1 + exp(−y_i x_iᵀθ))   on the validation set (λ ∈ ℝ^d)

g is e^{min λ}-strongly convex. With m_i = y_i x_iᵀθ, σ the logistic function and
D = diag σ(m_i)(1 − σ(m_i)):

    H = ∇²_θθ g = Xᵀ D X / n + diag e^λ,    J = ∇²_λθ g = diag(e^λ ⊙ θ),
    dF/dλ = −e^λ ⊙ θ* ⊙ H⁻¹ ∇_θ f(θ*)                       (IFT; Pedregosa 2016, eq. 3)

Ground truth: ``inner_solution`` by damped Newton's method to machine precision
(‖∇_θ g‖ ≤ 1e-12); ``exact_hypergradient`` by the dense solve above (d = 31: exact in float64).
``inner_step_size`` = 1/L with L = λ_max(XᵀX)/(4n) + max_j e^{λ_j} (σ' ≤ ¼).

This is the ℓ2-regularized logistic regression hyperparameter problem of Pedregosa 2016
(HOAG) and of benchopt's bilevel benchmark (Dagréou et al. 2022, one exp-penalty per
feature). Primary metric: **test log-loss** (lower is better) — the quantity the outer
objective estimates, continuous (test accuracy on ~140-220 points moves in steps of
0.5-0.7 % and ties most methods); test accuracy is reported beside it.
Cost: one inner gradient = O(n d); exact ground truth O(n d² + d³).
"""

from __future__ import annotations

import torch
import torch.nn.functional as tf

from blobench.errors import UserError
from blobench.params import Param
from blobench.problem import Budget, Problem


def _newton_logistic(x: torch.Tensor, y: torch.Tensor, reg: torch.Tensor, tol: float = 1e-12,
                     max_iter: int = 100) -> torch.Tensor:
    """argmin_θ mean softplus(−y xᵀθ) + ½ Σ reg_j θ_j², damped Newton with backtracking."""
    n = x.shape[0]
    theta = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)

    def loss(t: torch.Tensor) -> torch.Tensor:
        return tf.softplus(-y * (x @ t)).mean() + 0.5 * (reg * t * t).sum()

    for _ in range(max_iter):
        s = torch.sigmoid(-y * (x @ theta))
        grad = -(x.T @ (y * s)) / n + reg * theta
        if float(torch.linalg.vector_norm(grad)) <= tol:
            break
        hess = (x.T * (s * (1 - s))) @ x / n + torch.diag(reg)
        step = torch.linalg.solve(hess, grad)
        t, f0, slope = 1.0, loss(theta), float(grad @ step)
        if float(torch.linalg.vector_norm(grad)) > 1e-6:  # damped phase: Armijo backtracking
            while float(loss(theta - t * step)) > float(f0) - 0.25 * t * slope and t > 1e-8:
                t *= 0.5
        theta = theta - t * step
    return theta


class LogregHO(Problem):
    name = "logreg_ho"
    family = "hyperparameter optimization"
    reference = "Pedregosa 2016 (HOAG); Dagréou et al. 2022 (benchopt bilevel benchmark)"
    params = {
        "n_train": Param(int, 200, "training points (inner objective)", low=2),
        "n_val": Param(int, 150, "validation points (outer objective)", low=1),
        "init_log_reg": Param(float, -2.0, "λ₀: initial log-regularization of every feature"),
        "batch_size": Param(int, 0, "mini-batch size of the samplers; 0 = full batch", low=0),
    }
    sizes = {"quick": {"n_train": 200, "n_val": 150},
             "full": {"n_train": 285, "n_val": 142}}
    primary_metric = "test_loss"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        from sklearn.datasets import load_breast_cancer

        c = self.config
        data = load_breast_cancer()
        x = torch.as_tensor(data.data, dtype=torch.float64)
        y = torch.as_tensor(data.target, dtype=torch.float64) * 2 - 1
        n_tr, n_va = c["n_train"], c["n_val"]
        if n_tr + n_va >= x.shape[0]:
            raise UserError(f"logreg_ho: n_train + n_val must be < {x.shape[0]} "
                            f"(breast_cancer size) to leave test points")
        perm = torch.randperm(x.shape[0], generator=generator)
        tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
        mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-12)

        def prep(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = (x[idx] - mean) / std
            z = torch.cat([z, torch.ones(len(idx), 1, dtype=torch.float64)], 1)
            return self.tensor(z), self.tensor(y[idx])

        self.x, self.y = prep(tr)
        self.x_val, self.y_val = prep(va)
        self.x_test, self.y_test = prep(te)
        self.n_inner_samples, self.n_outer_samples = n_tr, n_va
        self.lipschitz_data = float(torch.linalg.eigvalsh(self.x.T @ self.x)[-1]) / (4 * n_tr)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1]

    @property
    def dim_outer(self) -> int:
        return self.x.shape[1]

    # ---------------------------------------------------------------- losses
    @staticmethod
    def _rows(x, y, batch):
        return (x, y) if batch is None else (x[batch], y[batch])

    def inner_loss(self, theta, lam, batch=None):
        x, y = self._rows(self.x, self.y, batch)
        return tf.softplus(-y * (x @ theta)).mean() + 0.5 * (lam.exp() * theta**2).sum()

    def outer_loss(self, theta, lam, batch=None):
        x, y = self._rows(self.x_val, self.y_val, batch)
        return tf.softplus(-y * (x @ theta)).mean()

    # ------------------------------------------------- analytic oracles (engine fast path)
    # with m = y ⊙ Xθ and s = σ(−m):  ∇_θ g = −Xᵀ(y ⊙ s)/n + e^λ ⊙ θ,
    # H v = Xᵀ(s(1 − s) ⊙ X v)/n + e^λ ⊙ v,  J v = e^λ ⊙ θ ⊙ v; on the validation set
    # ∇_θ f = −X_valᵀ(y_val ⊙ s_val)/n_val, ∇_λ f = 0.
    # Z = −y ⊙ X (rows of the training set, y² = 1), so that s = σ(Zθ), ∇_θ g = Zᵀs/n + e^λ ⊙ θ
    # and H v = Zᵀ(s(1 − s) ⊙ Z v)/n + e^λ ⊙ v: five and eight tensor operations.
    def _signed_rows(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z, Z/n) of the batch; cached for the full batch (derived from the data, no new data)."""
        if batch is None:
            cached = self.__dict__.get("_signed_cache")
            if cached is None:
                z = -self.y[:, None] * self.x
                cached = self.__dict__["_signed_cache"] = (z, z / z.shape[0])
            return cached
        x, y = self._rows(self.x, self.y, batch)
        z = -y[:, None] * x
        return z, z / z.shape[0]

    def inner_grad_oracle(self, theta, lam, batch=None):
        z, z_n = self._signed_rows(batch)
        return torch.addcmul(z_n.T @ torch.sigmoid(z @ theta), lam.exp(), theta)

    def inner_hvp_oracle(self, theta, lam, v, batch=None):
        z, z_n = self._signed_rows(batch)
        s = torch.sigmoid(z @ theta)
        curvature = torch.addcmul(s, s, s, value=-1.0)  # s(1 − s) = σ'
        return torch.addcmul(z_n.T @ (curvature * (z @ v)), lam.exp(), v)

    def mixed_oracle(self, theta, lam, v, batch=None):
        return lam.exp() * theta * v

    def outer_grads_oracle(self, theta, lam, batch=None):
        x, y = self._rows(self.x_val, self.y_val, batch)
        s = torch.sigmoid(-y * (x @ theta))
        return x.T @ (y * s) / (-x.shape[0]), torch.zeros_like(lam)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        b = self.config["batch_size"]
        if b == 0 or b >= n:
            return None
        return torch.randint(n, (b,), generator=generator).to(self.device)

    def sample_inner_batch(self, generator):
        return self._sample(self.n_inner_samples, generator)

    def sample_outer_batch(self, generator):
        return self._sample(self.n_outer_samples, generator)

    def init_outer(self, generator):
        return torch.full((self.dim_outer,), self.config["init_log_reg"], dtype=torch.float64,
                          device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / (self.lipschitz_data + float(lam.detach().exp().max()))

    def outer_step_size(self):
        return 10.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            margin = self.y_test * (self.x_test @ theta)
            return {"test_loss": float(tf.softplus(-margin).mean()),
                    "test_accuracy": float((margin > 0).double().mean()),
                    "val_loss": float(self.outer_loss(theta, lam))}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return _newton_logistic(self.x, self.y, lam.detach().exp())

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        reg = lam.exp()
        theta = self.inner_solution(lam)
        s = torch.sigmoid(-self.y * (self.x @ theta))
        hess = (self.x.T * (s * (1 - s))) @ self.x / self.n_inner_samples + torch.diag(reg)
        s_val = torch.sigmoid(-self.y_val * (self.x_val @ theta))
        grad_f = -(self.x_val.T @ (self.y_val * s_val)) / self.n_outer_samples
        return -reg * theta * torch.linalg.solve(hess, grad_f)
