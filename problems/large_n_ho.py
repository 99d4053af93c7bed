"""Large-n hyperparameter optimization: ℓ2-regularized multinomial logistic regression with one
penalty e^λ per class or per feature.

The "ijcnn1" / "covtype" problems of benchopt's bilevel benchmark (Dagréou, Ablin, Vaiter &
Moreau 2022, NeurIPS, sec. 4: logistic regression with one exponential penalty per feature on
ijcnn1, multinomial with one per class on covtype) and of the stochastic bilevel literature
(SOBA/SABA, AmIGO, StocBiO), here on Fashion-MNIST by default so that it runs offline.

Data (``dataset``, read through :mod:`blobench.toolkit.data`; a missing dataset makes the cell
``not_applicable`` with "data missing: run `blobench data fetch X`"):

- ``fashion_mnist`` (default) / ``mnist``: pixels / 255 + intercept (d = 785), K = 10;
  full: 48,000 train / 12,000 validation from the 60,000 training images, 10,000 test.
- ``ijcnn1``: 22 features + intercept, K = 2 (labels ±1), per-feature penalty as in
  benchopt; the 49,990 training points are the inner set and the validation set comes from
  the 91,701 test points: ``n_train=49990 n_val=81701 n_test=10000``.
- ``covtype``: 54 features (scaled to [0, 1]) + intercept, K = 7, per-class penalty; one
  file, split 64 / 16 / 20 %: ``n_train=371847 n_val=92962 n_test=116203``.

With W ∈ ℝ^{d×K} (θ = W row-major), r = e^λ broadcast to W (``penalty=per_class``: r_jc =
e^{λ_c}, λ ∈ ℝ^K; ``per_feature``: r_jc = e^{λ_j}, λ ∈ ℝ^d):

    inner  g(θ, λ) = 1/n Σ_i CE(x_iᵀW, y_i) + ½ Σ_jc r_jc W_jc²
    outer  f(θ, λ) = 1/n_val Σ_val CE(x_iᵀW, y_i)
    ∇_θ g = Xᵀ(P − Y)/n + r ⊙ θ,  H v = softmax curvature · v + r ⊙ v,
    J v = Σ over the coordinates sharing λ_k of e^{λ_k} θ ⊙ v,  dF/dλ = −J H⁻¹ ∇_θ f

Ground truth: θ*(λ) by Newton-CG (:func:`blobench.toolkit.glm.newton_cg`) to ‖∇_θ g‖ ≤ ``gt_tol``
(1e-10), cached per λ and warm-started from the latest θ*; ``exact_hypergradient`` by CG to a
relative residual ≤ ``gt_tol``; achieved values reported as ``gt_inner_grad_norm`` /
``gt_cg_residual``. A float32 instance (``full``) solves both on a float64 copy of its data
(:meth:`float64_twin`; same losses, the float32 data widened) to ‖∇_θ g‖ ≤
``GT_NEWTON_TOL_32`` = 1e-8 and a CG relative residual ≤ ``GT_CG_TOL_32`` = 1e-6, and rounds
the answers to float32: in float32, Newton-CG on a sum of 10⁴–10⁵ terms stalls at its
rounding floor (‖∇_θ g‖ ≈ 3e-4 measured on ``hyperclean`` full) above a 1e-4 target and
spends its 30 damped iterations backtracking.

Sizes: ``quick`` 1,000 / 500 / 1,000 (float64, seconds); ``full`` 48,000 / 12,000 / 10,000
in float32. Mini-batches: ``batch_size`` (64) indices of the training / validation sums, by
the ``sampling`` scheme (:mod:`blobench.toolkit.sampling`).
Primary metric: test cross-entropy; test accuracy beside it.
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import glm
from blobench.toolkit.data import load_dataset
from blobench.toolkit.data.splits import image_features, three_way
from blobench.toolkit.datasets import with_intercept
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param

IMAGES = ("fashion_mnist", "mnist")
#: ground-truth tolerances of a float32 instance, met on its float64 twin (module docstring)


def glm_features(data: dict[str, torch.Tensor], parts: list, dtype: torch.dtype, name: str
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """Dense features with intercept and class indices 0..K−1 of each split, and K."""
    if name in IMAGES:
        return ([image_features(x, dtype) for x, _ in parts], [y.long() for _, y in parts],
                10)
    classes = torch.unique(data["y_train"])
    xs = [with_intercept(x.to_dense().to(dtype)) for x, _ in parts]
    return xs, [torch.searchsorted(classes, y) for _, y in parts], len(classes)


class LargeNHO(glm.Float64TwinGroundTruth, glm.ExpPenaltyDefaults, FiniteSumSamplers,
                Problem):
    name = "large_n_ho"
    family = "hyperparameter optimization"
    reference = ("Dagréou et al. 2022 (NeurIPS, benchopt ijcnn1/covtype); Pedregosa 2016 "
                 "(HOAG)")
    params = {
        "dataset": Param(str, "fashion_mnist", "dataset (blobench data list)",
                         choices=("fashion_mnist", "mnist", "ijcnn1", "covtype")),
        "penalty": Param(str, "per_class", "one e^λ per class or per feature",
                         choices=("per_class", "per_feature")),
        "n_train": Param(int, 1000, "training points (inner objective)", low=2),
        "n_val": Param(int, 500, "validation points (outer objective)", low=1),
        "n_test": Param(int, 1000, "test points (0 = all left)", low=0),
        "init_log_reg": Param(float, -2.0, "λ₀: initial log-penalty"),
        "batch_size": Param(int, 64, "mini-batch size of the samplers; 0 = full batch", low=0),
        "sampling": sampling_param(),
        "dtype": dtype_param("float64"),
    }
    sizes = {"quick": {"n_train": 1000, "n_val": 500, "n_test": 1000},
             "full": {"n_train": 48000, "n_val": 12000, "n_test": 10000, "dtype": "float32"}}
    primary_metric = "test_loss"
    higher_is_better = False
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
        xs, ys, self.n_classes = glm_features(data, parts, self.dtype, c["dataset"])
        self.x, self.x_val, self.x_test = (x.to(self.device) for x in xs)
        self.y, self.y_val, self.y_test = (y.to(self.device) for y in ys)
        self.n_features = self.x.shape[1]
        self.n_inner_samples, self.n_outer_samples = len(self.y), len(self.y_val)
        self.lipschitz_data = glm.softmax_smoothness(self.x)
        self.init_ground_truth(self.dtype)

    @property
    def dim_inner(self) -> int:
        return self.n_features * self.n_classes

    @property
    def dim_outer(self) -> int:
        return self.n_classes if self.config["penalty"] == "per_class" else self.n_features

    def ridge(self, lam: torch.Tensor) -> torch.Tensor:
        """r = e^λ broadcast to W (d × K), flattened like θ."""
        e = lam.exp()
        w = e[None, :] if self.config["penalty"] == "per_class" else e[:, None]
        return w.expand(self.n_features, self.n_classes).reshape(-1)

    def _fold(self, t: torch.Tensor) -> torch.Tensor:
        """Σ of a θ-shaped tensor over the coordinates that share one λ."""
        w = t.reshape(self.n_features, self.n_classes)
        return w.sum(0) if self.config["penalty"] == "per_class" else w.sum(1)

    # ---------------------------------------------------------------- losses
    def _train(self, batch):
        return (self.x, self.y) if batch is None else (self.x[batch], self.y[batch])

    def _val(self, batch):
        return (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])

    def inner_loss(self, theta, lam, batch=None):
        x, y = self._train(batch)
        return glm.softmax_loss(theta, x, y) + glm.ridge_penalty(theta, self.ridge(lam))

    def outer_loss(self, theta, lam, batch=None):
        return glm.softmax_loss(theta, *self._val(batch))

    # ------------------------------------------------- analytic oracles (see docstring)
    def inner_grad_oracle(self, theta, lam, batch=None):
        return glm.softmax_grad(theta, *self._train(batch)) + self.ridge(lam) * theta

    def inner_hessian_operator(self, theta, lam, batch=None):
        data_part = glm.softmax_hessian_operator(theta, self._train(batch)[0])
        r = self.ridge(lam)
        return lambda v: torch.addcmul(data_part(v), r, v)

    def mixed_oracle(self, theta, lam, v, batch=None):
        return self._fold(self.ridge(lam) * theta * v)

    def outer_grads_oracle(self, theta, lam, batch=None):
        return glm.softmax_grad(theta, *self._val(batch)), torch.zeros_like(lam)

    def outer_step_size(self):
        return 1.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, accuracy = glm.softmax_scores(theta, self.x_test, self.y_test)
            return {"test_loss": loss, "test_accuracy": accuracy,
                    "val_loss": float(self.outer_loss(theta, lam)),
                    **self.ground_truth_metrics()}
