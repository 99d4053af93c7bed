"""Data cleaning by per-example weights: logistic regression on breast_cancer with flipped labels.

Data: scikit-learn's breast_cancer (569 points, 30 features, y ∈ {−1, +1}; no download).
A permutation drawn from the seed splits it into ``n_train`` training, ``n_val`` validation
and the remaining test points; features standardized with training statistics, plus a
constant column (intercept), d = 31. Exactly round(noise_rate · n_train) training points,
chosen from the seed, have their label flipped (the validation and test sets stay clean).

Outer variables λ = z ∈ ℝ^n (one per training point), weights a_i = ½(tanh z_i + 1) ∈ (0, 1),
z₀ = 0 (every a_i = ½). With ℓ_i(θ) = log(1 + exp(−y_i x_iᵀθ)):

    inner  g(θ, z) = 1/n Σ_i a_i ℓ_i(θ) + ½ μ ‖θ‖²           (θ ∈ ℝ^d, μ = ``l2`` > 0)
    outer  f(θ, z) = 1/n_val Σ_{val} ℓ_i(θ)                   (clean validation data)

g is μ-strongly convex. With v = H⁻¹∇_θ f, H = Xᵀ diag(a_i σ(m_i)σ(−m_i)) X / n + μI:

    dF/dz_i = (1/n) a'(z_i) y_i σ(−m_i) x_iᵀ v,   a'(z) = ½(1 − tanh² z),   m_i = y_i x_iᵀθ*.

This is the data-denoising experiment of Mehra & Hamm 2021 (ACML; sec. 5, on MNIST there)
and the "datacleaning" problem of benchopt's bilevel benchmark (Dagréou et al. 2022), here on
a small tabular dataset so that ground truth is exact: ``inner_solution`` by damped Newton
(‖∇g‖ ≤ 1e-12), ``exact_hypergradient`` by the dense solve above (float64).
``inner_step_size`` = 1/L, L = max_i a_i · λ_max(XᵀX)/(4n) + μ.

Stochastic algorithms: a batch is a LongTensor of example indices (``batch_size`` of them,
by the ``sampling`` scheme of blobench.toolkit.sampling: epochs of shuffled blocks by default, or
i.i.d.
draws with replacement); g on a batch is 1/|B| Σ_{i∈B} a_i ℓ_i + ½μ‖θ‖² (unbiased).
``n_inner_samples`` = n_train and ``n_outer_samples`` = n_val are the sizes of the two finite
sums (for variance-reduced methods such as SABA); index i of the inner sum is training point i.

Evaluation: test accuracy (primary, higher is better), test log-loss; detection of the
corrupted points: a point is *flagged* when a_i ≤ ``flag_threshold`` (default 0.1, the
paper's "examples that keep weight > 0.1" criterion); precision and recall of the flagged
set against the corrupted set (precision = 0 when nothing is flagged), and
``corrupt_downweighted`` = fraction of corrupted points with a_i < ½ (below their start).
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import datasets, glm
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param


class DatacleaningLogreg(FiniteSumSamplers, Problem):
    name = "datacleaning_logreg"
    family = "data cleaning"
    reference = "Mehra & Hamm 2021 (ACML) sec. 5; Dagréou et al. 2022 (benchopt datacleaning)"
    params = {
        "n_train": Param(int, 300, "training points (noisy; one weight each)", low=2),
        "n_val": Param(int, 130, "clean validation points (outer objective)", low=1),
        "noise_rate": Param(float, 0.25, "fraction of training labels flipped", low=0.0,
                            high=1.0, high_open=True),
        "l2": Param(float, 1e-2, "μ: ridge of the inner problem (strong convexity)", low=0.0,
                    low_open=True),
        "flag_threshold": Param(float, 0.1, "a point counts as detected when a_i ≤ this",
                                low=0.0, high=0.5),
        "batch_size": Param(int, 32, "mini-batch size of the samplers; 0 = full batch", low=0),
        "sampling": sampling_param(),
    }
    sizes = {"quick": {"n_train": 300, "n_val": 130},
             "full": {"n_train": 350, "n_val": 110}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=500, eval_every=50)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n_tr, n_va = c["n_train"], c["n_val"]
        (x_tr, y_tr), val, test = datasets.breast_cancer({"n_train": n_tr, "n_val": n_va},
                                                         generator, self.name)
        _, corrupted = datasets.choose_corrupted(n_tr, c["noise_rate"], generator)
        y_tr[corrupted] = -y_tr[corrupted]
        self.x, self.y = self.tensor(x_tr), self.tensor(y_tr)
        self.corrupted = corrupted.to(self.device)
        self.x_val, self.y_val = map(self.tensor, val)
        self.x_test, self.y_test = map(self.tensor, test)
        self.n_inner_samples, self.n_outer_samples = n_tr, n_va
        self.lipschitz_data = glm.logistic_smoothness(self.x)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1]

    @property
    def dim_outer(self) -> int:
        return self.n_inner_samples

    weights = staticmethod(datasets.example_weights)  # a = ½(tanh z + 1)

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        a = self.weights(lam)
        x, y = (self.x, self.y) if batch is None else (self.x[batch], self.y[batch])
        if batch is not None:
            a = a[batch]
        return glm.logistic_loss(theta, x, y, a) + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return glm.logistic_loss(theta, x, y)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        a_max = float(self.weights(lam.detach()).max())
        return 1.0 / (a_max * self.lipschitz_data + self.config["l2"])

    def outer_step_size(self):
        return 100.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, accuracy = glm.logistic_scores(theta, self.x_test, self.y_test)
            return {"test_accuracy": accuracy, "test_loss": loss,
                    **datasets.detection_metrics(self.weights(lam), self.corrupted,
                                                 self.config["flag_threshold"])}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return glm.newton_logistic(self.x, self.y, self.config["l2"], self.weights(lam.detach()))

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        a = self.weights(lam)
        theta = self.inner_solution(lam)
        mu = self.config["l2"]
        hess = glm.logistic_hessian(theta, self.x, self.y, a) + glm.ridge_hessian(
            mu, self.dim_inner, theta)
        v = torch.linalg.solve(hess, glm.logistic_grad(theta, self.x_val, self.y_val))
        da = datasets.example_weights_derivative(lam)
        return -da * glm.logistic_example_dots(theta, self.x, self.y, v) / self.n_inner_samples

