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

Stochastic algorithms: a batch is a LongTensor of example indices (``batch_size``, with
replacement); g on a batch is 1/|B| Σ_{i∈B} a_i ℓ_i + ½μ‖θ‖². ``n_inner_samples`` = n_train and
``n_outer_samples`` = n_val are the sizes of the finite sums (for SABA-type methods).
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


class ReweightDigits(Problem):
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
    }
    sizes = {"quick": {"n_train": 500, "n_val": 200},
             "full": {"n_train": 1000, "n_val": 300}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=500, eval_every=50)}

    def build(self, generator: torch.Generator) -> None:
        from sklearn.datasets import load_digits

        c = self.config
        data = load_digits()
        x = torch.as_tensor(data.data, dtype=torch.float64) / 16.0
        x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
        y = torch.as_tensor(data.target, dtype=torch.long)
        n_tr, n_va = c["n_train"], c["n_val"]
        if n_tr + n_va >= x.shape[0]:
            raise UserError(f"reweight_digits: n_train + n_val must be < {x.shape[0]}")
        perm = torch.randperm(x.shape[0], generator=generator)
        tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
        y_tr = y[tr].clone()
        n_bad = round(c["noise_rate"] * n_tr)
        bad = torch.randperm(n_tr, generator=generator)[:n_bad]
        shift = torch.randint(1, N_CLASSES, (n_bad,), generator=generator)
        y_tr[bad] = (y_tr[bad] + shift) % N_CLASSES  # a uniformly drawn *wrong* class
        corrupted = torch.zeros(n_tr, dtype=torch.bool)
        corrupted[bad] = True
        self.x, self.y = self.tensor(x[tr]), y_tr.to(self.device)
        self.y_clean = y[tr].to(self.device)
        self.corrupted = corrupted.to(self.device)
        self.x_val, self.y_val = self.tensor(x[va]), y[va].to(self.device)
        self.x_test, self.y_test = self.tensor(x[te]), y[te].to(self.device)
        self.n_inner_samples, self.n_outer_samples = n_tr, n_va
        self.lipschitz_data = float(torch.linalg.eigvalsh(self.x.T @ self.x)[-1]) / (2 * n_tr)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1] * N_CLASSES

    @property
    def dim_outer(self) -> int:
        return self.n_inner_samples

    @staticmethod
    def weights(lam: torch.Tensor) -> torch.Tensor:
        """a = ½(tanh z + 1)."""
        return 0.5 * (torch.tanh(lam) + 1)

    def _logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x @ theta.reshape(x.shape[1], N_CLASSES)

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        a = self.weights(lam)
        x, y = self.x, self.y
        if batch is not None:
            x, y, a = x[batch], y[batch], a[batch]
        ce = tf.cross_entropy(self._logits(theta, x), y, reduction="none")
        return (a * ce).mean() + 0.5 * self.config["l2"] * (theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return tf.cross_entropy(self._logits(theta, x), y)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        b = self.config["batch_size"]
        if b == 0 or b >= n:
            return None
        return torch.randint(n, (b,), generator=generator).to(self.device)

    def sample_inner_batch(self, generator):
        return self._sample(self.n_inner_samples, generator)

    def sample_outer_batch(self, generator):
        return self._sample(self.n_outer_samples, generator)

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
            logits = self._logits(theta, self.x_test)
            out = {"test_accuracy": float((logits.argmax(1) == self.y_test).double().mean()),
                   "test_loss": float(tf.cross_entropy(logits, self.y_test))}
            a = self.weights(lam)
            flagged = a <= self.config["flag_threshold"]
            hits = float((flagged & self.corrupted).sum())
            n_flag, n_bad = float(flagged.sum()), float(self.corrupted.sum())
            out.update({
                "precision": hits / n_flag if n_flag else 0.0,
                "recall": hits / n_bad if n_bad else 0.0,
                "corrupt_downweighted": float((a[self.corrupted] < 0.5).double().mean())
                if n_bad else 0.0,
                "kept_fraction": float((~flagged).double().mean())})
            return out

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return _newton_softmax(self.x, self.y, self.weights(lam.detach()), self.config["l2"])

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        a = self.weights(lam)
        theta = self.inner_solution(lam)
        n, d = self.x.shape
        p = torch.softmax(self._logits(theta, self.x), 1)
        p_val = torch.softmax(self._logits(theta, self.x_val), 1)
        y_val = tf.one_hot(self.y_val, N_CLASSES).to(p.dtype)
        grad_f = (self.x_val.T @ (p_val - y_val)).reshape(-1) / self.n_outer_samples
        v = torch.linalg.solve(_softmax_hessian(self.x, p, a, self.config["l2"]), grad_f)
        resid = p - tf.one_hot(self.y, N_CLASSES).to(p.dtype)
        da = 0.5 * (1 - torch.tanh(lam) ** 2)
        return -da * ((self.x @ v.reshape(d, N_CLASSES)) * resid).sum(1) / n
