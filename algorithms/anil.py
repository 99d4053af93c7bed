"""ANIL: almost no inner loop (Raghu, Raghu, Bengio, Vinyals, ICLR 2020, §4 "ANIL").

MAML (Finn et al. 2017) with the task adaptation restricted to the head: the inner gradient
steps move only the last layer, the body keeps the meta-learned initialization,

    θ_{t+1} = θ_t − α m_θ ∘ ∇_θ g(θ_t, λ),   θ_0 = θ₀(λ),   m_θ = θ₀(m)

with m the problem's ``head_mask()`` over λ (spread over the task copies by the problem's
θ₀ map), and the outer step along the exact derivative of f(θ_T(λ), λ) by reverse mode
through the T head-only steps and θ₀(λ) (second order, as the paper's ANIL; the body's
meta-gradient is then ∇_body f at the adapted head). With an all-true mask it is ``maml``.

Applies to problems that declare a head (override :meth:`Problem.head_mask`: the few-shot
problems, whose head is the last linear layer) and whose θ₀ depends on λ. Defaults as the
``maml`` entry here (T = 1, Adam at the problem's meta step size; the paper uses MAML's
settings). Cost: T inner gradients (masked) + a reverse pass through them.
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import DoubleLoop, init_dependence_reason, meta_params
from blobench.contracts.problem import Problem


class ANIL(DoubleLoop):
    name = "anil"
    family = "meta-learning (initialization)"
    reference = "Raghu, Raghu, Bengio, Vinyals 2020 (ICLR), ANIL"
    #: what `blobench check` verifies against MAML's full adaptation: a descent direction of its
    #: T-step adapted loss F_T (ANIL's direction is exact for the head-only adaptation, checked
    #: by finite differences in tests/test_wave2_anil.py)
    approximation = "first_order_meta"
    params = meta_params(1, "α: head adaptation step; None = the problem's",
                         "torch.optim optimizer on λ")

    differentiates_through_init = True

    def applies_to(self, problem, params=None):
        reason = init_dependence_reason(problem)
        if reason is None and getattr(problem, "head_mask", None) is Problem.head_mask:
            reason = "the problem declares no head (Problem.head_mask)"
        return reason

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        with torch.enable_grad():
            theta0 = self.start_theta(problem, state, lam)
        rates = head_rates(problem, self.inner_lr_at(problem, lam.detach()), lam)
        theta_t = autodiff.unroll(problem, theta0, lam, self.inner_steps, rates)
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)


def head_rates(problem: Problem, lr: float, like: torch.Tensor) -> torch.Tensor:
    """α m_θ: the step size on the head's coordinates of θ, 0 on the body's (dtype of λ)."""
    mask = problem.head_mask().to(dtype=like.dtype)
    return problem.init_inner(lr * mask, torch.Generator().manual_seed(0)).detach()
