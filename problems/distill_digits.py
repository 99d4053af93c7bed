"""Dataset distillation of scikit-learn's digits into k synthetic images per class.

Data: digits (1797 8×8 images, 10 classes; shipped with scikit-learn), pixels scaled to
[0, 1]; a permutation from the seed splits it into ``n_train`` real training images (the
outer objective) and the remaining test images. float64 throughout (small sizes: exact
ground truth matters more than speed).

Variables: λ ∈ ℝ^{10k×64}, the synthetic images (flattened; labels fixed: k images of each
class, image 10i + c has class c), λ₀ uniform in [0, 1] from the seed (random init as in
Wang et al. 2018); θ = W ∈ ℝ^{65×10} of a linear softmax classifier on x̃ = [x, 1]
(flattened row-major, θ[10j + c] = W_jc), θ₀ = 0. With CE the cross-entropy:

    inner  g(θ, λ) = 1/(10k) Σ_s CE(x̃_s(λ)ᵀW, c_s) + ½ μ ‖θ‖²   (synthetic set; μ = ``l2`` > 0)
    outer  f(θ, λ) = 1/n Σ_i CE(x̃_iᵀW, y_i)                     (real training images)

With 10k ≪ 650 synthetic points the classifier interpolates them (the inner problem is
overparameterized); the ridge μ makes θ*(λ) unique. Ground truth: ``inner_solution`` by
damped Newton with the dense 650×650 softmax Hessian (‖∇g‖ ≤ 1e-11); ``exact_hypergradient``
= −∂_λ⟨∇_θ g(θ*, λ), H⁻¹∇_θ f(θ*)⟩, the mixed product taken by reverse-mode autodiff of the
closed-form ∇_θ g. ``inner_step_size`` = 1/L, L = λ_max(X̃_sᵀX̃_s)/(2·10k) + μ at the current λ.

Papers: Wang, Zhu, Torralba, Efros 2018 "Dataset Distillation" (1 and 10 images per class);
Vicol et al. 2022 Table 3 (distillation, 1 / 10 samples; warm-start accuracy lives in θ, not
in λ: compare ``test_accuracy`` with ``retrain_test_accuracy``, the accuracy of θ*(λ) trained
on the final synthetic images alone). A linear classifier stands in for their LeNet/MLP (the
MLP variant is left out: it would have no exact ground truth). Evaluation: test accuracy on
held-out real images (primary, higher is better), test loss, retrain accuracy.
Quick: k = 1 (10 images), n = 1000 real training images; full: k = 10 (100 images).
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import datasets, glm
from blobench.toolkit.sampling import index_batch, sampling_param

N_CLASSES = 10


class DistillDigits(Problem):
    name = "distill_digits"
    family = "dataset distillation"
    reference = "Wang et al. 2018 (Dataset Distillation); Vicol et al. 2022 Table 3"
    params = {
        "per_class": Param(int, 1, "k: synthetic images per class (paper: 1 and 10)", low=1),
        "n_train": Param(int, 1000, "real training images (outer objective)", low=1),
        "l2": Param(float, 1e-2, "μ: ridge of the inner classifier", low=0.0, low_open=True),
        "batch_size": Param(int, 0, "outer mini-batch size (real images); 0 = full", low=0),
        "sampling": sampling_param(),
    }
    sizes = {"quick": {"per_class": 1, "n_train": 1000},
             "full": {"per_class": 10, "n_train": 1200}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        (x_tr, y_tr), (x_te, y_te) = datasets.digits({"n_train": c["n_train"]}, generator,
                                                     self.name)
        self.x, self.y = self.tensor(x_tr), y_tr.to(self.device)
        self.x_test, self.y_test = self.tensor(x_te), y_te.to(self.device)
        n_syn = N_CLASSES * c["per_class"]
        self.y_syn = (torch.arange(n_syn) % N_CLASSES).to(self.device)
        self.lam0 = self.tensor(torch.rand(n_syn * 64, generator=generator,
                                           dtype=torch.float64))
        self.n_outer_samples = c["n_train"]

    @property
    def dim_inner(self) -> int:
        return 65 * N_CLASSES

    @property
    def dim_outer(self) -> int:
        return self.lam0.numel()

    def synthetic(self, lam: torch.Tensor) -> torch.Tensor:
        """The synthetic images with their bias column, (10k × 65)."""
        return datasets.with_intercept(lam.reshape(-1, 64))

    def inner_loss(self, theta, lam, batch=None):
        ce = glm.softmax_loss(theta, self.synthetic(lam), self.y_syn)
        return ce + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x, self.y) if batch is None else (self.x[batch], self.y[batch])
        return glm.softmax_loss(theta, x, y)

    def sample_outer_batch(self, generator):
        return index_batch(self, self.n_outer_samples, self.config["batch_size"], generator,
                           "outer")

    def init_outer(self, generator):
        return self.lam0.clone()

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / (glm.softmax_smoothness(self.synthetic(lam.detach())) + self.config["l2"])

    def outer_step_size(self):
        return 10.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, accuracy = glm.softmax_scores(theta, self.x_test, self.y_test)
            retrained = glm.softmax_scores(self.inner_solution(lam), self.x_test, self.y_test)
            return {"test_accuracy": accuracy, "test_loss": loss,
                    "retrain_test_accuracy": retrained[1]}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return glm.newton_softmax(self.synthetic(lam.detach()), self.y_syn, self.config["l2"],
                                  N_CLASSES)

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        xs = self.synthetic(lam)
        mu = self.config["l2"]
        hess = glm.softmax_hessian(theta, xs) + glm.ridge_hessian(mu, self.dim_inner, theta)
        v = torch.linalg.solve(hess, glm.softmax_grad(theta, self.x, self.y))
        lam_leaf = lam.clone().requires_grad_(True)
        with torch.enable_grad():
            grad_g = glm.softmax_grad(theta, self.synthetic(lam_leaf), self.y_syn) + mu * theta
            (mixed_v,) = torch.autograd.grad(grad_g @ v, lam_leaf)
        return -mixed_v
