"""Learning-rate schedule tuning: λ = the log step sizes of T gradient steps training a network.

Maclaurin, Duvenaud & Adams 2015 ("Gradient-based hyperparameter optimization through
reversible learning", §3.1: per-iteration learning-rate schedules of an MLP on MNIST);
Franceschi, Donini, Frasconi & Pontil 2017 (ICML, §5.3 "learning the learning rate",
forward and reverse hypergradients). There is no inner optimum: F(λ) is the validation loss
of the network *after* T steps, so only estimators that differentiate the T-step map apply.

Data (:mod:`blobench.toolkit.data`): Fashion-MNIST (or MNIST when present; else ``not_applicable``),
``n_train`` training / ``n_val`` validation / ``n_test`` test images, pixels / 255 with an
intercept-free MLP 784 → ``hidden`` → 10 (ReLU), w₀ drawn from the cell's θ₀ generator (the
same w₀ for every outer step: Maclaurin et al. train from a fixed initialization).

The schedule as a bilevel problem of the Problem API — θ = (w, t): the weights and a step
counter, θ₀ = (w₀, 0); λ = (a_0, …, a_{T−1}), the log step sizes, λ₀ = log ``init_lr``:

    inner  g(θ, λ) = η_k(λ) · L_train(w) − t,   k = round(t),  η_k = e^{a_k} (k < T), 0 (k ≥ T)
    outer  f(θ, λ) = L_val(w)

One gradient step of size 1 on g (``inner_step_size`` = 1) is w ← w − e^{a_t} ∇L_train(w),
t ← t + 1 (∂g/∂t = −1; the index k is piecewise constant in t): exactly the t-th step of
the schedule, and steps beyond T leave w unchanged. So an entry unrolling T' ≥ T inner steps
from θ₀ computes F(λ) = L_val(w_T(λ)) and, by reverse or forward mode, its exact gradient;
run the entries with ``inner_steps`` ≥ ``n_steps`` (the default T = 20 = the double-loop
entries' default) and at their default ``inner_lr`` (= 1 here: another value rescales every
step and re-indexes the schedule). Momentum is not included: a heavy-ball step is not a
gradient step of any g(θ, λ) (its update field has no potential), so it would not fit the
Problem API's inner gradient descent.

Declared ``inner_optimum = False``: implicit, penalty, value-function and single-loop
stochastic entries are skipped with the reason (:meth:`Algorithm.skip_reason`), and only
cold-start entries of the unrolled family (unrolled, truncated, forward_mode) run — a warm
start would continue from t = T, where nothing moves. ``own_theta_deployed``: the network
trained by the schedule is the answer (there is no θ*(λ) to re-train). ``inner_grad_norm``
of the records is ≥ 1 here (the counter's −t term), not a convergence measure.

Metrics: ``test_loss`` (primary, lower is better) and ``test_accuracy`` of w after the
steps, ``val_loss`` (= F).

Sizes: ``quick`` hidden 32, T = 20, 500 / 500 / 1,000 images (seconds); ``full``
hidden 100, T = 100 (Maclaurin et al.: 100 iterations), 10,000 / 10,000 / 10,000 images,
float32.

Evaluation cost (issue 15: ≤ 25 % of solver time): the held-out metrics are cheap (one
forward pass over the test and validation images); what a cell pays beside its solver is the
engine's replay of one step under the live-tensor probe at the final evaluation (≈ 2 steps'
time). At 10 outer steps evaluated every 5 that was 19–26 % of the solver time; the quick
budget is now 12 outer steps evaluated at λ₀ and at the end only (16–20 %; 15 steps: 13 %):
less frequent, and the fixed cost spread over 2 more steps. Not longer: at the
default outer step 3, ``unrolled`` on seed 0 leaves the stable range after step 15 (F
1.02 → 3.1 at step 16, non-finite at 19; seeds 1 and 2 and ``forward_mode`` /
``truncated`` stay finite through 20), so a 20-step quick run would rank a divergence.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blobench.contracts.params import Param, dtype_param, torch_dtype
from blobench.contracts.problem import Budget, Problem
from blobench.toolkit import convnets
from blobench.toolkit.data import load_dataset
from blobench.toolkit.data.splits import three_way
from blobench.toolkit.flatmodel import FlatModel, mlp

CE = nn.functional.cross_entropy


class LRSchedule(Problem):
    name = "lr_schedule"
    family = "optimizer tuning"
    reference = ("Maclaurin et al. 2015 §3.1 (learning-rate schedules); Franceschi et al. "
                 "2017 §5.3")
    params = {
        "dataset": Param(str, "fashion_mnist", "image dataset (blobench data list)",
                         choices=("fashion_mnist", "mnist")),
        "n_steps": Param(int, 20, "T: training steps scheduled (run entries with "
                         "inner_steps ≥ T)", low=1),
        "n_train": Param(int, 500, "training images (full batch each step)", low=1),
        "n_val": Param(int, 500, "validation images (the outer objective)", low=1),
        "n_test": Param(int, 1000, "test images", low=1),
        "hidden": Param(int, 32, "hidden units of the MLP 784-h-10", low=1),
        "init_lr": Param(float, 0.1, "λ₀: every step size e^{a_k} starts here", low=0.0,
                         low_open=True),
        "dtype": dtype_param("float32"),
    }
    sizes = {"quick": {},
             "full": {"n_steps": 100, "n_train": 10000, "n_val": 10000, "n_test": 10000,
                      "hidden": 100}}
    primary_metric = "test_loss"
    higher_is_better = False
    validation_metric = "outer_loss"
    own_theta_deployed = True
    inner_optimum = False
    budgets = {"quick": Budget(steps=12, eval_every=12),  # see "Evaluation cost" above
               "full": Budget(steps=100, eval_every=10)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        self.dtype = torch_dtype(c["dtype"])
        data = load_dataset(c["dataset"])
        parts = three_way(data, c["n_train"], c["n_val"], c["n_test"], generator, self.name,
                          c["dataset"])
        (self.x, self.y), (self.x_val, self.y_val), (self.x_test, self.y_test) = (
            (convnets.images(x, self.dtype, self.device).flatten(1), y.to(self.device))
            for x, y in parts)
        self.model = FlatModel(mlp([self.x.shape[1], c["hidden"], 10], nn.ReLU))
        self.lam0 = torch.full((c["n_steps"],), math.log(c["init_lr"]), dtype=self.dtype,
                               device=self.device)

    @property
    def dim_inner(self) -> int:
        return self.model.numel + 1

    @property
    def dim_outer(self) -> int:
        return self.config["n_steps"]

    def step_size(self, theta: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """η_k(λ) at the counter's step k = round(t) (0 once k ≥ T)."""
        k = int(torch.round(theta[-1].detach()).clamp(0, self.config["n_steps"]))
        return torch.cat([torch.exp(lam), lam.new_zeros(1)])[k]

    def inner_loss(self, theta, lam, batch=None):
        train = CE(self.model(theta[:-1], self.x), self.y)
        return self.step_size(theta, lam) * train - theta[-1]

    def outer_loss(self, theta, lam, batch=None):
        return CE(self.model(theta[:-1], self.x_val), self.y_val)

    def init_outer(self, generator):
        return self.lam0.clone()

    def init_inner(self, lam, generator):
        w0 = self.model.init(generator, self.dtype, self.device)
        return torch.cat([w0, w0.new_zeros(1)])

    def inner_step_size(self, lam):
        return 1.0

    def outer_step_size(self):
        return 3.0  # ‖dF/da‖ ≈ 0.15 at λ₀ (quick, measured): log-steps move ≈ 0.5 per step

    def evaluate(self, theta, lam):
        loss, accuracy = convnets.scores(self.model, theta[:-1], self.x_test, self.y_test)
        val, _ = convnets.scores(self.model, theta[:-1], self.x_val, self.y_val)
        return {"test_loss": loss, "test_accuracy": accuracy, "val_loss": val,
                "steps_taken": float(theta[-1])}
