"""Dataset distillation with a ConvNet: k synthetic images per class train a ConvNet-3.

Wang, Zhu, Torralba & Efros 2018 ("Dataset Distillation") as benchmarked by DC-BENCH (Cui,
Wang, Si & Hsieh 2022, ConvNet-3, images per class 1 / 10 / 50) and studied by Vicol,
Lorraine, Pedregosa, Duvenaud & Grosse 2022 ("On implicit bias in overparameterized bilevel
optimization", ICML, Table 3: distillation, warm-start vs cold-start vs warm-start +
re-train).

Data (:mod:`blobench.toolkit.data`): Fashion-MNIST (default; offline via Debian's
``dataset-fashion-mnist``), MNIST or CIFAR-10 when present; a missing dataset makes the cell
``not_applicable`` ("data missing: run `blobench data fetch X`"). ``n_train`` real training
images (the outer objective) and ``n_test`` test images (:func:`blobench.toolkit.data.splits.
three_way`), standardized per channel by the statistics of the real training images.

Variables: λ = (X̃, L, s), flattened in this order. X̃ = the 10k synthetic images (k =
``per_class``; image j has class j mod 10), in the standardized pixel space. With
``learn_labels``, L ∈ ℝ^{10k×10} = the logits of learnable soft labels q_j = softmax(L_j)
(soft-label distillation: Sucholutsky & Schonlau 2021; Bohdal, Yang & Hospedales 2020),
initialized at L₀_j = log((1 − ε) e_{j mod 10} + ε/10), ε = ``LABEL_SMOOTHING`` = 0.1, so
q₀ is the label-smoothed one-hot target (softmax never reaches an exact one-hot; the
simplex keeps g bounded below, which free label vectors would not). With ``learn_lr`` one
more coordinate s, a log step-size scale. θ = the weights w of a ConvNet
(:func:`blobench.toolkit.convnets.convnet3`: depth × [conv 3×3 – instance norm – ReLU – 2×2
average pooling], ``width`` channels, a linear classifier), θ₀ drawn from the cell's θ₀
generator (PyTorch's default init; the same θ₀ for every algorithm and every cold start of
the cell).

    inner  g(θ, λ) = e^s · 1/(10k) Σ_j H(q_j, net_θ(x̃_j))             (s = 0 without learn_lr)
    outer  f(θ, λ) = 1/n Σ_i CE(net_θ(x_i), y_i)                       (real training images)

H(q, z) = −Σ_c q_c log softmax(z)_c, the cross-entropy with a soft target; without
``learn_labels`` q_j = e_{j mod 10} (hard labels) and H is the ordinary cross-entropy. g is
linear in q, so ∂²g/∂θ∂L is a Jacobian product like the one of the images.
A gradient step of size η on g is a step of size η·e^s on the synthetic cross-entropy: e^s is
Wang et al.'s learnable step size (the minimizers of g do not depend on s, so only the
unrolled / truncated estimators see it). The inner problem is non-convex and, with 10k ≪
dim θ points, has a manifold of interpolating minimizers: no ground truth.

Evaluation (Vicol et al. 2022, Table 3): ``test_accuracy`` / ``test_loss`` of the
algorithm's own θ (warm start carries information in θ that λ does not give back), and the
**re-trained** network: the engine's cold restart (:mod:`blobench.execution.metrics`) trains from
the
cell's θ₀ on the final synthetic images alone for exactly ``retrain_steps`` full-batch
gradient steps of size ``inner_lr`` (a fixed budget, :attr:`Problem.retrain_steps`: a
non-convex inner problem has no convergence test that names one answer) and records
``restart_test_accuracy`` — the leaderboard ranks on it and shows the own-θ accuracy beside.

Defaults: η = 0.1, outer step 100 (plain SGD on pixels: unrolled with T = 20 from λ₀ reaches
72% test accuracy at quick in 30 outer steps), ``retrain_steps`` = 20 = the default T of
the double-loop entries, so that the re-train is exactly a cold start's inner training.

Sizes: ``quick`` a 2-block width-10 ConvNet (5,960 weights: above ``exact``'s dense-Hessian
limit, which a network of this kind is not for), 1 image per class, 100 real /
200 test images, seconds on a CPU; ``full`` ConvNet-3 width 128 (308,746
weights on Fashion-MNIST), 10 images per class (IPC 1 by ``per_class=1``), 10,000 real
images in mini-batches of 256, 10,000 test images, float32.

Evaluation cost (issue 15: ≤ 25 % of solver time): the own-θ metrics are cheap (200 test
images); the re-train (20 gradient steps on 10 images) runs on the expensive schedule only
(the first and the final evaluation); the engine's replay of one step under the live-tensor
probe at the final evaluation costs ≈ 2 steps' time. At the earlier 10 outer steps these
were 27–39 % of the solver time, so the quick budget is 30 outer steps, evaluated every 15
(3 evaluations, 2 of them with the re-train): the fixed cost is spread over a longer run
(20 steps still measured 17–21 %).
"""

from __future__ import annotations

import torch
from torch import nn

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import convnets
from blobench.toolkit.data import load_dataset
from blobench.toolkit.data.splits import three_way
from blobench.toolkit.sampling import index_batch, sampling_param

N_CLASSES = 10
#: ε of the learnable labels' initial targets q₀ = (1 − ε) one-hot + ε/10 (module docstring)
LABEL_SMOOTHING = 0.1


