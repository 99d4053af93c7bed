"""Few-shot meta-learning problems: the meta-initialization λ as the outer variable.

A fixed pool of n meta-training tasks i = 1..n, each with a support set S_i and a query set
Q_i, and a small network with weights w ∈ ℝ^p (a flat vector, :mod:`blobench.toolkit.flatmodel`).
θ stacks the per-task fast weights, θ = (θ_1, …, θ_n) ∈ ℝ^{n·p}; λ ∈ ℝ^p is the shared
initialization (Finn, Abbeel, Levine 2017, "Model-Agnostic Meta-Learning", MAML):

    inner  g(θ, λ) = Σ_i L(θ_i; S_i) + (ρ/2) Σ_i ‖θ_i − λ‖²      (ρ = ``proximal`` ≥ 0)
    outer  f(θ, λ) = (1/n) Σ_i L(θ_i; Q_i)
    θ₀(λ) = (λ, …, λ)                                              (``inner_init_is_outer``)

Since θ_i appears only in task i's term, a gradient step of size α on g is one step of size α
on each task's own support loss, and the tasks are evaluated together with ``torch.func.vmap``.
With ρ = 0 (the default) the inner problem is MAML's: what matters is the T-step iterate from
θ₀(λ) (MAML differentiates through it), not the inner minimizer. With ρ > 0 it is the
proximal problem of iMAML (Rajeswaran, Finn, Kakade, Levine 2019, eq. 4), whose minimizer is
a function of λ and has the implicit meta-gradient dθ_i*/dλ = (I + ∇²L_i/ρ)⁻¹.

Held-out evaluation (:meth:`evaluate`, outside the timed region) adapts λ to each of the
meta-test tasks, drawn from the seed independently of the training pool, by ``eval_steps``
gradient steps of size α on the same inner loss, and reports the query loss (and accuracy for
classification) after ``eval_steps`` steps (the primary metric), after one step (MAML's
evaluation, §5.1) and before adaptation.

- ``sinusoid``: regression of y = A sin(x − φ), A ∈ [0.1, 5], φ ∈ [0, π], x ∈ [−5, 5], K
  support and K query points per task, a 1-40-40-1 ReLU MLP, mean squared error, α = 0.01
  (MAML §5.1: K = 10, meta-batch 25, Adam with meta step 1e-3).
- ``fewshot_digits``: N-way K-shot classification of scikit-learn's 8×8 digits (pixels scaled
  to [0, 1]); meta-train tasks draw their N classes from the first 10 − ``n_test_classes``
  digits, meta-test tasks from the last ``n_test_classes`` (disjoint classes), with a random
  class-to-label assignment per task; an MLP 64-h-N (or a linear softmax with h = 0),
  cross-entropy; primary metric: meta-test query accuracy.

Cost of one evaluation of g or f: n forward passes of the network on K points, vectorized.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit.datasets import load_digits_arrays
from blobench.toolkit.flatmodel import FlatModel, mlp

Tensor = torch.Tensor


class _FewShot(Problem):
    """Shared structure of the few-shot problems (not registered: no ``name``)."""

    family = "meta-learning"
    inner_init_is_outer = True
    #: the deployed model is θ re-adapted from λ per task (what ``evaluate`` measures), so the
    #: leaderboard ranks the own-θ metrics here (no re-trained θ*(λ))
    own_theta_deployed = True

    @classmethod
    def lam_in_losses(cls, params=None):
        """λ enters g only through the proximal term (ρ/2)‖θ_i − λ‖² (f never)."""
        return ((params or {}).get("proximal", cls.params["proximal"].default)) > 0
    common_params: dict[str, Param] = {
        "n_tasks": Param(int, 25, "meta-training tasks in the pool (all used every step)",
                         low=1),
        "n_test_tasks": Param(int, 100, "held-out meta-test tasks", low=1),
        "proximal": Param(float, 0.0, "ρ: proximal term (ρ/2)‖θ_i − λ‖² in g (iMAML needs > 0)",
                          low=0.0),
        "inner_lr": Param(float, 0.01, "α: task-adaptation step size (also used by evaluate)",
                          low=0.0, low_open=True),
        "meta_lr": Param(float, 1e-3, "the paper's meta step size (Adam), the default outer lr",
                         low=0.0, low_open=True),
        "eval_steps": Param(int, 10, "adaptation steps on meta-test tasks in evaluate", low=1),
    }

    # set by build(): self.model, self.support / self.query / self.test_support /
    # self.test_query = (x, y) with a leading task dimension
    model: FlatModel

    # ------------------------------------------------------------- per-task loss
    def task_loss(self, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """L(w; (x, y)) for one task (a scalar)."""
        raise NotImplementedError

    def task_metrics(self, w: Tensor, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Scalar metrics of one task's query set (at least ``loss``)."""
        return {"loss": self.task_loss(w, x, y)}

    # ------------------------------------------------------------------ layout
    @property
    def n_tasks(self) -> int:
        return self.config["n_tasks"]

    @property
    def dim_outer(self) -> int:
        return self.model.numel

    @property
    def dim_inner(self) -> int:
        return self.n_tasks * self.model.numel

    def per_task(self, theta: Tensor) -> Tensor:
        """θ as an (n_tasks × p) matrix (a view)."""
        return theta.view(-1, self.model.numel)

    def task_losses(self, theta: Tensor, data: tuple[Tensor, Tensor]) -> Tensor:
        """(L(θ_i; data_i))_i, vectorized over tasks with ``torch.func.vmap``."""
        return torch.func.vmap(self.task_loss)(self.per_task(theta), *data)

    # ------------------------------------------------------------------ losses
    def inner_loss(self, theta, lam, batch=None):
        loss = self.task_losses(theta, self.support).sum()
        rho = self.config["proximal"]
        if rho > 0:
            loss = loss + 0.5 * rho * ((self.per_task(theta) - lam) ** 2).sum()
        return loss

    def outer_loss(self, theta, lam, batch=None):
        return self.task_losses(theta, self.query).mean()

    def init_outer(self, generator):
        return self.model.init(generator, dtype=torch.float64, device=self.device)

    def head_mask(self):
        """The last layer (weight and bias) of the model: ANIL's head."""
        mask = torch.zeros(self.model.numel, dtype=torch.bool, device=self.device)
        mask[self.model.numel - sum(self.model.numels[-2:]):] = True
        return mask

    def init_inner(self, lam, generator):
        return lam.repeat(self.n_tasks)  # differentiable in λ: θ₀(λ) = (λ, …, λ)

    def inner_step_size(self, lam):
        return self.config["inner_lr"]

    def outer_step_size(self):
        return self.config["meta_lr"]

    # -------------------------------------------------------------- evaluation
    def adapt(self, lam: Tensor, data: tuple[Tensor, Tensor], steps: int) -> list[Tensor]:
        """Per-task weights after 0..steps gradient steps of size α from λ (no graph)."""
        rho, lr = self.config["proximal"], self.config["inner_lr"]

        def loss(w: Tensor, x: Tensor, y: Tensor, lam: Tensor) -> Tensor:
            return self.task_loss(w, x, y) + 0.5 * rho * ((w - lam) ** 2).sum()

        grad = torch.func.vmap(torch.func.grad(loss), in_dims=(0, 0, 0, None))
        lam = lam.detach()
        w = lam.expand(data[0].shape[0], -1).clone()
        out = [w]
        for _ in range(steps):
            w = w - lr * grad(w, *data, lam)
            out.append(w)
        return out

    def evaluate(self, theta, lam):
        steps = self.config["eval_steps"]
        with torch.no_grad():
            path = self.adapt(lam, self.test_support, steps)
            metrics = torch.func.vmap(self.task_metrics)
            out: dict[str, float] = {}
            for suffix, w in (("", path[steps]), ("_1step", path[1]), ("_0step", path[0])):
                for key, values in metrics(w, *self.test_query).items():
                    out[f"{self.metric_prefix}_{key}{suffix}"] = float(values.mean())
        return out

    metric_prefix = "test"


