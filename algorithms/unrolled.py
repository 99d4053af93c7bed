"""Reverse-mode differentiation through T unrolled inner steps (RHG).

θ_{t+1} = θ_t − η ∇_θ g(θ_t, λ), t = 0..T−1, kept as a differentiable graph; the
hypergradient is the exact derivative of the truncated objective f(θ_T(λ), λ), computed by
backpropagation through the T steps (Maclaurin et al. 2015; Franceschi et al. 2017, Alg. 1,
"reverse-HG"). Time O(T) gradient evaluations, memory O(T · dim θ). When θ₀ is a function of
λ (MAML-type problems) the derivative also flows through θ₀.

``inner_solver`` (issue 21): the T steps are heavy ball or Adam instead
(:class:`blobench.autodiff.InnerSolver`), and the graph holds that update — velocity, moments,
bias corrections — so the hypergradient is the exact derivative of f(θ_T(λ), λ) for the
solver that ran (tests/test_inner_solvers_unrolled.py: equal to finite differences of that
map). Reverse mode through BDA's aggregation is the ``bda`` entry. On a constrained lower
level (:meth:`Problem.inner_prox`) every step ends with the prox and the graph goes through it.
gd on a problem with the three inner oracles keeps RHG's explicit adjoint recursion.
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import INNER_SOLVERS, DoubleLoop, inner_solver_param
from blobench.contracts.params import Param


class Unrolled(DoubleLoop):
    name = "unrolled"
    family = "explicit (unrolled)"
    reference = "Maclaurin et al. 2015; Franceschi et al. 2017 Alg. 1 (RHG)"
    check_knob = ("inner_steps", (5, 50, 400), {})  # `blobench check` (check_claims.py)
    params = {**DoubleLoop.params,
              "warm_start": Param(bool, False, "start the unroll from the previous θ (else θ₀)"),
              **inner_solver_param(INNER_SOLVERS)}
    handles_inner_prox = True

    @property
    def differentiates_through_init(self):
        return not self.warm_start  # a cold start unrolls from θ₀(λ)

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        theta0 = self.start_theta(problem, state, lam)
        theta_t = autodiff.unroll(problem, theta0, lam, self.inner_steps,
                                  self.inner_lr_at(problem, lam),
                                  solver=self.inner_solver_spec())
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)
