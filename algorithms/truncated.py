"""Truncated back-propagation through the last K of T inner steps (K-RMD).

θ_{t+1} = θ_t − η ∇_θ g(θ_t, λ), t = 0..T−1. The first T − K steps run without a graph; the
last K are unrolled and differentiated in reverse mode, so the hypergradient is

    h_K = ∇_λ f(θ_T, λ) + Σ_{t=T−K}^{T−1} B_t A_{t+1} ⋯ A_{T−1} ∇_θ f(θ_T, λ),
    A_t = I − η ∇²_θθ g(θ_t, λ),   B_t = −η ∇²_λθ g(θ_t, λ)

(Shaban, Cheng, Hatch, Boots, AISTATS 2019, "Truncated back-propagation for bilevel
optimization", eq. 6 / Alg. 1). K = T is full reverse-mode RHG (``unrolled``): then the
derivative also flows through θ₀ when θ₀ is a function of λ (MAML-type problems). Time
O(T + K) gradient evaluations, memory O(K · dim θ) instead of O(T · dim θ).

``inner_solver`` (issue 21): gd, heavy ball, Adam or BDA's aggregation
(:class:`blobench.autodiff.InnerSolver`); the first T − K steps run that solver without a
graph and hand their state (previous iterate, moments) to the last K, which are
differentiated through the solver's update; θ_{T−K} and that state are constants of the
backward pass (the truncation). A constrained lower level (:meth:`Problem.inner_prox`): every
step ends with the prox, differentiated in the last K.

Defaults: T = 20 as the other double-loop entries, K = 5 (chosen here; the paper studies the
bias as K shrinks); cold start per outer step as in the paper's Alg. 1.
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import UNROLLED_INNER_SOLVERS, DoubleLoop, inner_solver_param
from blobench.contracts.errors import UserError
from blobench.contracts.params import Param


class Truncated(DoubleLoop):
    name = "truncated"
    family = "explicit (unrolled)"
    reference = "Shaban et al. 2019 (K-RMD), eq. 6 / Alg. 1"
    check_knob = ("truncation", (1, 10, 300), {"inner_steps": 400})  # `blobench check`
    params = {
        **DoubleLoop.params,
        "warm_start": Param(bool, False, "start the inner solver from the previous θ (else θ₀)"),
        "truncation": Param(int, 5, "K: back-propagate through the last K of the T inner steps",
                            low=1),
        **inner_solver_param(UNROLLED_INNER_SOLVERS),
    }
    handles_inner_prox = True

    @property
    def differentiates_through_init(self):
        """Only a cold start with K = T unrolls back to θ₀(λ)."""
        return not self.warm_start and self.truncation == self.inner_steps

    def check_config(self) -> None:
        if self.truncation > self.inner_steps:
            raise UserError(f"truncated: truncation K={self.truncation} must be <= "
                            f"inner_steps T={self.inner_steps}")

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        lr = self.inner_lr_at(problem, lam)
        theta = self.start_theta(problem, state, lam)
        solver, solver_state = self.inner_solver_spec(), None
        skipped = self.inner_steps - self.truncation
        if skipped > 0:  # no graph: θ_{T−K} and the solver's state are constants
            theta, solver_state = autodiff.inner_solve(problem, theta, lam, skipped, lr, solver,
                                                       return_state=True)
        theta_t = autodiff.unroll(problem, theta, lam, self.truncation, lr, solver=solver,
                                  state=solver_state, start=skipped)
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)
