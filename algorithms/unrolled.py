"""Reverse-mode differentiation through T unrolled inner steps (RHG).

θ_{t+1} = θ_t − η ∇_θ g(θ_t, λ), t = 0..T−1, kept as a differentiable graph; the
hypergradient is the exact derivative of the truncated objective f(θ_T(λ), λ), computed by
backpropagation through the T steps (Maclaurin et al. 2015; Franceschi et al. 2017, Alg. 1,
"reverse-HG"). Time O(T) gradient evaluations, memory O(T · dim θ). When θ₀ is a function of
λ (MAML-type problems) the derivative also flows through θ₀.
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import DoubleLoop
from blobench.contracts.params import Param


class Unrolled(DoubleLoop):
    name = "unrolled"
    family = "explicit (unrolled)"
    reference = "Maclaurin et al. 2015; Franceschi et al. 2017 Alg. 1 (RHG)"
    check_knob = ("inner_steps", (5, 50, 400), {})  # `blobench check` (check_claims.py)
    params = {**DoubleLoop.params,
              "warm_start": Param(bool, False, "start the unroll from the previous θ (else θ₀)")}

    @property
    def differentiates_through_init(self):
        return not self.warm_start  # a cold start unrolls from θ₀(λ)

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        theta0 = self.start_theta(problem, state, lam)
        theta_t = autodiff.unroll(problem, theta0, lam, self.inner_steps,
                                  self.inner_lr_at(problem, lam))
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)
