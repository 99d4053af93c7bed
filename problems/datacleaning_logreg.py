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
drawn with replacement); g on a batch is 1/|B| Σ_{i∈B} a_i ℓ_i + ½μ‖θ‖² (unbiased).
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
import torch.nn.functional as tf

from blobench.errors import UserError
from blobench.params import Param
from blobench.problem import Budget, Problem


def _newton_logistic(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, mu: float,
                     tol: float = 1e-12, max_iter: int = 100) -> torch.Tensor:
    """argmin_θ 1/n Σ w_i softplus(−y_i x_iᵀθ) + ½ μ‖θ‖², damped Newton (Armijo)."""
    n, d = x.shape
    theta = torch.zeros(d, dtype=x.dtype, device=x.device)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)

    def loss(t: torch.Tensor) -> float:
        return float((w * tf.softplus(-y * (x @ t))).mean() + 0.5 * mu * (t @ t))

    for _ in range(max_iter):
        s = torch.sigmoid(-y * (x @ theta))
        grad = -(x.T @ (w * y * s)) / n + mu * theta
        gnorm = float(torch.linalg.vector_norm(grad))
        if gnorm <= tol:
            break
        step = torch.linalg.solve((x.T * (w * s * (1 - s))) @ x / n + mu * eye, grad)
        t, f0, slope = 1.0, loss(theta), float(grad @ step)
        if gnorm > 1e-6:
            while loss(theta - t * step) > f0 - 0.25 * t * slope and t > 1e-8:
                t *= 0.5
        theta = theta - t * step
    return theta


class DatacleaningLogreg(Problem):
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
    }
    sizes = {"quick": {"n_train": 300, "n_val": 130},
             "full": {"n_train": 350, "n_val": 110}}
    primary_metric = "test_accuracy"
    higher_is_better = True
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=500, eval_every=50)}

    def build(self, generator: torch.Generator) -> None:
        from sklearn.datasets import load_breast_cancer

        c = self.config
        data = load_breast_cancer()
        x = torch.as_tensor(data.data, dtype=torch.float64)
        y = torch.as_tensor(data.target, dtype=torch.float64) * 2 - 1
        n_tr, n_va = c["n_train"], c["n_val"]
        if n_tr + n_va >= x.shape[0]:
            raise UserError(f"datacleaning_logreg: n_train + n_val must be < {x.shape[0]}")
        perm = torch.randperm(x.shape[0], generator=generator)
        tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
        mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-12)

        def prep(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = torch.cat([(x[idx] - mean) / std, torch.ones(len(idx), 1, dtype=x.dtype)], 1)
            return z, y[idx].clone()

        x_tr, y_tr = prep(tr)
        n_bad = round(c["noise_rate"] * n_tr)
        bad = torch.randperm(n_tr, generator=generator)[:n_bad]
        corrupted = torch.zeros(n_tr, dtype=torch.bool)
        corrupted[bad] = True
        y_tr[corrupted] = -y_tr[corrupted]
        self.x, self.y = self.tensor(x_tr), self.tensor(y_tr)
        self.corrupted = corrupted.to(self.device)
        x_va, y_va = prep(va)
        x_te, y_te = prep(te)
        self.x_val, self.y_val = self.tensor(x_va), self.tensor(y_va)
        self.x_test, self.y_test = self.tensor(x_te), self.tensor(y_te)
        self.n_inner_samples, self.n_outer_samples = n_tr, n_va
        self.lipschitz_data = float(torch.linalg.eigvalsh(self.x.T @ self.x)[-1]) / (4 * n_tr)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1]

    @property
    def dim_outer(self) -> int:
        return self.n_inner_samples

    @staticmethod
    def weights(lam: torch.Tensor) -> torch.Tensor:
        """a = ½(tanh z + 1)."""
        return 0.5 * (torch.tanh(lam) + 1)

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        a = self.weights(lam)
        x, y = (self.x, self.y) if batch is None else (self.x[batch], self.y[batch])
        if batch is not None:
            a = a[batch]
        return (a * tf.softplus(-y * (x @ theta))).mean() + 0.5 * self.config["l2"] * (
            theta @ theta)

    def outer_loss(self, theta, lam, batch=None):
        x, y = (self.x_val, self.y_val) if batch is None else (self.x_val[batch],
                                                               self.y_val[batch])
        return tf.softplus(-y * (x @ theta)).mean()

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
        return 100.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            margin = self.y_test * (self.x_test @ theta)
            out = {"test_accuracy": float((margin > 0).double().mean()),
                   "test_loss": float(tf.softplus(-margin).mean())}
            out.update(_detection(self.weights(lam), self.corrupted,
                                  self.config["flag_threshold"]))
            return out

    # ----------------------------------------------------------- ground truth
    def inner_solution(self, lam):
        return _newton_logistic(self.x, self.y, self.weights(lam.detach()), self.config["l2"])

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        a = self.weights(lam)
        theta = self.inner_solution(lam)
        n = self.n_inner_samples
        s = torch.sigmoid(-self.y * (self.x @ theta))
        eye = torch.eye(self.dim_inner, dtype=torch.float64, device=self.device)
        hess = (self.x.T * (a * s * (1 - s))) @ self.x / n + self.config["l2"] * eye
        s_val = torch.sigmoid(-self.y_val * (self.x_val @ theta))
        grad_f = -(self.x_val.T @ (self.y_val * s_val)) / self.n_outer_samples
        v = torch.linalg.solve(hess, grad_f)
        da = 0.5 * (1 - torch.tanh(lam) ** 2)
        return da * self.y * s * (self.x @ v) / n


def _detection(a: torch.Tensor, corrupted: torch.Tensor, threshold: float) -> dict[str, float]:
    """Precision / recall of {a_i ≤ threshold} against the corrupted set, and more."""
    flagged = a <= threshold
    hits = float((flagged & corrupted).sum())
    n_flag, n_bad = float(flagged.sum()), float(corrupted.sum())
    return {"precision": hits / n_flag if n_flag else 0.0,
            "recall": hits / n_bad if n_bad else 0.0,
            "corrupt_downweighted": float((a[corrupted] < 0.5).double().mean()) if n_bad
            else 0.0,
            "kept_fraction": float((~flagged).double().mean())}