# ===================================================================== sinusoid
class Sinusoid(_FewShot):
    name = "sinusoid"
    reference = "Finn, Abbeel, Levine 2017 (MAML) §5.1"
    params = {
        **_FewShot.common_params,
        "k_shot": Param(int, 10, "K: support points (and query points) per task", low=1),
        "hidden": Param(int, 40, "units of each of the two hidden ReLU layers", low=1),
    }
    sizes = {"quick": {"n_tasks": 25, "n_test_tasks": 100, "hidden": 40},
             "full": {"n_tasks": 500, "n_test_tasks": 600, "hidden": 40}}
    primary_metric = "test_mse"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=2000, eval_every=100)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        h = c["hidden"]
        self.model = FlatModel(mlp([1, h, h, 1], nn.ReLU))
        self.support, self.query = self._tasks(c["n_tasks"], generator)
        self.test_support, self.test_query = self._tasks(c["n_test_tasks"], generator)

    def _tasks(self, n: int, generator: torch.Generator
               ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        k = self.config["k_shot"]

        def uniform(low: float, high: float, *shape: int) -> Tensor:
            return low + (high - low) * torch.rand(*shape, generator=generator,
                                                   dtype=torch.float64)

        amplitude = uniform(0.1, 5.0, n, 1, 1)
        phase = uniform(0.0, math.pi, n, 1, 1)
        x = uniform(-5.0, 5.0, n, 2 * k, 1)
        y = amplitude * torch.sin(x - phase)
        x, y = self.tensor(x), self.tensor(y)
        return (x[:, :k], y[:, :k]), (x[:, k:], y[:, k:])

    def task_loss(self, w, x, y):
        return ((self.model(w, x) - y) ** 2).mean()

    def task_metrics(self, w, x, y):
        return {"mse": self.task_loss(w, x, y)}


# ================================================================ few-shot digits
def _load_digits() -> tuple[Any, Any]:
    pixels, target = load_digits_arrays()
    return pixels / 16.0, target


class FewShotDigits(_FewShot):
    name = "fewshot_digits"
    reference = ("Finn, Abbeel, Levine 2017 (MAML) §5.2 protocol on scikit-learn digits "
                 "(Alpaydin & Kaynak 1998)")
    params = {
        **_FewShot.common_params,
        "inner_lr": Param(float, 0.2, "α: task-adaptation step size (also used by evaluate)",
                          low=0.0, low_open=True),
        "eval_steps": Param(int, 5, "adaptation steps on meta-test tasks in evaluate", low=1),
        "n_way": Param(int, 3, "N: classes per task", low=2),
        "k_shot": Param(int, 1, "K: support images per class", low=1),
        "n_query": Param(int, 5, "query images per class", low=1),
        "n_test_classes": Param(int, 4, "digits held out for meta-test (the last ones)",
                                low=1, high=8),
        "hidden": Param(int, 32, "hidden units of the MLP 64-h-N; 0 = linear softmax",
                        low=0),
    }
    sizes = {"quick": {"n_tasks": 100, "n_test_tasks": 100, "hidden": 32},
             "full": {"n_tasks": 300, "n_test_tasks": 600, "hidden": 64}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=1000, eval_every=50)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n_way, n_test = c["n_way"], c["n_test_classes"]
        n_train = 10 - n_test
        if n_way > min(n_train, n_test):
            raise UserError(f"fewshot_digits: n_way={n_way} needs at least that many meta-train "
                            f"({n_train}) and meta-test ({n_test}) classes")
        x, y = _load_digits()
        self.images = torch.as_tensor(x, dtype=torch.float64)
        self.labels = torch.as_tensor(y)
        per_class = int(torch.bincount(self.labels).min())
        if c["k_shot"] + c["n_query"] > per_class:
            raise UserError(f"fewshot_digits: k_shot + n_query = {c['k_shot'] + c['n_query']} "
                            f"exceeds the {per_class} images of the smallest class")
        sizes = [64, c["hidden"], n_way] if c["hidden"] > 0 else [64, n_way]
        self.model = FlatModel(mlp(sizes, nn.ReLU))
        self.train_classes = list(range(n_train))
        self.test_classes = list(range(n_train, 10))
        self.support, self.query = self._tasks(c["n_tasks"], self.train_classes, generator)
        self.test_support, self.test_query = self._tasks(c["n_test_tasks"], self.test_classes,
                                                         generator)

    def _tasks(self, n: int, classes: list[int], generator: torch.Generator
               ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        c = self.config
        n_way, k, q = c["n_way"], c["k_shot"], c["n_query"]
        xs, ys, xq, yq = [], [], [], []
        for _ in range(n):
            chosen = torch.randperm(len(classes), generator=generator)[:n_way]
            sx, sy, qx, qy = [], [], [], []
            for label, idx in enumerate(chosen.tolist()):
                rows = torch.nonzero(self.labels == classes[idx]).flatten()
                pick = rows[torch.randperm(len(rows), generator=generator)[: k + q]]
                sx.append(self.images[pick[:k]])
                qx.append(self.images[pick[k:]])
                sy.append(torch.full((k,), label))
                qy.append(torch.full((q,), label))
            xs.append(torch.cat(sx))
            ys.append(torch.cat(sy))
            xq.append(torch.cat(qx))
            yq.append(torch.cat(qy))
        dev = self.device
        return ((torch.stack(xs).to(dev), torch.stack(ys).to(dev)),
                (torch.stack(xq).to(dev), torch.stack(yq).to(dev)))

    def task_loss(self, w, x, y):
        return nn.functional.cross_entropy(self.model(w, x), y)

    def task_metrics(self, w, x, y):
        logits = self.model(w, x)
        return {"loss": nn.functional.cross_entropy(logits, y),
                "accuracy": (logits.argmax(-1) == y).to(logits.dtype).mean()}
