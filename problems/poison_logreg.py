"""Data poisoning of L2-regularized logistic regression (breast_cancer).

Data: scikit-learn's breast_cancer (569 points, 30 features, y ∈ {−1, +1}; no download),
split by a permutation from the seed into ``n_train`` clean training, ``n_val`` validation
(the attacker's objective) and the remaining test points; features standardized with the
clean training statistics; a constant column (intercept) appended, d = 31.

The attacker adds ``n_poison`` points whose labels are fixed and whose features are learned.
Initialization (Muñoz-González et al. 2017, sec. 4): copies of ``n_poison`` training points
chosen from the seed, with their labels flipped. The features are kept in the box
[−b, b]^30 (b = ``box``, in standard deviations) by a smooth map: the outer variable is
λ = Z ∈ ℝ^{n_poison×30} (flattened) and the poison features are x_p = b · tanh(Z);
λ₀ = artanh(clip(x_init / b, ±0.95)). With ℓ(θ; x, y) = log(1 + exp(−y xᵀθ)):

    inner  g(θ, λ) = 1/(n + n_p) [Σ_clean ℓ(θ; x_i, y_i) + Σ_poison ℓ(θ; x_p(λ), y_p)] + ½μ‖θ‖²
    outer  f(θ, λ) = − 1/n_val Σ_val ℓ(θ; x_i, y_i)

The attacker **maximizes** the validation log-loss; since every algorithm minimizes f, f is
the *negative* validation loss (the reported ``outer_loss`` is negative; ``val_loss`` in the
evaluation is the positive one). g is μ-strongly convex (μ = ``l2`` > 0), so θ*(λ) is unique:
``inner_solution`` by damped Newton (‖∇g‖ ≤ 1e-12); ``exact_hypergradient`` by the IFT with
a dense Hessian H = X̃ᵀ D X̃/(n + n_p) + μI (D = σ(m)σ(−m)) and the mixed product
−∂_λ⟨∇_θ g(θ*, λ), H⁻¹∇_θ f⟩ taken by reverse-mode autodiff of the closed-form gradient
(float64). ``inner_step_size`` = 1/L, L = λ_max(X̃ᵀX̃)/(4(n + n_p)) + μ at the current λ.

Papers: Mehra & Hamm 2021 (ACML; poisoning experiment: regularized logistic regression
inner, poisoned points outer, maximize validation loss); Muñoz-González et al. 2017
("Towards poisoning of deep learning algorithms with back-gradient optimization"); Biggio
et al. 2012. Evaluation: **test accuracy of the poisoned model** (primary;
``higher_is_better = False`` so that the leaderboard ranks the strongest attack — the lowest
accuracy — first), test log-loss, the clean model's test accuracy (no poison; constant) and
the accuracy drop. Batches (``batch_size`` > 0): LongTensors of indices into the clean +
poison training sum (poison points are indices n .. n + n_p − 1) and into the validation set;
``n_inner_samples`` = n + n_p, ``n_outer_samples`` = n_val.
"""

from __future__ import annotations

import torch
import torch.nn.functional as tf

from blobench.errors import UserError
from blobench.params import Param
from blobench.problem import Budget, Problem


def _newton_logistic(x: torch.Tensor, y: torch.Tensor, mu: float, tol: float = 1e-12,
                     max_iter: int = 100) -> torch.Tensor:
    """argmin_θ mean softplus(−y xᵀθ) + ½ μ‖θ‖², damped Newton (Armijo)."""
    n, d = x.shape
    theta = torch.zeros(d, dtype=x.dtype, device=x.device)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)

    def loss(t: torch.Tensor) -> float:
        return float(tf.softplus(-y * (x @ t)).mean() + 0.5 * mu * (t @ t))

    for _ in range(max_iter):
        s = torch.sigmoid(-y * (x @ theta))
        grad = -(x.T @ (y * s)) / n + mu * theta
        gnorm = float(torch.linalg.vector_norm(grad))
        if gnorm <= tol:
            break
        step = torch.linalg.solve((x.T * (s * (1 - s))) @ x / n + mu * eye, grad)
        t, f0, slope = 1.0, loss(theta), float(grad @ step)
        if gnorm > 1e-6:
            while loss(theta - t * step) > f0 - 0.25 * t * slope and t > 1e-8:
                t *= 0.5
        theta = theta - t * step
    return theta


