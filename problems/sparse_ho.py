"""High-dimensional sparse hyperparameter optimization: one ℓ2 penalty per feature of a
logistic regression on a sparse text-like design (20 Newsgroups shape).

Pedregosa 2016 (ICML, HOAG, sec. 4: ℓ2-regularized logistic regression on 20news, 130,107
tf-idf features, hyperparameters tuned on a validation set) with one penalty per feature as
in benchopt's bilevel benchmark (Dagréou et al. 2022): λ has the dimension of the features.
This is the memory test between unrolled and implicit methods — a dense Hessian of
130,107² entries cannot exist, so ground truth comes from CG.

Data (``source``):

- ``synthetic`` (default, seeded): ``n_features`` columns, each document has
  ``words_per_doc`` word draws from a Zipf law p_j ∝ (j + 10)^−1.1 (the head words are
  common, the tail rare, as in text), entries log(1 + count) · idf_j, rows ℓ2-normalized
  (the tf-idf of scikit-learn's ``fetch_20newsgroups_vectorized``); labels
  y = sign(x_iᵀw° − median) with w° ~ N(0, 1) on a random 5% of the features, 10% of the
  labels flipped.
- ``news20``: LIBSVM's news20.binary (19,996 documents × 1,355,191 features, labels ±1)
  through :mod:`blobench.toolkit.data`, when present (else the cell is ``not_applicable``: "data
  missing: run `blobench data fetch news20`"); λ then has 1,355,191 coordinates.

X is a torch sparse CSR matrix (Z = −y ⊙ X and Zᵀ precomputed; the losses, i.e. autodiff's
path, use a dense copy when n·d ≤ 4·10⁶, since torch cannot vmap sparse products); θ, λ ∈ ℝ^d:

    inner  g(θ, λ) = 1/n Σ_i log(1 + exp(−y_i x_iᵀθ)) + ½ Σ_j e^{λ_j} θ_j²
    outer  f(θ, λ) = 1/n_val Σ_val log(1 + exp(−y_i x_iᵀθ))
    H v = Zᵀ(σ'(Zθ) ⊙ Z v)/n + e^λ ⊙ v,  J v = e^λ ⊙ θ ⊙ v,  dF/dλ = −J H⁻¹ ∇_θ f

Ground truth: θ*(λ) by Newton-CG to ‖∇_θ g‖ ≤ ``gt_tol`` (1e-10 float64, 1e-4 float32), cached
per λ; ``exact_hypergradient`` by CG to relative residual ≤ ``gt_tol``; achieved values in
``gt_inner_grad_norm`` / ``gt_cg_residual``. ``exact`` declines above its dense limit.

Sizes: ``quick`` 2,000 features, 200 train / 200 validation / 400 test, float64 (seconds;
``exact`` applies); ``full`` 130,107 features (scikit-learn's 20newsgroups_vectorized), its
11,314 training documents halved into 5,657 train / 5,657 validation, 7,532 test, float32.
Mini-batches: ``batch_size`` (64) indices by the ``sampling`` scheme
(:mod:`blobench.toolkit.sampling`).
Primary metric: test log-loss.
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import glm
from blobench.toolkit.data import load_dataset
from blobench.toolkit.data.splits import rows, three_way
from blobench.toolkit.sampling import FiniteSumSamplers, sampling_param

#: n·d up to which the losses use a dense copy of the training design (see ``build``)
DENSE_AUTODIFF_LIMIT = 4_000_000


def synthetic_text(n: int, d: int, words: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(X sparse CSR float64 n × d, y ±1 float64): the seeded generator of the docstring."""
    zipf = (torch.arange(d, dtype=torch.float64) + 10.0) ** -1.1
    word_ids = torch.multinomial(zipf / zipf.sum(), n * words, replacement=True,
                                 generator=generator)
    doc_ids = torch.arange(n).repeat_interleave(words)
    counts = torch.sparse_coo_tensor(torch.stack([doc_ids, word_ids]),
                                     torch.ones(n * words, dtype=torch.float64),
                                     (n, d), check_invariants=False).coalesce()
    (r, c), v = counts.indices(), counts.values()
    df = torch.bincount(c, minlength=d).double()
    idf = torch.log((1.0 + n) / (1.0 + df)) + 1.0
    v = torch.log1p(v) * idf[c]
    v = v / torch.sqrt(torch.zeros(n, dtype=torch.float64).index_add_(0, r, v * v))[r]
    x = torch.sparse_coo_tensor(torch.stack([r, c]), v, (n, d),
                                check_invariants=False).coalesce().to_sparse_csr()
    head = max(1, d // 5)  # the signal lives on frequent-enough words
    support = torch.randperm(head, generator=generator)[:max(1, d // 20)]
    w = torch.zeros(d, dtype=torch.float64)
    w[support] = torch.randn(len(support), generator=generator, dtype=torch.float64)
    margin = x @ w
    y = torch.where(margin > margin.median(), 1.0, -1.0).double()
    flip = torch.rand(n, generator=generator) < 0.1
    return x, torch.where(flip, -y, y)


def _scaled_rows(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """diag(scale) X for a sparse CSR X."""
    crow = x.crow_indices()
    row_of = torch.repeat_interleave(torch.arange(x.shape[0], device=crow.device),
                                     crow[1:] - crow[:-1])
    return torch.sparse_csr_tensor(crow, x.col_indices(), x.values() * scale[row_of],
                                   size=x.shape, check_invariants=False)


class SparseHO(glm.IterativeGroundTruth, glm.ExpPenaltyDefaults, FiniteSumSamplers,
                Problem):
    name = "sparse_ho"
    family = "hyperparameter optimization"
    reference = "Pedregosa 2016 (ICML, HOAG) 20news; Dagréou et al. 2022 (benchopt)"
    params = {
        "source": Param(str, "synthetic", "synthetic (seeded, 20news-shaped) or news20 (real)",
                        choices=("synthetic", "news20")),
        "n_features": Param(int, 2000, "features of the synthetic design", low=2),
        "words_per_doc": Param(int, 120, "word draws per synthetic document", low=1),
        "n_train": Param(int, 200, "training documents (inner objective)", low=2),
        "n_val": Param(int, 200, "validation documents (outer objective)", low=1),
        "n_test": Param(int, 400, "test documents", low=1),
        "init_log_reg": Param(float, -4.0, "λ₀: initial log-penalty of every feature"),
        "batch_size": Param(int, 64, "mini-batch size of the samplers; 0 = full batch", low=0),
        "sampling": sampling_param(),
        "dtype": dtype_param("float64"),
    }
    sizes = {"quick": {"n_features": 2000, "n_train": 200, "n_val": 200, "n_test": 400},
             "full": {"n_features": 130107, "n_train": 5657, "n_val": 5657, "n_test": 7532,
                      "dtype": "float32"}}
    primary_metric = "test_loss"
    higher_is_better = False
    #: sizes of the two finite sums (set in build; declared here so that planning knows the
    #: problem is a finite sum without loading its data)
    n_inner_samples: int = 0
    n_outer_samples: int = 0
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        self.dtype = torch_dtype(c["dtype"])
        n_tr, n_va, n_te = c["n_train"], c["n_val"], c["n_test"]
        if c["source"] == "synthetic":
            x, y = synthetic_text(n_tr + n_va + n_te, c["n_features"], c["words_per_doc"],
                                  generator)
            data = {"x_train": x, "y_train": y}
        else:
            data = load_dataset("news20")
        parts = three_way(data, n_tr, n_va, n_te, generator, self.name, c["source"])
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = [
            (x.to(self.dtype).to(self.device), y.to(self.dtype).to(self.device))
            for x, y in parts]
        self.y, self.y_val, self.y_test = y_tr, y_va, y_te
        self.x, self.x_val, self.x_test = x_tr, x_va, x_te
        # the losses (autodiff's path) use a dense copy of a small design: torch cannot
        # batch (vmap) products with sparse tensors, which dense Hessians need; the oracles
        # (every algorithm's fast path) always use the sparse Z, Zᵀ
        small = x_tr.shape[0] * x_tr.shape[1] <= DENSE_AUTODIFF_LIMIT
        self.x_autodiff = x_tr.to_dense() if small else x_tr
        self.z = _scaled_rows(x_tr, -y_tr)  # Z = −y ⊙ X, so that s = σ(Zθ)
        self.z_t = self.z.t().to_sparse_csr()  # Zᵀ as CSR: fast products
        self.x_val_t = x_va.t().to_sparse_csr()
        self.n_inner_samples, self.n_outer_samples = n_tr, n_va
        # ‖x_i‖ ≤ 1 for tf-idf rows, so λ_max(XᵀX)/(4n) ≤ max ‖x_i‖²/4
        self.lipschitz_data = float((x_tr.values() ** 2).sum()) / (4 * n_tr)
        self.init_ground_truth(self.dtype)

    @property
    def dim_inner(self) -> int:
        return self.x.shape[1]

    @property
    def dim_outer(self) -> int:
        return self.x.shape[1]

    # ---------------------------------------------------------------- losses
    def inner_loss(self, theta, lam, batch=None):
        x = self.x_autodiff
        x, y = (x, self.y) if batch is None else (rows(x, batch), self.y[batch])
        return glm.logistic_loss(theta, x, y) + 0.5 * (lam.exp() * theta * theta).sum()

    def outer_loss(self, theta, lam, batch=None):
        x, y = ((self.x_val, self.y_val) if batch is None
                else (rows(self.x_val, batch), self.y_val[batch]))
        return glm.logistic_loss(theta, x, y)

    # ------------------------------------------------- analytic oracles (see docstring)
    def _signed(self, batch):
        """(Z, Zᵀ) of the batch (sparse CSR)."""
        if batch is None:
            return self.z, self.z_t
        z = rows(self.z, batch)
        return z, z.t().to_sparse_csr()

    def inner_grad_oracle(self, theta, lam, batch=None):
        z, z_t = self._signed(batch)
        return torch.addcmul(z_t @ torch.sigmoid(z @ theta) / z.shape[0], lam.exp(), theta)

    def inner_hessian_operator(self, theta, lam, batch=None):
        z, z_t = self._signed(batch)
        s = torch.sigmoid(z @ theta)
        curvature = s * (1 - s) / z.shape[0]
        weights = lam.exp()
        return lambda v: torch.addcmul(z_t @ (curvature * (z @ v)), weights, v)

    def mixed_oracle(self, theta, lam, v, batch=None):
        return lam.exp() * theta * v

    def outer_grads_oracle(self, theta, lam, batch=None):
        if batch is None:
            x, x_t, y = self.x_val, self.x_val_t, self.y_val
        else:
            x, y = rows(self.x_val, batch), self.y_val[batch]
            x_t = x.t().to_sparse_csr()
        s = torch.sigmoid(-y * (x @ theta))
        return x_t @ (-y * s / x.shape[0]), torch.zeros_like(lam)

    def outer_step_size(self):
        return 1.0

    def evaluate(self, theta, lam):
        with torch.no_grad():
            loss, accuracy = glm.logistic_scores(theta, self.x_test, self.y_test)
            return {"test_loss": loss, "test_accuracy": accuracy,
                    "val_loss": float(self.outer_loss(theta, lam)),
                    **self.ground_truth_metrics()}
