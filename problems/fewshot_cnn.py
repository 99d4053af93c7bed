"""Few-shot image classification with a Conv-4 backbone: MAML and a ridge-head hyper-representation.

Tasks (:mod:`blobench.toolkit.fewshot`): N-way K-shot tasks over the classes of Fashion-MNIST
(``dataset=fashion_mnist``, default, offline), MNIST or both, each under 4 rotations by 90°
(a rotated class is a new class, as in the Omniglot protocol; base classes 0..6 of each
dataset are the meta-training classes — 28 with Fashion-MNIST alone — 7..9 the meta-test
classes, 12); or the datasets of the few-shot literature, read from local copies by the
data layer: ``dataset=omniglot`` (1,200 meta-training / 423 meta-test characters × 4
rotations, 28 × 28, as Finn et al. 2017 §5.2) and ``dataset=miniimagenet`` (Ravi &
Larochelle's 64 / 20 classes, 84 × 84 colour; MAML's miniImageNet Conv-4 has ``width=32``).
A missing dataset makes the cell ``not_applicable`` with how to get it (``blobench data
fetch omniglot``; miniImageNet's images by hand). A fixed pool of ``n_tasks``
meta-training tasks (all used every outer step) and ``n_test_tasks`` meta-test tasks is
drawn from the seed; ``per_class`` images of each class are drawn (Omniglot has 20 per
class).

Backbone (:func:`blobench.toolkit.convnets.conv4`): 4 × [conv 3×3, ``width`` channels – batch norm
on the batch's own statistics – ReLU – 2×2 max pooling] (Vinyals et al. 2016; MAML §5.2:
width 64 on Omniglot); on 28×28 images 64 features at width 64. Tasks are evaluated
together with ``torch.func.vmap``.

``fewshot_conv4`` — MAML (Finn, Abbeel & Levine 2017): λ = the initialization of Conv-4 and
its linear N-way head (p weights), θ = (θ_1, …, θ_n) the per-task fast weights,

    inner  g(θ, λ) = Σ_i CE(θ_i; S_i) + (ρ/2) Σ_i ‖θ_i − λ‖²    (ρ = ``proximal``; iMAML > 0)
    outer  f(θ, λ) = 1/n Σ_i CE(θ_i; Q_i),     θ₀(λ) = (λ, …, λ)

α = 0.4 (MAML's Omniglot inner step), the meta-test tasks adapted by ``eval_steps`` steps
(primary metric: their query accuracy). Non-convex: no ground truth.

``fewshot_ridge`` — the hyper-representation formulation (Franceschi et al. 2018 §3;
Bertinetto, Henriques, Torr & Vedaldi 2019, R2D2): λ = the Conv-4 feature extractor φ_λ
(no head), Φ̃_i = [φ_λ(S_i), 1] ∈ ℝ^{m×(d+1)} (m = N·K), θ = per-task ridge heads
W_i ∈ ℝ^{(d+1)×N} regressing the one-hot labels Y_i,

    inner  g(θ, λ) = Σ_i [ 1/(2m) ‖Φ̃_i W_i − Y_i‖² + (μ/2) ‖W_i‖² ]    (μ = ``l2`` > 0)
    outer  f(θ, λ) = 1/n Σ_i CE(τ · Φ̃^Q_i W_i, y^Q_i)                  (τ = ``logit_scale``)

g is μ-strongly convex in θ: θ*(λ) is unique, in closed form (R2D2's Woodbury form)
W_i* = Φ̃_iᵀ(Φ̃_iΦ̃_iᵀ + mμ I)⁻¹ Y_i (an m × m solve), and ``exact_hypergradient`` is the
total derivative of F(λ) = f(θ*(λ), λ) by reverse-mode autodiff through that solve (tested
against finite differences of F). Evaluation: meta-test heads by the same closed form from
λ's features; the own θ (training heads) does not enter it, so the re-trained metrics equal
the own ones. ``inner_step_size`` = 1/L, L = max_i λ_max(Φ̃_iᵀΦ̃_i)/m + μ.

Sizes: ``quick`` width 8, 4 tasks, 20 meta-test tasks, 10 images per class, 50 outer steps
(``fewshot_conv4``) / 30 (``fewshot_ridge``), seconds on a CPU (both problems are in the
default suite); ``full`` width 64 (MAML's Omniglot backbone: 112,005 weights for 5-way), 32 tasks
(MAML's Omniglot meta-batch), 600 meta-test tasks, 20 images per class, float32; 5-way
1-shot (``k_shot=5`` for 5-shot).

Evaluation cost (issue 15: ≤ 25 % of solver time). The held-out metric adapts / fits
``n_test_tasks`` meta-test tasks — 5× the meta-training pool at quick, so one evaluation costs
≈ 2–4 MAML steps — and the engine replays one step under the live-tensor probe at the final
evaluation (≈ 2–3 steps' time). At quick's former 6 outer steps evaluated every 3 this was
2.0–2.2× (``fewshot_conv4`` × maml) and 1.3–1.5× (``fewshot_ridge`` × implicit_cg) the
solver time. Cheaper: ``fewshot_conv4.evaluate`` adapts and scores the meta-test tasks
through :func:`blobench.toolkit.convnets.task_forward` (the numbers of ``vmap``, 20–40 % less
time); ``fewshot_ridge.evaluate`` depends on λ alone, and the last λ's result is kept, so the
own and the re-trained metrics of one evaluation (the same numbers) cost one pass over the
meta-test tasks instead of two. Less frequent: at quick only the first and the
final evaluation (``eval_every`` = the budget). The rest is spread over a longer quick run:
50 / 30 outer steps instead of 6 (``fewshot_conv4`` × maml at 40: 21–23 %, at 50: 17 %). The
meta-test set is not shrunk (its 20 tasks × 25 queries are the metric's precision); ``full``
is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import convnets, fewshot

Tensor = torch.Tensor
CE = nn.functional.cross_entropy

COMMON = {
    "dataset": Param(str, "fashion_mnist", "classes from (rotations of) this dataset",
                     choices=tuple(fewshot.DATASETS)),
    "n_way": Param(int, 5, "N: classes per task", low=2),
    "k_shot": Param(int, 1, "K: support images per class", low=1),
    "n_query": Param(int, 5, "query images per class", low=1),
    "n_tasks": Param(int, 4, "meta-training tasks in the pool (all used every step)", low=1),
    "n_test_tasks": Param(int, 20, "held-out meta-test tasks", low=1),
    "per_class": Param(int, 10, "images drawn per class (Omniglot: 20)", low=2),
    "n_train_base": Param(int, 0, "base classes of each dataset for meta-training (0 = the "
                          "dataset's: 7 of 10, Omniglot 1,200 of 1,623)", low=0),
    "rotations": Param(int, 0, "rotations by 90° per base class (1 = none; 0 = the "
                       "dataset's: 4, miniImageNet 1)", low=0, high=4),
    "width": Param(int, 8, "channels of the Conv-4 blocks (MAML Omniglot: 64)", low=1),
    "dtype": dtype_param("float32"),
}
FULL = {"width": 64, "n_tasks": 32, "n_test_tasks": 600, "per_class": 20}


class _ConvFewShot(Problem):
    """Task pools and Conv-4 of both problems (not registered: no ``name``)."""

    family = "meta-learning"
    reference = "Finn et al. 2017 (MAML) §5.2 protocol; Vinyals et al. 2016 (Conv-4)"
    primary_metric = "test_accuracy"
    higher_is_better = True

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        self.dtype = torch_dtype(c["dtype"])
        pool, train, test = fewshot.class_pool(c["dataset"], c["per_class"], c["n_train_base"],
                                               c["rotations"], generator, self.dtype)
        shape = (c["n_way"], c["k_shot"], c["n_query"])
        to = self.device
        s, q = fewshot.sample_tasks(pool, train, c["n_tasks"], *shape, generator)
        self.support, self.query = tuple(t.to(to) for t in s), tuple(t.to(to) for t in q)
        s, q = fewshot.sample_tasks(pool, test, c["n_test_tasks"], *shape, generator)
        self.test_support = tuple(t.to(to) for t in s)
        self.test_query = tuple(t.to(to) for t in q)
        self.n_classes_train, self.n_classes_test = len(train), len(test)
        self.model = convnets.conv4(pool.shape[2], pool.shape[-1], self.head_classes,
                                    c["width"])

    head_classes = 0
    #: meta-test tasks evaluated at once (memory: 600 tasks of Conv-4 width 64 at once are GBs)
    eval_chunk = 50

    def test_chunks(self):
        """(support, query) of the meta-test tasks, ``eval_chunk`` tasks at a time."""
        n = self.test_support[0].shape[0]
        for i in range(0, n, self.eval_chunk):
            yield (tuple(t[i:i + self.eval_chunk] for t in self.test_support),
                   tuple(t[i:i + self.eval_chunk] for t in self.test_query))

    def summarize(self, parts: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
        """test_accuracy / test_loss from per-chunk (query logits, labels)."""
        logits = torch.cat([p[0].flatten(0, 1) for p in parts])
        y = torch.cat([p[1].flatten() for p in parts])
        return {"test_accuracy": float((logits.argmax(-1) == y).float().mean()),
                "test_loss": float(CE(logits, y))}

    @property
    def n_tasks(self) -> int:
        return self.config["n_tasks"]

    def init_outer(self, generator):
        return self.model.init(generator, self.dtype, self.device)


class FewShotConv4(_ConvFewShot):
    name = "fewshot_conv4"
    params = {
        **COMMON,
        "proximal": Param(float, 0.0, "ρ: proximal term (ρ/2)‖θ_i − λ‖² in g (iMAML needs > 0)",
                          low=0.0),
        "inner_lr": Param(float, 0.4, "α: task-adaptation step (MAML Omniglot: 0.4)",
                          low=0.0, low_open=True),
        "meta_lr": Param(float, 1e-3, "the paper's meta step size (Adam), the default outer lr",
                         low=0.0, low_open=True),
        "eval_steps": Param(int, 3, "adaptation steps on meta-test tasks (MAML: 3)", low=1),
    }
    sizes = {"quick": {}, "full": FULL}
    inner_init_is_outer = True
    own_theta_deployed = True
    budgets = {"quick": Budget(steps=50, eval_every=50),  # "Evaluation cost" above
               "full": Budget(steps=1000, eval_every=50)}

    @property
    def head_classes(self) -> int:
        return self.config["n_way"]

    @classmethod
    def lam_in_losses(cls, params=None):
        return ((params or {}).get("proximal", cls.params["proximal"].default)) > 0

    @property
    def dim_outer(self) -> int:
        return self.model.numel

    @property
    def dim_inner(self) -> int:
        return self.n_tasks * self.model.numel

    def task_loss(self, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return CE(self.model(w, x), y)

    def task_losses(self, theta: Tensor, data: tuple[Tensor, Tensor]) -> Tensor:
        return torch.func.vmap(self.task_loss)(theta.view(-1, self.model.numel), *data)

    def inner_loss(self, theta, lam, batch=None):
        loss = self.task_losses(theta, self.support).sum()
        rho = self.config["proximal"]
        if rho > 0:
            loss = loss + 0.5 * rho * ((theta.view(-1, self.model.numel) - lam) ** 2).sum()
        return loss

    def outer_loss(self, theta, lam, batch=None):
        return self.task_losses(theta, self.query).mean()

    def init_inner(self, lam, generator):
        return lam.repeat(self.n_tasks)  # θ₀(λ) = (λ, …, λ), differentiable in λ

    def inner_step_size(self, lam):
        return self.config["inner_lr"]

    def outer_step_size(self):
        return self.config["meta_lr"]

    def evaluate(self, theta, lam):
        """Every meta-test task adapted from λ by ``eval_steps`` gradient steps on
        CE(w_i; S_i) + (ρ/2)‖w_i − λ‖², then its query accuracy / loss. The tasks of a chunk
        go through :func:`convnets.task_forward` (one grouped convolution per layer; the
        numbers of ``vmap``, 40 % less time: issue 15); the gradient of the sum over tasks
        is each task's own gradient in its row."""
        rho, lr = self.config["proximal"], self.config["inner_lr"]
        lam = lam.detach()
        parts = []
        for support, query in self.test_chunks():
            x, y = support
            w = lam.expand(x.shape[0], -1).clone()
            for _ in range(self.config["eval_steps"]):
                w = w.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = convnets.task_forward(self.model, w, x)
                    loss = CE(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]
                    if rho > 0:
                        loss = loss + 0.5 * rho * ((w - lam) ** 2).sum()
                    (grad,) = torch.autograd.grad(loss, w)
                w = w.detach() - lr * grad
            with torch.no_grad():
                parts.append((convnets.task_forward(self.model, w, query[0]), query[1]))
        return self.summarize(parts)


