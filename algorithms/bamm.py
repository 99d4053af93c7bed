"""sl-BAMM: the single-loop Bi-level Averaged Method of Multipliers (Liu, Liu, Yao, Zeng, Zhang,
"Averaged Method of Multipliers for Bi-Level Optimization without Lower-Level Strong
Convexity", ICML 2023, Alg. 1).

For lower levels that are convex but not strongly convex (non-singleton S(λ)), the inner
variable descends an *average* of the two objectives, so that among the lower-level solutions it
heads for the one best for f (the optimistic selection, as in BDA), while a multiplier z tracks
the solution of the linear system of the lower level's optimality condition and gives the
outer direction. One step k (θ = y, λ = x, g = lower, f = upper; our notation):

    μ_k = μ₀ / (k + 1)^p                                            (aggregation weight → 0)
    θ_{k+1} = θ_k − β [μ_k ∇_θ f(θ_k, λ_k) + (1 − μ_k) ∇_θ g(θ_k, λ_k)]        (averaged step)
    z_{k+1} = z_k − η [∇²_θθ g(θ_{k+1}, λ_k) z_k − ∇_θ f(θ_{k+1}, λ_k)]       (multiplier)
    λ_{k+1} = λ_k − α [∇_λ f(θ_{k+1}, λ_k) − ∇²_λθ g(θ_{k+1}, λ_k) z_{k+1}]   (outer)

— one gradient step per iteration on each variable, Hessian- and mixed-vector products only.
The multiplier step is gradient descent on ½zᵀHz − zᵀ∇_θ f; where H is singular it does not
converge by itself along null(H), and it is the averaged θ-step that makes ∇_θ f vanish there
(at the optimistic selection ∇_θ f ⊥ null(H) when S(λ) is an affine set), which is why the
method needs no strong convexity. The outer direction is the implicit-function hypergradient
∇_λ f − J H⁺ ∇_θ f at the optimistic selection in the limit.

Verified (issue 22.4) against the authors' released code, vis-opt-group/sl-BAMM
``merely_convex/strategy3.py`` (mode ``BAMM_CG``; the paper's Algorithm 1 text was not
reachable, so its equation numbers are not checked): μ_k enters only the θ step, as here — one
gradient step on (1 − μ_k) g + μ_k f (their ``--BDA`` switch; without it on g alone), μ_k =
μ₀ ∏_{i≤k}(i+1)/(i+2) ≈ μ₀/(k+2) by default or μ₀/(k+1)^{1/p₀} with α_k ∝ μ_k³ and
η_k ∝ (k+1)^{−τ/2} under their theoretical schedule (``--thelr``); the multiplier step
z ← z − η(H z − ∇_θ f) and the λ direction ∇_λ f − ∇²_λθ g · z as above. Deviations: there
η is an exact line-search step on ½zᵀHz − zᵀ∇_θ f (η = ‖r‖²/rᵀHr, r = Hz − ∇_θ f; ours a
constant 1/L), z and the λ direction are evaluated at θ_k (before its step is applied) and
the λ direction uses the previous z_k (ours: θ_{k+1}, z_{k+1}); μ_k ∝ (k+1)^{−½} by default
here. Defaults
(ours, measured on ``nonsingleton_bda`` and ``quadratic``): μ₀ = 0.5, p = ½ (Σμ_k = ∞ drives the
null-space part of θ to the optimistic selection like exp(−2βμ₀√k); the θ-bias on a strongly
convex lower level is O(μ_k)), β = η = the problem's inner step 1/L, α = 0.1 × the problem's
outer step (single loop: λ moves while θ and z are still tracking).

Cost per step: 1 inner gradient, 1 outer gradient (twice: at θ_k and θ_{k+1}), 1 HVP, 1 mixed
product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.single_loop import (
    SingleLoop,
    decayed,
    or_default,
    outer_lr_default,
    sgd_outer_step,
)
from blobench.contracts.params import POSITIVE, Param


class BAMM(SingleLoop):
    name = "bamm"
    family = "aggregation (single loop, multipliers)"
    reference = "Liu, Liu, Yao, Zeng, Zhang 2023 (ICML), sl-BAMM Alg. 1"
    #: `blobench check` (check_claims.check_lambda_star): λ* of ``quadratic`` in this budget
    check_budget = (3000, {"mu_power": 1.0}, 2e-2)
    params = {
        "mu0": Param(float, 0.5, "μ₀: initial weight of f in the averaged θ-step", low=0.0,
                     high=1.0),
        "mu_power": Param(float, 0.5, "p in μ_k = μ₀/(k+1)^p", low=0.0),
        "inner_lr": Param(float, None, "β, θ step; None = the problem's 1/L", optional=True,
                          **POSITIVE),
        "multiplier_lr": Param(float, None, "η, multiplier step; None = the problem's 1/L",
                               optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "α, λ step; None = 0.1 × the problem's outer step",
                          optional=True, **POSITIVE),
    }

    def outer_direction(self, f_lam, ops, z):
        """∇_λ f − ∇²_λθ g · z (the multiplier's implicit term)."""
        return f_lam - ops.mixed(z)

    def setup(self, problem, state):
        state.extra["z"] = state.theta.new_zeros(state.theta.shape)

    def step(self, problem, state):
        ex = state.extra
        k, lam = ex["k"], state.lam.detach()
        s = problem.inner_step_size(lam)
        beta, eta = or_default(self.inner_lr, s), or_default(self.multiplier_lr, s)
        mu = decayed(self.mu0, k, self.mu_power)
        theta = state.theta
        f_theta, _ = autodiff.outer_grads(problem, theta, lam)
        g_theta = autodiff.inner_grad(problem, theta, lam)
        theta = theta - beta * (mu * f_theta + (1 - mu) * g_theta)
        ops = autodiff.InnerDerivatives(problem, theta, lam)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam)
        z = ex["z"] - eta * (ops.hvp(ex["z"]) - f_theta)
        direction = self.outer_direction(f_lam, ops, z)
        state.theta, ex["z"], ex["k"] = theta.detach(), z.detach(), k + 1
        sgd_outer_step(state, direction, outer_lr_default(self.outer_lr, problem))
        return state
