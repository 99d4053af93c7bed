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

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import datasets, glm
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param


class PoisonLogreg(FiniteSumSamplers, Problem):
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
        "sampling": sampling_param(),
    }
    sizes = {"quick": {"n_train": 200, "n_val": 150, "n_poison": 10},
             "full": {"n_train": 285, "n_val": 142, "n_poison": 30}}
    primary_metric = "test_accuracy"
    higher_is_better = False  # a stronger attack leaves a less accurate model
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n_tr, n_va, n_p = c["n_train"], c["n_val"], c["n_poison"]
        if n_p > n_tr:
            raise UserError("poison_logreg: n_poison must be <= n_train (poison points start "
                            "as label-flipped copies of training points)")
        train, val, test = datasets.breast_cancer({"n_train": n_tr, "n_val": n_va}, generator,
                                                  self.name)
        self.x, self.y = map(self.tensor, train)
        self.x_val, self.y_val = map(self.tensor, val)
        self.x_test, self.y_test = map(self.tensor, test)
        src = torch.randperm(n_tr, generator=generator)[:n_p].to(self.device)
        self.y_poison = -self.y[src]
        self.n_features = self.x.shape[1] - 1  # without the intercept column
        b = c["box"]
        self.lam0 = torch.atanh((self.x[src, : self.n_features] / b).clamp(-0.95, 0.95)
                                ).reshape(-1)
        self.y_all = torch.cat([self.y, self.y_poison])
        self.n_inner_samples, self.n_outer_samples = n_tr + n_p, n_va
        theta_clean = glm.newton_logistic(self.x, self.y, c["l2"])
        self.clean_test_accuracy = glm.logistic_scores(theta_clean, self.x_test, self.y_test)[1]

    @property
    def dim_inner(self) -> int:
        return self.n_features + 1

    @property
    def dim_outer(self) -> int:
        return self.config["n_poison"] * self.n_features

    def poison_features(self, lam: torch.Tensor) -> torch.Tensor:
        """x_p = [b · tanh(Z), 1]: the poison points with their intercept column."""
        return datasets.with_intercept(
            self.config["box"] * torch.tanh(lam.reshape(self.config["n_poison"], -1)))

    def _train_set(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.x, self.poison_features(lam)])

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        x, y = self._train_set(lam), self.y_all
        if batch is not None:
            x, y = x[batch], y[batch]
        return glm.logistic_loss(theta, x, y) + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return -glm.logistic_loss(theta, x, y)

    def init_outer(self, generator):
        return self.lam0.clone()

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / (glm.logistic_smoothness(self._train_set(lam.detach())) + self.config["l2"])

    def outer_step_size(self):
        return 100.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, acc = glm.logistic_scores(theta, self.x_test, self.y_test)
            return {"test_accuracy": acc,
                    "test_loss": loss,
                    "val_loss": -float(self.outer_loss(theta, lam)),
                    "clean_test_accuracy": self.clean_test_accuracy,
                    "accuracy_drop": self.clean_test_accuracy - acc}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return glm.newton_logistic(self._train_set(lam.detach()), self.y_all, self.config["l2"])

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        mu = self.config["l2"]
        hess = glm.logistic_hessian(theta, self._train_set(lam), self.y_all) + glm.ridge_hessian(
            mu, self.dim_inner, theta)
        grad_f = -glm.logistic_grad(theta, self.x_val, self.y_val)  # ∇_θ(−val loss)
        v = torch.linalg.solve(hess, grad_f)
        lam_leaf = lam.clone().requires_grad_(True)
        with torch.enable_grad():
            grad_g = glm.logistic_grad(theta, self._train_set(lam_leaf), self.y_all) + mu * theta
            (mixed_v,) = torch.autograd.grad(grad_g @ v, lam_leaf)
        return -mixed_v