class DistillConvNet(convnets.NetworkInner, Problem):
    name = "distill_convnet"
    family = "dataset distillation"
    reference = ("Wang et al. 2018 (Dataset Distillation); DC-BENCH (Cui et al. 2022) "
                 "ConvNet-3; Vicol et al. 2022 Table 3")
    params = {
        "dataset": Param(str, "fashion_mnist", "image dataset (blobench data list)",
                         choices=("fashion_mnist", "mnist", "cifar10")),
        "per_class": Param(int, 1, "k: synthetic images per class (IPC; paper: 1, 10, 50)",
                           low=1),
        "n_train": Param(int, 100, "real training images (outer objective)", low=10),
        "n_test": Param(int, 200, "test images (0 = all of the test file)", low=0),
        "width": Param(int, 10, "channels of every conv block (ConvNet-3: 128)", low=1),
        "depth": Param(int, 2, "conv blocks (ConvNet-3: 3)", low=1, high=5),
        "inner_lr": Param(float, 0.1, "η: inner (and re-train) gradient step size",
                          low=0.0, low_open=True),
        "learn_lr": Param(bool, False, "λ also holds a log step-size scale s (g = e^s CE)"),
        "learn_labels": Param(bool, False, "λ also holds soft-label logits L (q = softmax L)"),
        "init": Param(str, "noise", "λ₀: standard normal noise, or real training images",
                      choices=("noise", "real")),
        "retrain_steps": Param(int, 20, "fixed budget of the re-train from θ₀ on λ (default: "
                               "the double-loop entries' default T)", low=1),
        "batch_size": Param(int, 0, "outer mini-batch of real images; 0 = full", low=0),
        "sampling": sampling_param(),
        "dtype": dtype_param("float32"),
    }
    sizes = {"quick": {},
             "full": {"per_class": 10, "n_train": 10000, "n_test": 10000, "width": 128,
                      "depth": 3, "batch_size": 256}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    n_outer_samples: int = 0
    budgets = {"quick": Budget(steps=30, eval_every=15),  # "Evaluation cost" above
               "full": Budget(steps=200, eval_every=20)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        self.dtype = torch_dtype(c["dtype"])
        data = load_dataset(c["dataset"])
        (x_tr, y_tr), _, (x_te, y_te) = three_way(data, c["n_train"], 0, c["n_test"],
                                                  generator, self.name, c["dataset"])
        stats = convnets.channel_stats(x_tr)
        self.x = convnets.images(x_tr, self.dtype, self.device, stats)
        self.x_test = convnets.images(x_te, self.dtype, self.device, stats)
        self.y, self.y_test = y_tr.to(self.device), y_te.to(self.device)
        self.image_shape = tuple(self.x.shape[1:])
        channels, side = self.image_shape[0], self.image_shape[1]
        self.model = convnets.convnet3(channels, side, N_CLASSES, c["width"], c["depth"])
        n_syn = N_CLASSES * c["per_class"]
        self.y_syn = (torch.arange(n_syn) % N_CLASSES).to(self.device)
        if c["init"] == "real":
            pick = torch.cat([torch.nonzero(y_tr == k).flatten()[:c["per_class"]]
                              for k in range(N_CLASSES)])
            images = self.x[pick.to(self.device)].view(N_CLASSES, c["per_class"], -1)
            images = images.transpose(0, 1).reshape(-1)  # image s has class s mod 10
        else:
            images = torch.randn(n_syn * self.x[0].numel(), generator=generator,
                                 dtype=self.dtype).to(self.device)
        extra = [torch.zeros(1, dtype=self.dtype, device=self.device)] if c["learn_lr"] else []
        labels = []
        if c["learn_labels"]:
            smoothed = ((1 - LABEL_SMOOTHING) * nn.functional.one_hot(self.y_syn, N_CLASSES)
                        + LABEL_SMOOTHING / N_CLASSES)
            labels = [torch.log(smoothed).to(self.dtype).reshape(-1)]
        self.lam0 = torch.cat([images, *labels, *extra])
        self.n_outer_samples = c["n_train"]
        self.retrain_steps = c["retrain_steps"]

    @property
    def dim_inner(self) -> int:
        return self.model.numel

    @property
    def dim_outer(self) -> int:
        return self.lam0.numel()

    @property
    def n_pixels(self) -> int:
        """Coordinates of λ holding the synthetic images."""
        return N_CLASSES * self.config["per_class"] * self.x[0].numel()

    def synthetic(self, lam: torch.Tensor) -> torch.Tensor:
        """The synthetic images X̃ (10k × C × H × W), a view of λ."""
        return lam[:self.n_pixels].view(-1, *self.image_shape)

    def soft_labels(self, lam: torch.Tensor) -> torch.Tensor | None:
        """q = softmax(L) (10k × 10) with ``learn_labels``, else None (hard labels)."""
        if not self.config["learn_labels"]:
            return None
        n = self.y_syn.numel() * N_CLASSES
        return torch.softmax(lam[self.n_pixels:self.n_pixels + n].view(-1, N_CLASSES), -1)

    def lr_scale(self, lam: torch.Tensor) -> torch.Tensor | float:
        return torch.exp(lam[-1]) if self.config["learn_lr"] else 1.0

    def inner_loss(self, theta, lam, batch=None):
        logits = self.model(theta, self.synthetic(lam))
        q = self.soft_labels(lam)
        target = self.y_syn if q is None else q  # cross_entropy takes class probabilities too
        return self.lr_scale(lam) * nn.functional.cross_entropy(logits, target)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x, self.y) if batch is None else (self.x[batch], self.y[batch])
        return convnets.mean_cross_entropy(self.model, theta, x, y)

    def sample_outer_batch(self, generator):
        return index_batch(self, self.n_outer_samples, self.config["batch_size"], generator,
                           "outer")

    def outer_step_size(self):
        return 100.0  # ‖dF/dX̃‖ ≈ 0.03–0.3 over 7,840 pixels (quick, measured)

    def evaluate(self, theta, lam):
        return self.test_scores(theta)
