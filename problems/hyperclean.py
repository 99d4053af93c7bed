"""Data hyper-cleaning at benchopt scale: per-sample weights σ(λ_i) of a softmax regression.

Franceschi et al. 2017 (ICML, "Forward and reverse gradient-based hyperparameter
optimization", sec. 5.1: MNIST, 5,000 train / 5,000 validation, half the training labels
corrupted) as scaled up by benchopt's bilevel benchmark (Dagréou, Ablin, Vaiter & Moreau
2022, "A framework for bilevel optimization that enables stochastic and global variance
reduction algorithms", NeurIPS, sec. 4 "datacleaning": 20,000 training samples, one weight
per sample, corruption p ∈ {0.5, 0.7, 0.9}).

Data: Fashion-MNIST (default; offline via Debian's ``dataset-fashion-mnist`` or
``blobench data fetch fashion_mnist``) or MNIST when present (``dataset=mnist``), read
through :mod:`blobench.toolkit.data`; a missing dataset makes the cell ``not_applicable`` ("data
missing: run `blobench data fetch X`"). Pixels / 255 plus an intercept: x ∈ ℝ^785, K = 10
classes, θ = W ∈ ℝ^{785×10} (7,850 coordinates). Splits (:func:`blobench.toolkit.data.splits.
three_way`): ``n_train`` / ``n_val`` from the training file, ``n_test`` from the test file.
Exactly round(p · n_train) training labels, chosen from the seed, are replaced by a label
drawn uniformly among the *other* nine classes (so every corrupted label is wrong);
validation and test labels are clean.

    inner  g(θ, λ) = 1/n Σ_i σ(λ_i) CE(x_iᵀW, ỹ_i) + ½ μ ‖θ‖²       (μ = ``l2`` > 0)
    outer  f(θ, λ) = 1/n_val Σ_val CE(x_iᵀW, y_i)

g is μ-strongly convex. With p_i = softmax(x_iᵀW), H = ∇²_θθ g, v = H⁻¹∇_θ f(θ*):

    ∇_θ g = Xᵀ(σ(λ) ⊙ (P − Y))/n + μθ,     (J v)_i = σ'(λ_i)/n · x_iᵀ V (p_i − e_{ỹ_i}),
    dF/dλ = −J v                                                   (IFT; Pedregosa 2016)

Ground truth (dense Hessians of 7,850² are not formed): θ*(λ) by Newton-CG
(:func:`blobench.toolkit.glm.newton_cg`) to ‖∇_θ g‖ ≤ ``gt_tol`` (1e-10), cached per λ and
warm-started from the latest θ*; ``exact_hypergradient`` solves H v = ∇_θ f by CG to a
relative residual ≤ ``gt_tol`` (the achieved ‖∇_θ g(θ*)‖ and CG residual of the last ground
truth are reported by :meth:`evaluate` as ``gt_inner_grad_norm`` / ``gt_cg_residual``).
A float32 instance (``full``) solves both on a float64 copy of its data
(:meth:`float64_twin`; same losses, same data rounded to float32 then widened) to
‖∇_θ g‖ ≤ ``GT_NEWTON_TOL_32`` = 1e-8 and a CG relative residual ≤ ``GT_CG_TOL_32`` = 1e-6,
and rounds the answers to float32: float32 Newton-CG stalls at ‖∇_θ g‖ ≈ 3e-4 at some λ
(rounding floor of the 20,000-term gradient), never meets a 1e-4 target there and spent its
30 damped iterations backtracking (measured at full size: 48.7 CPU-s for one θ*(λ) against
3 CPU-s where it converges). ``exact`` declines (dim θ = 7,850 > its dense limit).

Sizes: ``quick`` 300 train / 200 validation / 1,000 test (θ still 7,850; seconds);
``full`` 20,000 / 5,000 / 10,000 in float32 (benchopt's datacleaning size).
Mini-batches: index tensors of ``batch_size`` (64, as benchopt; ``sampling``: epochs of
shuffled blocks by default, :mod:`blobench.toolkit.sampling`) training / validation
samples (``n_inner_samples`` = n_train, ``n_outer_samples`` = n_val), so SABA & co apply.

Metrics: test accuracy (primary) and loss of θ; the cold restart of
:mod:`blobench.execution.metrics`
retrains at the final λ (θ*(λ) by Newton-CG) and records ``restart_test_accuracy``;
detection of the corrupted samples: flagged when σ(λ_i) ≤ ``flag_threshold``, precision and
recall against the corrupted set (:func:`blobench.toolkit.datasets.detection_metrics`).
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import datasets, glm
from blobench.toolkit.data import load_dataset
from blobench.toolkit.data.splits import image_features, three_way
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param

#: ground-truth tolerances of a float32 instance, met on its float64 twin (module docstring)


class Hyperclean(glm.Float64TwinGroundTruth, FiniteSumSamplers, Problem):
    name = "hyperclean"
    family = "data cleaning"
    reference = ("Franceschi et al. 2017 (ICML) sec. 5.1; Dagréou et al. 2022 (NeurIPS, "
                 "benchopt datacleaning)")
    params = {
        "dataset": Param(str, "fashion_mnist", "image dataset (blobench data list)",
                         choices=("fashion_mnist", "mnist")),
        "n_train": Param(int, 300, "training samples (noisy; one weight each)", low=2),
        "n_val": Param(int, 200, "clean validation samples (outer objective)", low=1),
        "n_test": Param(int, 1000, "test samples (0 = all of the test file)", low=0),
        "corruption": Param(float, 0.5, "p: fraction of training labels corrupted",
                            low=0.0, high=1.0, high_open=True),
        "l2": Param(float, 0.2, "μ: ridge of the inner problem (strong convexity)", low=0.0,
                    low_open=True),
        "flag_threshold": Param(float, 0.1, "a sample counts as detected when σ(λ_i) ≤ this",
                                low=0.0, high=0.5),
        "batch_size": Param(int, 64, "mini-batch size of the samplers; 0 = full batch", low=0),
        "sampling": sampling_param(),
        "dtype": dtype_param("float64"),
    }
    sizes = {"quick": {"n_train": 300, "n_val": 200, "n_test": 1000},
             "full": {"n_train": 20000, "n_val": 5000, "n_test": 10000, "dtype": "float32"}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    #: sizes of the two finite sums (set in build; declared here so that planning knows the
    #: problem is a finite sum without loading its data)
    n_inner_samples: int = 0
    n_outer_samples: int = 0
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=500, eval_every=50)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        self.dtype = torch_dtype(c["dtype"])
        data = load_dataset(c["dataset"])
        parts = three_way(data, c["n_train"], c["n_val"], c["n_test"], generator, self.name,
                          c["dataset"])
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
        _, corrupted = datasets.choose_corrupted(len(y_tr), c["corruption"], generator)
        shift = torch.randint(1, 10, (len(y_tr),), generator=generator)
        y_tr = torch.where(corrupted, (y_tr + shift) % 10, y_tr)  # a different class
        feats = [image_features(x, self.dtype).to(self.device) for x in (x_tr, x_va, x_te)]
        self.x, self.x_val, self.x_test = feats
        self.y, self.y_val, self.y_test = (y.to(self.device) for y in (y_tr, y_va, y_te))
        self.corrupted = corrupted.to(self.device)
        self.n_classes = 10
        self.n_inner_samples, self.n_outer_samples = len(y_tr), len(y_va)
        self.lipschitz_data = glm.softmax_smoothness(self.x)
        self.init_ground_truth(self.dtype)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1] * self.n_classes

    @property
    def dim_outer(self) -> int:
        return self.n_inner_samples

    # ---------------------------------------------------------------- losses
    def _train(self, lam, batch):
        w = torch.sigmoid(lam)
        if batch is None:
            return self.x, self.y, w
        return self.x[batch], self.y[batch], w[batch]

    def inner_loss(self, theta, lam, batch=None):
        x, y, w = self._train(lam, batch)
        return glm.softmax_loss(theta, x, y, w) + glm.ridge_penalty(theta, self.config["l2"])

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return glm.softmax_loss(theta, x, y)

    # ------------------------------------------------- analytic oracles (see docstring)
    def inner_grad_oracle(self, theta, lam, batch=None):
        x, y, w = self._train(lam, batch)
        return glm.softmax_grad(theta, x, y, w) + self.config["l2"] * theta

    def inner_hessian_operator(self, theta, lam, batch=None):
        x, _, w = self._train(lam, batch)
        data_part, mu = glm.softmax_hessian_operator(theta, x, w), self.config["l2"]
        return lambda v: torch.add(data_part(v), v, alpha=mu)

    def mixed_oracle(self, theta, lam, v, batch=None):
        x, y, _ = self._train(lam, batch)
        s = torch.sigmoid(lam if batch is None else lam[batch])
        dots = glm.softmax_example_dots(theta, x, y, v) * s * (1 - s) / x.shape[0]
        if batch is None:
            return dots
        return torch.zeros_like(lam).index_add_(0, batch, dots)

    def outer_grads_oracle(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return glm.softmax_grad(theta, x, y), torch.zeros_like(lam)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=self.dtype, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=self.dtype, device=self.device)

    def inner_step_size(self, lam):
        w_max = float(torch.sigmoid(lam.detach()).max())
        return 1.0 / (w_max * self.lipschitz_data + self.config["l2"])

    def outer_step_size(self):
        return 0.1 * self.n_inner_samples  # dF/dλ_i is O(1/n)

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, accuracy = glm.softmax_scores(theta, self.x_test, self.y_test)
            return {"test_accuracy": accuracy, "test_loss": loss,
                    **datasets.detection_metrics(torch.sigmoid(lam), self.corrupted,
                                                 self.config["flag_threshold"]),
                    **self.ground_truth_metrics()}
