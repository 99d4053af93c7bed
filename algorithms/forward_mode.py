"""Forward-mode hypergradient through T inner gradient steps (FHG).

θ_{t+1} = θ_t − η ∇_θ g(θ_t, λ) with the tangent Z_t = dθ_t/dλ (dim θ × dim λ) propagated
alongside (Franceschi, Donini, Frasconi, Pontil, ICML 2017, "Forward and reverse
gradient-based hyperparameter optimization", Alg. 2):

    Z_{t+1} = (I − η H_t) Z_t − η J_tᵀ,     H_t = ∇²_θθ g(θ_t, λ),  J_t = ∇²_λθ g(θ_t, λ)
    dF/dλ ≈ ∇_λ f(θ_T, λ) + Z_Tᵀ ∇_θ f(θ_T, λ).

This is the derivative of the same function as reverse mode (``unrolled``): the two agree to
rounding for the same T, η and start. H_t Z_t + J_tᵀ is computed column by column as
Jacobian-vector products of ∇_θ g (``autodiff.forward_unroll``), never a dense Hessian.
Z_0 = dθ₀/dλ: zero for a warm start or a θ₀ independent of λ, the Jacobian of θ₀(λ) for a
cold start on MAML-type problems. Cost O(T · dim λ) JVPs, memory O(dim θ · dim λ) independent
of T: the method of choice for few hyperparameters and long horizons.

``inner_solver`` (issue 21): gd, heavy ball, Adam or BDA's aggregation
(:class:`blobench.autodiff.InnerSolver`): the JVPs are then those of the whole step
(θ_t, s_t, λ) ↦ (θ_{t+1}, s_{t+1}), carrying the tangents of the solver's state s (previous
iterate, Adam's moments) beside Z; e.g. heavy ball
Z_{t+1} = Z_t − η (H_t Z_t + J_tᵀ) + β (Z_t − Z_{t−1}). A constrained lower level
(:meth:`Problem.inner_prox`): the prox is part of the step, its JVP too.

Default: cold start per outer step as in the paper's Alg. 2 (θ₀ re-drawn each time).

Refusals by cost (``not_applicable`` with the size in the reason, before any step runs):
``max_tangent_size`` bounds the memory of Z (dim θ · dim λ entries), ``max_outer_dim`` the
time: every inner step costs dim λ JVPs of ∇_θ g where reverse mode costs one VJP, so forward
mode is dim λ times the work of ``unrolled`` per step — the method for few hyperparameters
(Franceschi et al. 2017 §3). Default 300, the largest dim λ on which it was measured to
finish within a CPU-minute at quick: datacleaning_logreg / poison_logreg (dim λ = 300) take 25–36
CPU-s per cell (100 outer steps of T = 20). Above it, measured: reweight_digits quick
(dim λ = 500) 164 s of solver time on an idle machine and timeouts at 180 s under load;
meta_weight_net quick (dim λ = 301 weights of the weighting MLP, JVPs through a CNN) did not
finish one outer step in 600 s (load 9, ``nice``); fewshot_ridge quick (dim λ = 1,896 Conv-4
weights) did not finish 2 outer steps in 600 s (``chunk_size=64``). Their dim θ · dim λ
(830,760 and 682,560 at the sizes measured) is below ``max_tangent_size``: that product
cannot tell these apart, as the cost of one tangent is a pass through the model and data.
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import UNROLLED_INNER_SOLVERS, DoubleLoop, inner_solver_param
from blobench.contracts.errors import NotApplicable
from blobench.contracts.params import Param


class ForwardMode(DoubleLoop):
    name = "forward_mode"
    family = "explicit (unrolled)"
    reference = "Franceschi et al. 2017, Alg. 2 (FHG)"
    check_knob = ("inner_steps", (5, 50, 400), {})  # `blobench check` (check_claims.py)
    params = {
        **DoubleLoop.params,
        "warm_start": Param(bool, False, "start the inner solver from the previous θ (else θ₀)"),
        "chunk_size": Param(int, 0, "columns of Z propagated per vectorized batch (0 = all)",
                            low=0),
        # 10⁶: each inner step propagates dim λ tangent columns; at 4·10⁶ (sparse_ho quick,
        # 2,000 × 2,000 through sparse products) one cell took over 8 CPU-minutes
        "max_tangent_size": Param(int, 10**6, "refuse problems with dim θ · dim λ above this",
                                  low=1),
        # dim λ JVPs per inner step, dim λ × the work of reverse mode (docstring: measured)
        "max_outer_dim": Param(int, 300, "refuse problems with dim λ above this (time: dim λ "
                               "JVPs per inner step)", low=1),
        **inner_solver_param(UNROLLED_INNER_SOLVERS),
    }
    handles_inner_prox = True

    @property
    def differentiates_through_init(self):
        return not self.warm_start  # a cold start unrolls from θ₀(λ)

    def init(self, problem, theta0, lam0, generator):
        if problem.dim_outer > self.max_outer_dim:
            raise NotApplicable(f"forward_mode: dim λ = {problem.dim_outer} tangent columns, "
                                f"each a JVP at every inner step (limit max_outer_dim="
                                f"{self.max_outer_dim}); forward mode costs dim λ × reverse "
                                "mode, use unrolled or truncated")
        size = problem.dim_inner * problem.dim_outer
        if size > self.max_tangent_size:
            raise NotApplicable(f"forward_mode: the tangent dθ/dλ has dim θ · dim λ = {size} "
                             f"entries (limit max_tangent_size={self.max_tangent_size}); "
                             "forward mode scales with dim λ, use unrolled or truncated")
        return super().init(problem, theta0, lam0, generator)

    def initial_tangent(self, problem, state, lam):
        """dθ₀/dλ: only a cold start on a problem whose θ₀ is a function of λ has one."""
        if self.warm_start or not problem.inner_init_is_outer:
            return None

        def theta0(lam_):
            return self.start_theta(problem, state, lam_)

        jac = torch.autograd.functional.jacobian(theta0, lam.detach())
        return jac.reshape(problem.dim_inner, problem.dim_outer)

    def hypergradient(self, problem, state):
        lam = state.lam.detach()
        theta0 = self.start_theta(problem, state, lam).detach()
        theta_t, z = autodiff.forward_unroll(
            problem, theta0, lam, self.inner_steps, self.inner_lr_at(problem, lam),
            tangent=self.initial_tangent(problem, state, lam),
            chunk_size=self.chunk_size or None, solver=self.inner_solver_spec())
        f_theta, f_lam = autodiff.outer_grads(problem, theta_t, lam)
        return theta_t, f_lam + z.T @ f_theta
