"""The penalty method of Mehra & Hamm (ACML 2021): inversion-free bilevel optimization.

"Penalty Method for Inversion-Free Deep Bilevel Optimization" (arXiv 1911.03432). The lower
level is replaced by its stationarity condition ∇_θ g = 0 and penalized (u = λ, v = θ):

    f̃(λ, θ; γ) = f + (γ/2) ‖∇_θ g‖²,   ∇_λ f̃ = ∇_λ f + γ J ∇_θ g,   ∇_θ f̃ = ∇_θ f + γ H ∇_θ g

(H = ∇²_θθ g, J = ∇²_λθ g: Hessian-vector and mixed products only, no inverse). At a
θ-stationary point γ ∇_θ g = −H⁻¹ ∇_θ f, so ∇_λ f̃ → the IFT hypergradient as γ → ∞.

As the authors implement it (an augmented Lagrangian with multiplier ν ∈ ℝ^{dim θ}, plus a
term that keeps θ at minima of g rather than saddles; the paper's weight λ of g is
``inner_weight`` here, λ being our outer variable):

    h_λ = f + νᵀ ∇_θ g + (γ/2) ‖∇_θ g‖²,   ∇_λ h_λ = ∇_λ f + J (ν + γ ∇_θ g)
    h_θ = h_λ + w · g,                      ∇_θ h_θ = ∇_θ f + H (ν + γ ∇_θ g) + w ∇_θ g

(w = ``inner_weight``).

Each outer step (Algorithm 1 of the paper, its "while ‖∇f̃‖ > ε_k" loop unrolled into outer
steps): T steps on θ along ∇_θ h_θ, then one step on λ along ∇_λ h_λ. When
‖(∇_λ h_λ, ∇_θ h_θ)‖ < ε (evaluated with the λ step's gradient, at the new θ) the penalized
problem counts as solved at this γ and the schedule advances: ν ← ν + γ ∇_θ g (with the γ in
use, *then*) γ ← 1.1 γ, inner_weight ← 0.9 inner_weight, ε ← 0.9 ε, and (Adam) both learning
rates × 0.9. Defaults from the paper: T = 20, γ₀ = inner_weight₀ = ε₀ = 1e-2, ν₀ = 1e-4
(every entry).

Optimizer — a documented deviation (issue 23.5): the default is ``sgd`` (gradient descent with
steps from the curvature of h), not the paper's Adam. With Adam at a fixed learning rate the
iterates hover at a distance ∝ lr from the stationary point, ‖∇h‖ stays above ε, the schedule
fired 0–4 times in 1,000 steps and γ stayed at 1e-2 (a biased penalized optimum). With
``sgd``:

- θ step 1/(L + γL² + inner_weight·L), 1/L = ``problem.inner_step_size(λ)`` (the curvature of
  h_θ when ‖∇²_θθ f‖ ≤ L), recomputed as γ grows — a θ step scaled with γ;
- λ step by backtracking (Armijo): start from twice the last accepted step, at most
  ``outer_lr`` (None → ``problem.outer_step_size()``), halve until h_λ(θ, ·) decreases by
  ½·step·‖∇_λ h_λ‖², with h evaluated on the mini-batches of the gradient (1 inner gradient
  per trial; the stochastic Armijo search of Vaswani et al. 2019 — a mini-batch direction need
  not descend the full-batch h): the λ curvature of h_λ grows like γ‖J‖², which the
  problem does not state, and a fixed λ step either stalls (× 0.9 per schedule update: the
  steps vanish) or diverges once γ is large (measured on ``penalty_synthetic``).

Then h decreases at each γ, ‖∇h‖ reaches ε and the schedule fires (on ``penalty_synthetic``
examples 1 and 3 and on ``quadratic``: 100+ updates in 1,000 steps, error → 1e-7). Known
limit: where f + (γ/2)‖∇_θ g‖² is unbounded below at γ₀ (an outer loss with negative
curvature, ``penalty_synthetic`` examples 2 and 4) no step size helps — the iterates diverge
before γ can grow; start above the threshold (``penalty`` = γ₀ = 1 there).

Stochastic oracles (issue 14). With a fixed mini-batch size the method does not reach λ*:
the penalty gradient γ H_B ∇_θ g_B takes the Hessian and the gradient on one batch, and
E[H_B ∇_θ g_B] = H ∇_θ g + Cov(H_B, ∇_θ g_B) — a bias that γ multiplies — while the test
‖∇h‖ < ε never passes once the gradient noise exceeds ε, so γ and ν stay put (measured on
``finite_sum_quadratic`` quick, γ₀ = 10, 300 steps: error 2.9 with batches of 16, 2.3 with
64; full batch 4.5e-3). The bias is no ball that shrinks usefully with the batch size here: with
T = 5 the errors after 150 / 300 / 600 steps are 2.3 / 1.3 / 2.0 at b = 16, 2.3 / 1.6 / 2.6 at
64 and 1.06 / 1.02 / 1.7 at 96 of the 128 samples (full batch: 0.28 / 7e-3 / 1.9e-3).
The paper's analysis assumes exact gradients; the stochastic route
kept here is growing batches, ``batch_growth`` = ρ > 1: ⌈ρ^k⌉ of the problem's mini-batches
at outer step k (the full sum once they cover it; Friedlander & Schmidt 2012, hybrid
deterministic-stochastic methods), after which the paper's schedule converges as with exact
gradients (``tests/test_fidelity_minibatch.py``: ρ = 1.02 from batches of 16, γ₀ = 10, T = 5:
relative error 0.010 after 300 steps). γ₀ = 10 there because f + (γ/2)‖∇_θ g‖² is unbounded
below on that problem for γ < 3.1 (the smallest eigenvalue of its joint Hessian in (θ, λ):
−0.044 at γ = 1e-2, −4e-4 at 3, +0.015 at 10) — the known limit above. ρ = 1 (fixed
batches) is the default.

``state.hypergrad`` is ∇_λ h_λ. Cost per outer step: T + 1 (inner gradient + HVP + outer
gradient) + 1 mixed product, plus (sgd) 1 + the number of halvings inner gradients for the
line search; memory O(dim θ + dim λ).
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import Algorithm, State, outer_update
from blobench.bases.single_loop import grown_batch, or_default, outer_lr_default
from blobench.contracts.params import POSITIVE, Param
from blobench.contracts.problem import Problem

GROWTH, SHRINK = 1.1, 0.9  # the authors' schedule factors
MAX_HALVINGS = 40


class Penalty(Algorithm):
    name = "penalty"
    family = "penalty (first order in the inverse)"
    reference = "Mehra & Hamm 2021 (ACML), Alg. 1 and the authors' implementation"
    params = {
        "inner_steps": Param(int, 20, "T: optimizer steps on θ (with h_θ) per outer step",
                             low=1),
        "inner_lr": Param(float, None, "θ learning rate; None = derived from the problem",
                          optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "λ learning rate (sgd: the first step tried); None = "
                          "the problem's default (adam: 0.1 × it)",
                          optional=True, **POSITIVE),
        "optimizer": Param(str, "sgd", "sgd (curvature-scaled θ step, backtracked λ step) or "
                           "adam (the paper's)", choices=("adam", "sgd")),
        "penalty": Param(float, 1e-2, "γ₀: initial penalty weight of ‖∇_θ g‖²", **POSITIVE),
        "inner_weight": Param(float, 1e-2, "initial weight of g in h_θ (the paper's λ)",
                              low=0.0),
        "tol": Param(float, 1e-2, "ε₀: gradient-norm threshold that triggers the schedule",
                     low=0.0),
        "multiplier_init": Param(float, 1e-4, "ν₀: initial value of every multiplier entry"),
        "batch_growth": Param(float, 1.0, "ρ: the mini-batches at outer step k hold ⌈ρ^k⌉ "
                              "sampler batches (the full sum once that covers it); 1 = fixed",
                              low=1.0),
    }

    def init(self, problem: Problem, theta0: torch.Tensor, lam0: torch.Tensor,
             generator: torch.Generator) -> State:
        theta = theta0.detach().clone()
        lam = lam0.detach().clone()
        state = State(theta=theta, lam=lam)
        opt = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
        state.extra.update(
            generator=generator, theta_leaf=theta, inner_optimizer=opt([theta], lr=1.0),
            outer_optimizer=opt([lam], lr=1.0), nu=torch.full_like(theta, self.multiplier_init),
            gamma=self.penalty, inner_weight=self.inner_weight, tol=self.tol, lr_scale=1.0,
            schedule_updates=0, k=0)
        return state

    # ------------------------------------------------------------------ pieces
    def gradients(self, problem: Problem, state: State, theta: torch.Tensor,
                  with_lam: bool = True
                  ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(∇_λ h_λ, ∇_θ h_θ, ∇_θ g) at (θ, state.lam) on fresh mini-batches; ∇_λ h_λ (its
        mixed product) only ``with_lam`` — the θ phase does not need it."""
        lam = state.lam.detach()
        batches = tuple(grown_batch(problem, state, level, self.batch_growth)
                        for level in ("inner", "outer"))
        state.extra["batches"] = batches  # the λ line search evaluates h on the same ones
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam, batches[1])
        ops = autodiff.InnerDerivatives(problem, theta, lam, batches[0])
        w = state.extra["nu"] + state.extra["gamma"] * ops.grad
        grad_theta = f_theta + ops.hvp(w) + state.extra["inner_weight"] * ops.grad
        return (f_lam + ops.mixed(w) if with_lam else None), grad_theta, ops.grad

    def _set_lrs(self, problem: Problem, state: State) -> None:
        ex = state.extra
        s = problem.inner_step_size(state.lam.detach())
        if self.optimizer == "adam":
            inner = or_default(self.inner_lr, s) * ex["lr_scale"]
            outer = outer_lr_default(self.outer_lr, problem) * ex["lr_scale"]
        else:  # steps from the curvature of h in each block (see the module docstring)
            inner = or_default(self.inner_lr, s / (1.0 + ex["gamma"] / s + ex["inner_weight"]))
            outer = state.extra.get("outer_step", 0.0)  # set by the line search
        for name, lr in (("inner_optimizer", inner), ("outer_optimizer", outer)):
            for group in ex[name].param_groups:
                group["lr"] = lr

    def inner_phase(self, problem: Problem, state: State, steps: int | None = None) -> None:
        """``steps`` (default T) optimizer steps on θ along ∇_θ h_θ, in place."""
        self._set_lrs(problem, state)
        theta = state.extra["theta_leaf"]
        for _ in range(self.inner_steps if steps is None else steps):
            _, grad_theta, _ = self.gradients(problem, state, theta.detach(), with_lam=False)
            theta.grad = grad_theta
            state.extra["inner_optimizer"].step()
            theta.grad = None
        state.theta = theta.detach()

    # ------------------------------------------------------- λ step (SGD mode)
    def penalized_value(self, problem: Problem, state: State, theta: torch.Tensor,
                        lam: torch.Tensor) -> float:
        """h_λ(θ, λ) = f + νᵀ∇_θ g + (γ/2)‖∇_θ g‖² on the mini-batches of the last gradient
        (so that ∇_λ of this value is exactly the direction being searched)."""
        ex = state.extra
        inner, outer = ex["batches"]
        g = autodiff.inner_grad(problem, theta, lam, inner)
        with torch.no_grad():
            f = problem.outer_loss(theta.detach(), lam.detach(), outer)
        return float(f + ex["nu"] @ g + 0.5 * ex["gamma"] * (g @ g))

    def backtracked_lr(self, problem: Problem, state: State, grad_lam: torch.Tensor) -> float:
        """The λ step: twice the last accepted step (at most the base step), halved until
        h_λ(θ, ·) decreases by at least ½·step·‖∇_λ h_λ‖² (Armijo; on the gradient's own
        mini-batches, the stochastic line search of Vaswani et al. 2019)."""
        ex = state.extra
        lam, theta = state.lam.detach(), state.theta
        lr = min(2.0 * ex["outer_step"], ex["base_outer_step"])
        h0 = self.penalized_value(problem, state, theta, lam)
        sq = float(grad_lam @ grad_lam)
        for _ in range(MAX_HALVINGS):
            if self.penalized_value(problem, state, theta, lam - lr * grad_lam) <= (
                    h0 - 0.5 * lr * sq):
                break
            lr *= 0.5
        ex["outer_step"] = lr
        return lr

    # -------------------------------------------------------------------- step
    def step(self, problem, state):
        ex = state.extra
        self.inner_phase(problem, state)
        grad_lam, grad_theta, g_theta = self.gradients(problem, state, state.theta)
        if self.optimizer == "sgd":
            if "outer_step" not in ex:
                ex["base_outer_step"] = or_default(self.outer_lr, problem.outer_step_size())
                ex["outer_step"] = ex["base_outer_step"] / 2
            lr = self.backtracked_lr(problem, state, grad_lam)
            for group in ex["outer_optimizer"].param_groups:
                group["lr"] = lr
        outer_update(state, grad_lam)
        norm = float(torch.sqrt(grad_lam @ grad_lam + grad_theta @ grad_theta))
        if norm < ex["tol"]:  # Algorithm 1: h minimized to tolerance ε at this γ
            ex["nu"] = ex["nu"] + ex["gamma"] * g_theta  # with the γ in use, then grow it
            ex["gamma"] *= GROWTH
            ex["inner_weight"] *= SHRINK
            ex["tol"] *= SHRINK
            ex["lr_scale"] *= SHRINK
            ex["schedule_updates"] += 1
        ex["k"] += 1
        return state