class FewShotRidge(_ConvFewShot):
    name = "fewshot_ridge"
    reference = ("Franceschi et al. 2018 (hyper-representation); Bertinetto et al. 2019 "
                 "(R2D2); Conv-4 of Vinyals et al. 2016")
    params = {
        **COMMON,
        "l2": Param(float, 0.1, "μ: ridge of the per-task heads (strong convexity)", low=0.0,
                    low_open=True),
        "logit_scale": Param(float, 10.0, "τ: scale of the head's outputs in the query CE",
                             low=0.0, low_open=True),
        "outer_lr": Param(float, 0.1, "default outer step size (plain SGD)", low=0.0,
                          low_open=True),
    }
    sizes = {"quick": {}, "full": FULL}
    inner_unique = True
    budgets = {"quick": Budget(steps=30, eval_every=30),  # "Evaluation cost" above
               "full": Budget(steps=500, eval_every=50)}

    @property
    def n_features(self) -> int:
        x = self.support[0]
        return convnets.n_features(x.shape[-3], x.shape[-1], self.config["width"], 4) + 1

    @property
    def dim_outer(self) -> int:
        return self.model.numel

    @property
    def dim_inner(self) -> int:
        return self.n_tasks * self.n_features * self.config["n_way"]

    def features(self, lam: Tensor, x: Tensor) -> Tensor:
        """Φ̃ = [φ_λ(x), 1] for a stack of tasks x (tasks × m × C × H × W)."""
        phi = torch.func.vmap(self.model, in_dims=(None, 0))(lam, x)
        return torch.cat([phi, torch.ones_like(phi[..., :1])], dim=-1)

    def heads(self, theta: Tensor) -> Tensor:
        return theta.view(-1, self.n_features, self.config["n_way"])

    def one_hot(self, y: Tensor) -> Tensor:
        return nn.functional.one_hot(y, self.config["n_way"]).to(self.dtype)

    def inner_loss(self, theta, lam, batch=None):
        phi, y = self.features(lam, self.support[0]), self.one_hot(self.support[1])
        m = phi.shape[1]
        residual = phi @ self.heads(theta) - y
        return (residual ** 2).sum() / (2 * m) + 0.5 * self.config["l2"] * (theta @ theta)

    def query_loss(self, heads: Tensor, lam: Tensor, query: tuple[Tensor, Tensor]) -> Tensor:
        logits = self.config["logit_scale"] * (self.features(lam, query[0]) @ heads)
        return CE(logits.flatten(0, 1), query[1].flatten())

    def outer_loss(self, theta, lam, batch=None):
        return self.query_loss(self.heads(theta), lam, self.query)

    def ridge_heads(self, lam: Tensor, support: tuple[Tensor, Tensor]) -> Tensor:
        """W_i* = Φ̃_iᵀ(Φ̃_iΦ̃_iᵀ + mμI)⁻¹Y_i for every task (differentiable in λ)."""
        phi, y = self.features(lam, support[0]), self.one_hot(support[1])
        m = phi.shape[1]
        gram = phi @ phi.transpose(1, 2)
        eye = torch.eye(m, dtype=self.dtype, device=self.device)
        return phi.transpose(1, 2) @ torch.linalg.solve(gram + m * self.config["l2"] * eye, y)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=self.dtype, device=self.device)

    def inner_step_size(self, lam):
        with torch.no_grad():
            phi = self.features(lam.detach(), self.support[0])
            top = float(torch.linalg.matrix_norm(phi, ord=2).max()) ** 2 / phi.shape[1]
        return 1.0 / (top + self.config["l2"])

    def outer_step_size(self):
        return self.config["outer_lr"]

    def evaluate(self, theta, lam):
        """Meta-test metrics of λ alone (θ, the training heads, does not enter them): the
        last λ's are kept, so the own and the re-trained metrics of one evaluation — the same
        numbers — cost one pass over the meta-test tasks (issue 15)."""
        lam = lam.detach()
        cached = self.__dict__.get("_test_memo")
        if (cached is not None and cached[0].shape == lam.shape
                and cached[0].dtype == lam.dtype and torch.equal(cached[0], lam)):
            return dict(cached[1])
        scale, parts = self.config["logit_scale"], []
        with torch.no_grad():
            for support, query in self.test_chunks():
                heads = self.ridge_heads(lam, support)
                parts.append((scale * (self.features(lam, query[0]) @ heads), query[1]))
        out = self.summarize(parts)
        self.__dict__["_test_memo"] = (lam.clone(), out)
        return dict(out)

    # ------------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        with torch.no_grad():
            return self.ridge_heads(lam.detach(), self.support).reshape(-1)

    def exact_hypergradient(self, lam):
        lam = lam.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.query_loss(self.ridge_heads(lam, self.support), lam, self.query)
            (grad,) = torch.autograd.grad(value, lam)
        return grad