class PoisonLogreg(Problem):
    name = "poison_logreg"
    family = "data poisoning"
    reference = "Mehra & Hamm 2021 (ACML); Muñoz-González et al. 2017"
    params = {
        "n_train": Param(int, 200, "clean training points", low=2),
        "n_val": Param(int, 150, "validation points (the attacker's objective)", low=1),
        "n_poison": Param(int, 10, "poisoned points (their features are λ)", low=1),
        "box": Param(float, 3.0, "b: poison features in [−b, b] (standardized units)",
                     low=0.0, low_open=True),
        "l2": Param(float, 1e-2, "μ: ridge of the inner logistic regression", low=0.0,
                    low_open=True),
        "batch_size": Param(int, 0, "mini-batch size of the samplers; 0 = full batch", low=0),
    }
    sizes = {"quick": {"n_train": 200, "n_val": 150, "n_poison": 10},
             "full": {"n_train": 285, "n_val": 142, "n_poison": 30}}
    primary_metric = "test_accuracy"
    higher_is_better = False  # a stronger attack leaves a less accurate model
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        from sklearn.datasets import load_breast_cancer

        c = self.config
        data = load_breast_cancer()
        x = torch.as_tensor(data.data, dtype=torch.float64)
        y = torch.as_tensor(data.target, dtype=torch.float64) * 2 - 1
        n_tr, n_va, n_p = c["n_train"], c["n_val"], c["n_poison"]
        if n_tr + n_va >= x.shape[0]:
            raise UserError(f"poison_logreg: n_train + n_val must be < {x.shape[0]}")
        if n_p > n_tr:
            raise UserError("poison_logreg: n_poison must be <= n_train (poison points start "
                            "as label-flipped copies of training points)")
        perm = torch.randperm(x.shape[0], generator=generator)
        tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
        mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-12)

        def prep(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = torch.cat([(x[idx] - mean) / std, torch.ones(len(idx), 1, dtype=x.dtype)], 1)
            return self.tensor(z), self.tensor(y[idx])

        self.x, self.y = prep(tr)
        self.x_val, self.y_val = prep(va)
        self.x_test, self.y_test = prep(te)
        src = torch.randperm(n_tr, generator=generator)[:n_p].to(self.device)
        self.y_poison = -self.y[src]
        self.n_features = x.shape[1]
        b = c["box"]
        self.lam0 = torch.atanh((self.x[src, : self.n_features] / b).clamp(-0.95, 0.95)
                                ).reshape(-1)
        self.y_all = torch.cat([self.y, self.y_poison])
        self.n_inner_samples, self.n_outer_samples = n_tr + n_p, n_va
        theta_clean = _newton_logistic(self.x, self.y, c["l2"])
        self.clean_test_accuracy = float(
            ((self.y_test * (self.x_test @ theta_clean)) > 0).double().mean())

    @property
    def dim_inner(self) -> int:
        return self.n_features + 1

    @property
    def dim_outer(self) -> int:
        return self.config["n_poison"] * self.n_features

    def poison_features(self, lam: torch.Tensor) -> torch.Tensor:
        """x_p = [b · tanh(Z), 1]: the poison points with their intercept column."""
        feats = self.config["box"] * torch.tanh(lam.reshape(self.config["n_poison"], -1))
        return torch.cat([feats, torch.ones(feats.shape[0], 1, dtype=feats.dtype,
                                            device=feats.device)], 1)

    def _train_set(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.x, self.poison_features(lam)])

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        x, y = self._train_set(lam), self.y_all
        if batch is not None:
            x, y = x[batch], y[batch]
        return tf.softplus(-y * (x @ theta)).mean() + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return -tf.softplus(-y * (x @ theta)).mean()

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
        return self.lam0.clone()

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        x = self._train_set(lam.detach())
        lip = float(torch.linalg.eigvalsh(x.T @ x)[-1]) / (4 * x.shape[0])
        return 1.0 / (lip + self.config["l2"])

    def outer_step_size(self):
        return 100.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            margin = self.y_test * (self.x_test @ theta)
            acc = float((margin > 0).double().mean())
            return {"test_accuracy": acc,
                    "test_loss": float(tf.softplus(-margin).mean()),
                    "val_loss": -float(self.outer_loss(theta, lam)),
                    "clean_test_accuracy": self.clean_test_accuracy,
                    "accuracy_drop": self.clean_test_accuracy - acc}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return _newton_logistic(self._train_set(lam.detach()), self.y_all, self.config["l2"])

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        x = self._train_set(lam)
        n = x.shape[0]
        s = torch.sigmoid(-self.y_all * (x @ theta))
        eye = torch.eye(self.dim_inner, dtype=torch.float64, device=self.device)
        hess = (x.T * (s * (1 - s))) @ x / n + self.config["l2"] * eye
        s_val = torch.sigmoid(-self.y_val * (self.x_val @ theta))
        grad_f = (self.x_val.T @ (self.y_val * s_val)) / self.n_outer_samples  # ∇_θ(−val loss)
        v = torch.linalg.solve(hess, grad_f)
        lam_leaf = lam.clone().requires_grad_(True)
        with torch.enable_grad():
            x_l = self._train_set(lam_leaf)
            s_l = torch.sigmoid(-self.y_all * (x_l @ theta))
            grad_g = -(x_l.T @ (self.y_all * s_l)) / n + self.config["l2"] * theta
            (mixed_v,) = torch.autograd.grad(grad_g @ v, lam_leaf)
        return -mixed_v
