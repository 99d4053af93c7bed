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
import torch.nn.functional as tf

from blobench.errors import UserError
from blobench.params import Param
from blobench.problem import Budget, Problem

N_CLASSES = 10


def _softmax_hessian(x: torch.Tensor, p: torch.Tensor, w: torch.Tensor, mu: float
                     ) -> torch.Tensor:
    """Dense Hessian of 1/n Σ w_i CE(x_iᵀW) + ½μ‖W‖² in W (row-major flattening)."""
    n, d = x.shape
    k = p.shape[1]
    # per-example softmax curvature M_i = w_i/n (diag p_i − p_i p_iᵀ), then
    # H[(j,c),(l,d)] = Σ_i x_ij x_il M_i[c,d] as one (d·k·k × n) @ (n × d) product
    m = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    m = m * (w / n)[:, None, None]
    q = (x[:, :, None, None] * m[:, None]).reshape(n, d * k * k)
    h = (q.T @ x).reshape(d, k, k, d).permute(0, 1, 3, 2).reshape(d * k, d * k)
    return h + mu * torch.eye(d * k, dtype=x.dtype, device=x.device)


def _newton_softmax(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, mu: float,
                    tol: float = 1e-11, max_iter: int = 100) -> torch.Tensor:
    """argmin_W 1/n Σ w_i CE(x_iᵀW, y_i) + ½μ‖W‖², damped Newton; returns flat W."""
    n, d = x.shape
    onehot = tf.one_hot(y, N_CLASSES).to(x.dtype)
    theta = torch.zeros(d * N_CLASSES, dtype=x.dtype, device=x.device)

    def loss(t: torch.Tensor) -> float:
        ce = tf.cross_entropy(x @ t.reshape(d, N_CLASSES), y, reduction="none")
        return float((w * ce).mean() + 0.5 * mu * (t @ t))

    for _ in range(max_iter):
        p = torch.softmax(x @ theta.reshape(d, N_CLASSES), 1)
        grad = (x.T @ (w[:, None] * (p - onehot))).reshape(-1) / n + mu * theta
        gnorm = float(torch.linalg.vector_norm(grad))
        if gnorm <= tol:
            break
        step = torch.linalg.solve(_softmax_hessian(x, p, w, mu), grad)
        t, f0, slope = 1.0, loss(theta), float(grad @ step)
        if gnorm > 1e-6:
            while loss(theta - t * step) > f0 - 0.25 * t * slope and t > 1e-8:
                t *= 0.5
        theta = theta - t * step
    return theta


class DistillDigits(Problem):
    name = "distill_digits"
    family = "dataset distillation"
    reference = "Wang et al. 2018 (Dataset Distillation); Vicol et al. 2022 Table 3"
    params = {
        "per_class": Param(int, 1, "k: synthetic images per class (paper: 1 and 10)", low=1),
        "n_train": Param(int, 1000, "real training images (outer objective)", low=1),
        "l2": Param(float, 1e-2, "μ: ridge of the inner classifier", low=0.0, low_open=True),
        "batch_size": Param(int, 0, "outer mini-batch size (real images); 0 = full", low=0),
    }
    sizes = {"quick": {"per_class": 1, "n_train": 1000},
             "full": {"per_class": 10, "n_train": 1200}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        from sklearn.datasets import load_digits

        c = self.config
        data = load_digits()
        x = torch.as_tensor(data.data, dtype=torch.float64) / 16.0
        x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
        y = torch.as_tensor(data.target, dtype=torch.long)
        if c["n_train"] >= x.shape[0]:
            raise UserError(f"distill_digits: n_train must be < {x.shape[0]}")
        perm = torch.randperm(x.shape[0], generator=generator)
        tr, te = perm[: c["n_train"]], perm[c["n_train"]:]
        self.x, self.y = self.tensor(x[tr]), y[tr].to(self.device)
        self.x_test, self.y_test = self.tensor(x[te]), y[te].to(self.device)
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
        imgs = lam.reshape(-1, 64)
        return torch.cat([imgs, torch.ones(imgs.shape[0], 1, dtype=imgs.dtype,
                                           device=imgs.device)], 1)

    def _logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x @ theta.reshape(65, N_CLASSES)

    def inner_loss(self, theta, lam, batch=None):
        ce = tf.cross_entropy(self._logits(theta, self.synthetic(lam)), self.y_syn)
        return ce + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x, self.y) if batch is None else (self.x[batch], self.y[batch])
        return tf.cross_entropy(self._logits(theta, x), y)

    def sample_outer_batch(self, generator):
        b = self.config["batch_size"]
        if b == 0 or b >= self.n_outer_samples:
            return None
        return torch.randint(self.n_outer_samples, (b,), generator=generator).to(self.device)

    def init_outer(self, generator):
        return self.lam0.clone()

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        xs = self.synthetic(lam.detach())
        lip = float(torch.linalg.eigvalsh(xs.T @ xs)[-1]) / (2 * xs.shape[0])
        return 1.0 / (lip + self.config["l2"])

    def outer_step_size(self):
        return 10.0

    def _accuracy(self, theta: torch.Tensor) -> float:
        pred = self._logits(theta, self.x_test).argmax(1)
        return float((pred == self.y_test).double().mean())

    def evaluate(self, theta, lam):
        with torch.no_grad():
            logits = self._logits(theta, self.x_test)
            return {"test_accuracy": self._accuracy(theta),
                    "test_loss": float(tf.cross_entropy(logits, self.y_test)),
                    "retrain_test_accuracy": self._accuracy(self.inner_solution(lam))}

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        xs = self.synthetic(lam.detach())
        w = torch.ones(xs.shape[0], dtype=xs.dtype, device=xs.device)
        return _newton_softmax(xs, self.y_syn, w, self.config["l2"])

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        xs = self.synthetic(lam)
        n_syn = xs.shape[0]
        p = torch.softmax(self._logits(theta, xs), 1)
        w = torch.ones(n_syn, dtype=xs.dtype, device=xs.device)
        p_real = torch.softmax(self._logits(theta, self.x), 1)
        y_real = tf.one_hot(self.y, N_CLASSES).to(p.dtype)
        grad_f = (self.x.T @ (p_real - y_real)).reshape(-1) / self.n_outer_samples
        v = torch.linalg.solve(_softmax_hessian(xs, p, w, self.config["l2"]), grad_f)
        y_syn = tf.one_hot(self.y_syn, N_CLASSES).to(p.dtype)
        lam_leaf = lam.clone().requires_grad_(True)
        with torch.enable_grad():
            xl = self.synthetic(lam_leaf)
            pl = torch.softmax(self._logits(theta, xl), 1)
            grad_g = (xl.T @ (pl - y_syn)).reshape(-1) / n_syn + self.config["l2"] * theta
            (mixed_v,) = torch.autograd.grad(grad_g @ v, lam_leaf)
        return -mixed_v
