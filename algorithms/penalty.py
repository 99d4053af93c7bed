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

Each outer step: T optimizer steps on θ with ∇_θ h_θ, then one optimizer step on λ with
∇_λ h_λ (Adam as in the paper, or SGD). When ‖(∇_λ h_λ, ∇_θ h_θ)‖ < ε (evaluated after the λ
step's gradient, at the new θ): ν ← ν + γ ∇_θ g (with the γ in use), γ ← 1.1 γ,
inner_weight ← 0.9 inner_weight, ε ← 0.9 ε, both learning rates × 0.9. Defaults from the
paper: T = 20, γ₀ = inner_weight₀ = ε₀ = 1e-2, ν₀ = 1e-4 (every entry).

Learning rates: Adam: θ-lr None → ``problem.inner_step_size(λ)``, λ-lr None → 0.1 ·
``problem.outer_step_size()``. SGD: θ-lr None → 1/(L + γ L² + inner_weight L) with
1/L = ``problem.inner_step_size(λ)`` (the curvature of h_θ, assuming ‖∇²_θθ f‖ ≤ L),
recomputed as γ grows. ``state.hypergrad`` is ∇_λ h_λ. Cost per outer step: T + 1
(inner gradient + HVP + outer gradient) + 1 mixed product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.algorithm import Algorithm, State, outer_update
from blobench.params import POSITIVE, Param
from blobench.problem import Problem
from blobench.single_loop import inner_batch, or_default, outer_batch, outer_lr_default

GROWTH, SHRINK = 1.1, 0.9  # the authors' schedule factors


class Penalty(Algorithm):
    name = "penalty"
    family = "penalty (first order in the inverse)"
    reference = "Mehra & Hamm 2021 (ACML), Alg. 1 and the authors' implementation"
    params = {
        "inner_steps": Param(int, 20, "T: optimizer steps on θ (with h_θ) per outer step",
                             low=1),
        "inner_lr": Param(float, None, "θ learning rate; None = derived from the problem",
                          optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "λ learning rate; None = 0.1 × the problem's default",
                          optional=True, **POSITIVE),
        "optimizer": Param(str, "adam", "optimizer on θ and λ", choices=("adam", "sgd")),
        "penalty": Param(float, 1e-2, "γ₀: initial penalty weight of ‖∇_θ g‖²", **POSITIVE),
        "inner_weight": Param(float, 1e-2, "initial weight of g in h_θ (the paper's λ)",
                              low=0.0),
        "tol": Param(float, 1e-2, "ε₀: gradient-norm threshold that triggers the schedule",
                     low=0.0),
        "multiplier_init": Param(float, 1e-4, "ν₀: initial value of every multiplier entry"),
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
            schedule_updates=0)
        return state

    # ------------------------------------------------------------------ pieces
    def gradients(self, problem: Problem, state: State, theta: torch.Tensor,
                  with_lam: bool = True
                  ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(∇_λ h_λ, ∇_θ h_θ, ∇_θ g) at (θ, state.lam) on fresh mini-batches; ∇_λ h_λ (its
        mixed product) only ``with_lam`` — the θ phase does not need it."""
        lam = state.lam.detach()
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam, outer_batch(problem, state))
        ops = autodiff.InnerDerivatives(problem, theta, lam, inner_batch(problem, state))
        w = state.extra["nu"] + state.extra["gamma"] * ops.grad
        grad_theta = f_theta + ops.hvp(w) + state.extra["inner_weight"] * ops.grad
        return (f_lam + ops.mixed(w) if with_lam else None), grad_theta, ops.grad

    def _set_lrs(self, problem: Problem, state: State) -> None:
        s = problem.inner_step_size(state.lam.detach())
        if self.inner_lr is not None or self.optimizer == "adam":
            inner = or_default(self.inner_lr, s)
        else:
            inner = s / (1.0 + state.extra["gamma"] / s + state.extra["inner_weight"])
        outer = outer_lr_default(self.outer_lr, problem)
        scale = state.extra["lr_scale"]
        for name, lr in (("inner_optimizer", inner), ("outer_optimizer", outer)):
            for group in state.extra[name].param_groups:
                group["lr"] = lr * scale

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

    # -------------------------------------------------------------------- step
    def step(self, problem, state):
        self.inner_phase(problem, state)
        grad_lam, grad_theta, g_theta = self.gradients(problem, state, state.theta)
        outer_update(state, grad_lam)
        norm = float(torch.sqrt(grad_lam @ grad_lam + grad_theta @ grad_theta))
        if norm < state.extra["tol"]:
            ex = state.extra
            ex["nu"] = ex["nu"] + ex["gamma"] * g_theta
            ex["gamma"] *= GROWTH
            ex["inner_weight"] *= SHRINK
            ex["tol"] *= SHRINK
            ex["lr_scale"] *= SHRINK
            ex["schedule_updates"] += 1
        return state
