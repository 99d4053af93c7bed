"""Data denoising by learned per-example weights: softmax regression on noisy digits.

Data: scikit-learn's digits (1797 8×8 images, 10 classes; shipped with the package),
pixels scaled to [0, 1] and a constant 1 appended (x̃ ∈ ℝ^65). A permutation from the seed
splits it into ``n_train`` training, ``n_val`` validation and the remaining test images.
Exactly round(noise_rate · n_train) training images, chosen from the seed, get a wrong label
drawn uniformly from the 9 other classes; validation and test labels are clean.
``noise_rate`` defaults to 0.25 (Mehra & Hamm ran 25 % and 50 % on MNIST; 0.5 is a parameter
value away).

Variables: θ = W ∈ ℝ^{65×10} (flattened row-major: θ[10j + c] = W_jc; the last row is the
bias), λ = z ∈ ℝ^n, weights a_i = ½(tanh z_i + 1) ∈ (0, 1), z₀ = 0. With
ℓ_i(θ) = −log softmax(x̃_iᵀW)_{y_i}:

    inner  g(θ, z) = 1/n Σ_i a_i ℓ_i(θ) + ½ μ ‖θ‖²        (noisy training set; μ = ``l2`` > 0)
    outer  f(θ, z) = 1/n_val Σ_{val} ℓ_i(θ)                 (clean validation set)

g is μ-strongly convex, so θ*(z) is unique. With p_i = softmax(x̃_iᵀW), P, Y (one-hot) the
n×10 matrices and v = H⁻¹ ∇_θ f reshaped to V ∈ ℝ^{65×10}:

    H[(j,c),(k,d)] = 1/n Σ_i a_i x̃_ij x̃_ik (p_ic δ_cd − p_ic p_id) + μ δ
    dF/dz_i = −(1/n) a'(z_i) (p_i − e_{y_i})ᵀ Vᵀ x̃_i,     a'(z) = ½(1 − tanh² z)

Ground truth (float64): ``inner_solution`` by damped Newton with this dense 650×650 Hessian
(‖∇g‖ ≤ 1e-11), ``exact_hypergradient`` by the dense solve above. ``inner_step_size`` = 1/L,
L = max_i a_i · λ_max(X̃ᵀX̃)/(2n) + μ (the softmax Hessian is ≼ ½I per example).

Paper: Mehra & Hamm 2021 (ACML), data denoising experiment (sec. 5; references.md §2), and
benchopt's datacleaning problem (Dagréou et al. 2022). Evaluation: test accuracy (primary,
higher is better), test loss; detection of the corrupted images: *flagged* = a_i ≤
``flag_threshold`` (default 0.1: the paper counts the examples that keep weight > 0.1);
precision / recall of the flagged set (precision = 0 when nothing is flagged),
``corrupt_downweighted`` = fraction of corrupted images with a_i < ½, ``kept_fraction``.

Stochastic algorithms: a batch is a LongTensor of example indices (``batch_size``, by the
``sampling`` scheme of blobench.toolkit.sampling: epochs of shuffled blocks by default, or with
replacement); g on a batch is 1/|B| Σ_{i∈B} a_i ℓ_i + ½μ‖θ‖². ``n_inner_samples`` = n_train and
``n_outer_samples`` = n_val are the sizes of the finite sums (for SABA-type methods).
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import datasets, glm
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param

N_CLASSES = 10


class ReweightDigits(FiniteSumSamplers, Problem):
    name = "reweight_digits"
    family = "data cleaning"
    reference = "Mehra & Hamm 2021 (ACML) sec. 5 (data denoising); Dagréou et al. 2022"
    params = {
        "n_train": Param(int, 500, "noisy training images (one weight each)", low=2),
        "n_val": Param(int, 200, "clean validation images (outer objective)", low=1),
        "noise_rate": Param(float, 0.25, "fraction of training labels replaced by a wrong one",
                            low=0.0, high=1.0, high_open=True),
        "l2": Param(float, 1e-2, "μ: ridge of the inner problem (strong convexity)", low=0.0,
                    low_open=True),
        "flag_threshold": Param(float, 0.1, "an image counts as detected when a_i ≤ this",
                                low=0.0, high=0.5),
        "batch_size": Param(int, 64, "mini-batch size of the samplers; 0 = full batch", low=0),
        "sampling": sampling_param(),
    }
    sizes = {"quick": {"n_train": 500, "n_val": 200},
             "full": {"n_train": 1000, "n_val": 300}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=500, eval_every=50)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n_tr, n_va = c["n_train"], c["n_val"]
        (x_tr, y_clean), (x_va, y_va), (x_te, y_te) = datasets.digits(
            {"n_train": n_tr, "n_val": n_va}, generator, self.name)
        bad, corrupted = datasets.choose_corrupted(n_tr, c["noise_rate"], generator)
        shift = torch.randint(1, N_CLASSES, (len(bad),), generator=generator)
        y_tr = y_clean.clone()
        y_tr[bad] = (y_tr[bad] + shift) % N_CLASSES  # a uniformly drawn *wrong* class
        self.x, self.y = self.tensor(x_tr), y_tr.to(self.device)
        self.y_clean = y_clean.to(self.device)
        self.corrupted = corrupted.to(self.device)
        self.x_val, self.y_val = self.tensor(x_va), y_va.to(self.device)
        self.x_test, self.y_test = self.tensor(x_te), y_te.to(self.device)
        self.n_inner_samples, self.n_outer_samples = n_tr, n_va
        self.lipschitz_data = glm.softmax_smoothness(self.x)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1] * N_CLASSES

    @property
    def dim_outer(self) -> int:
        return self.n_inner_samples

    weights = staticmethod(datasets.example_weights)  # a = ½(tanh z + 1)

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        a = self.weights(lam)
        x, y = self.x, self.y
        if batch is not None:
            x, y, a = x[batch], y[batch], a[batch]
        return glm.softmax_loss(theta, x, y, a) + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return glm.softmax_loss(theta, x, y)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        a_max = float(self.weights(lam.detach()).max())
        return 1.0 / (a_max * self.lipschitz_data + self.config["l2"])

    def outer_step_size(self):
        return 300.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, accuracy = glm.softmax_scores(theta, self.x_test, self.y_test)
            return {"test_accuracy": accuracy, "test_loss": loss,
                    **datasets.detection_metrics(self.weights(lam), self.corrupted,
                                                 self.config["flag_threshold"])}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return glm.newton_softmax(self.x, self.y, self.config["l2"], N_CLASSES,
                                  self.weights(lam.detach()))

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        a = self.weights(lam)
        theta = self.inner_solution(lam)
        hess = glm.softmax_hessian(theta, self.x, a) + glm.ridge_hessian(
            self.config["l2"], self.dim_inner, theta)
        v = torch.linalg.solve(hess, glm.softmax_grad(theta, self.x_val, self.y_val))
        da = datasets.example_weights_derivative(lam)
        return -da * glm.softmax_example_dots(theta, self.x, self.y, v) / self.n_inner_samples
