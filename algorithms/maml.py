"""Initialization-based meta-learning: MAML, first-order MAML, Reptile, iMAML.

The outer variable λ is the initialization of the task weights: θ₀(λ) = (λ, …, λ) stacks one
copy per task (``problem.inner_init_is_outer``), and every outer step restarts the inner
solver from θ₀(λ) (a cold start — these methods are defined that way, so ``warm_start`` is
fixed to False; iMAML's proximal problem would admit a warm start and exposes it). With
θ_T(λ) the T-step gradient-descent iterate θ_{t+1} = θ_t − α ∇_θ g(θ_t, λ):

- ``maml`` (Finn, Abbeel, Levine 2017, Alg. 2): the exact derivative of f(θ_T(λ), λ),
  backpropagated through the T steps *and* through θ₀(λ):
  dF/dλ = Σ_i Π_t (I − α ∇²L_i(θ_i,t)) ∇_{θ_i} f   (second order; memory O(T · dim θ)).
- ``fomaml`` (ibid., §5.2 "first-order approximation"): the Jacobian of θ_T w.r.t. θ₀ is
  replaced by the identity: dF/dλ ≈ ∇_λ f + (∂θ₀/∂λ)ᵀ ∇_θ f(θ_T) = Σ_i ∇_{θ_i} f(θ_T).
- ``reptile`` (Nichol, Achiam, Schulman 2018, Alg. 2, batched): λ ← λ + ε (mean_i θ̃_i − λ)
  with θ̃ = θ_T on the inner loss. The recorded "hypergradient" is λ − mean_i θ̃_i, and the
  outer optimizer (SGD, lr ε) applies it. For a general copy map θ₀(λ) the mean is
  (∂θ₀/∂λ)ᵀ θ̃ / (∂θ₀/∂λ)ᵀ 1 — per λ entry, the mean of its copies.
- ``imaml`` (Rajeswaran, Finn, Kakade, Levine 2019, Alg. 1 and eq. 7): the inner problem has a
  proximal term, g = Σ_i L_i(θ_i) + (ρ/2) Σ_i ‖θ_i − λ‖² (the problem's ``proximal`` = ρ > 0),
  approximately solved by T gradient steps from λ; then the implicit function theorem with
  H = blockdiag(∇²L_i + ρI) and J = ∇²_λθ g = −ρ [I … I] gives
  dF/dλ = ρ Σ_i (∇²L_i + ρI)⁻¹ ∇_{θ_i} f = Σ_i (I + ∇²L_i/ρ)⁻¹ ∇_{θ_i} f,
  the linear system solved by k steps of conjugate gradient (Hessian-vector products only,
  memory O(dim θ) independent of T). CG runs on the stacked block-diagonal system (one
  solve for all tasks; the paper solves per task — identical when converged).
  Defaults from the authors' Omniglot code: ρ = 2 (set on the problem), 5 CG steps,
  16 inner steps, Adam with meta lr 1e-3; their extra CG damping is not used.

All four need a problem whose θ₀ is a function of λ; elsewhere ``applies_to`` says why not.
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import DoubleLoop, ImplicitDoubleLoop, State
from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Problem

Tensor = torch.Tensor

_COLD = (lambda v: v is False, "initialization-based meta-learning adapts from λ at every outer "
                               "step (cold start by definition)")


def _meta_params(inner_steps: int, outer_optimizer: str, outer_lr: float | None,
                 lr_help: str) -> dict[str, Param]:
    return {
        **DoubleLoop.params,
        "inner_steps": Param(int, inner_steps, "T: adaptation steps from λ per task", low=1),
        "inner_lr": Param(float, None, "α: adaptation step size; None = the problem's",
                          optional=True, low=0.0, low_open=True),
        "warm_start": Param(bool, False, "fixed to False: every outer step adapts from λ",
                            check=_COLD),
        "outer_lr": Param(float, outer_lr, lr_help, optional=True, low=0.0, low_open=True),
        "outer_optimizer": Param(str, outer_optimizer, "torch.optim optimizer on λ",
                                 choices=("sgd", "adam")),
    }


def _needs_init_outer(problem: type[Problem]) -> str | None:
    if not problem.inner_init_is_outer:
        return "inner init does not depend on λ (needs a problem with inner_init_is_outer)"
    return None


def _init_with_graph(alg: DoubleLoop, problem: Problem, state: State
                     ) -> tuple[Tensor, Tensor]:
    """(λ as a leaf requiring grad, θ₀(λ) with its graph to λ)."""
    lam = state.lam.detach().requires_grad_(True)
    with torch.enable_grad():
        theta0 = alg.start_theta(problem, state, lam)
    return lam, theta0


def _init_vjp(theta0: Tensor, lam: Tensor, v: Tensor) -> Tensor:
    """(∂θ₀/∂λ)ᵀ v; zero where θ₀ does not depend on λ."""
    (out,) = torch.autograd.grad(theta0, lam, v, retain_graph=True, allow_unused=True)
    return torch.zeros_like(lam) if out is None else out


class MAML(DoubleLoop):
    name = "maml"
    family = "meta-learning (initialization)"
    reference = "Finn, Abbeel, Levine 2017 (MAML) Alg. 2"
    params = _meta_params(1, "adam", None, "meta step size β; None = the problem's (1e-3 on "
                                           "sinusoid, as in the paper)")

    differentiates_through_init = True

    def applies_to(self, problem, params=None):
        return _needs_init_outer(problem)

    def hypergradient(self, problem, state):
        lam, theta0 = _init_with_graph(self, problem, state)
        theta_t = autodiff.unroll(problem, theta0, lam, self.inner_steps,
                                  self.inner_lr_at(problem, lam.detach()))
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)


class FOMAML(DoubleLoop):
    name = "fomaml"
    family = "meta-learning (initialization)"
    reference = "Finn, Abbeel, Levine 2017 (MAML) §5.2 first-order approximation"
    approximation = "first_order_meta"  # `blobench check`: a descent direction of F_T
    params = _meta_params(1, "adam", None, "meta step size β; None = the problem's")

    differentiates_through_init = True

    def applies_to(self, problem, params=None):
        return _needs_init_outer(problem)

    def hypergradient(self, problem, state):
        lam, theta0 = _init_with_graph(self, problem, state)
        theta_t = autodiff.gradient_descent(problem, theta0.detach(), lam.detach(),
                                            self.inner_steps,
                                            self.inner_lr_at(problem, lam.detach()))
        f_theta, f_lam = autodiff.outer_grads(problem, theta_t, lam.detach())
        return theta_t, f_lam + _init_vjp(theta0, lam, f_theta)


class Reptile(DoubleLoop):
    name = "reptile"
    family = "meta-learning (initialization)"
    reference = "Nichol, Achiam, Schulman 2018 (Reptile) Alg. 2"
    approximation = "first_order_meta"
    params = _meta_params(5, "sgd", 0.1, "ε: outer step size (0.1 in the authors' sine demo)")

    differentiates_through_init = True

    def applies_to(self, problem, params=None):
        return _needs_init_outer(problem)

    def hypergradient(self, problem, state):
        lam, theta0 = _init_with_graph(self, problem, state)
        theta_t = autodiff.gradient_descent(problem, theta0.detach(), lam.detach(),
                                            self.inner_steps,
                                            self.inner_lr_at(problem, lam.detach()))
        copies = _init_vjp(theta0, lam, torch.ones_like(theta0))
        mean = _init_vjp(theta0, lam, theta_t) / copies.clamp(min=1.0)
        direction = torch.where(copies > 0, lam.detach() - mean, torch.zeros_like(mean))
        return theta_t, direction


class IMAML(ImplicitDoubleLoop):
    name = "imaml"
    family = "meta-learning (initialization)"
    reference = "Rajeswaran, Finn, Kakade, Levine 2019 (iMAML) Alg. 1, eq. 7"
    params = {
        **_meta_params(16, "adam", None, "meta step size; None = the problem's"),
        "warm_start": Param(bool, False, "start the inner solve from the previous θ (else λ)"),
        "cg_steps": Param(int, 5, "k: conjugate-gradient iterations", low=1),
        "cg_tol": Param(float, 0.0, "stop CG when ‖r‖ ≤ tol·‖b‖", low=0.0),
    }

    differentiates_through_init = True

    def applies_to(self, problem, params=None):
        """``params``: the cell's resolved problem parameters, when the caller has them."""
        reason = _needs_init_outer(problem)
        if reason is None and "proximal" not in problem.params:
            reason = "the problem has no `proximal` parameter (iMAML's (ρ/2)‖θ_i − λ‖² term)"
        if reason is None and params is not None and not params.get("proximal", 0.0) > 0:
            reason = "iMAML needs the problem's proximal term > 0 (e.g. proximal=2)"
        return reason

    def step(self, problem, state):
        if not problem.config.get("proximal", 0.0) > 0:
            raise UserError(f"imaml needs the problem's proximal term > 0, e.g. "
                            f"-p \"{problem.name}[proximal=2]\" (the paper's λ = 2)")
        return super().step(problem, state)

    def solve(self, problem, ops, b, previous):
        return autodiff.cg(ops.hvp, b, self.cg_steps, tol=self.cg_tol)
