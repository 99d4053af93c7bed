"""F2SA: fully first-order stochastic approximation (Kwon, Kwon, Wright, Nowak, ICML 2023).

"A Fully First-Order Method for Stochastic Bilevel Optimization", Algorithm 1. With the
penalty Lagrangian L_μ(λ, y, z) = f(y, λ) + μ (g(y, λ) − g(z, λ)) (the paper's multiplier
λ_k is μ_k here; its x is our λ), F2SA keeps two inner sequences:

    z ≈ argmin_θ g(θ, λ)                 (``state.theta``: the lower-level solution)
    y ≈ argmin_θ f(θ, λ)/μ + g(θ, λ)     (the penalized problem)

and each outer step k runs T inner iterations (warm-started), then moves λ along ∇_λ L_μ:

    z ← z − γ_k ∇_θ g(z, λ; φ_z)
    y ← y − (γ_k/μ_k) (∇_θ f(y, λ; ζ_y) + μ_k ∇_θ g(y, λ; φ_y))
    h = ∇_λ f(y, λ; ζ) + μ_k (∇_λ g(y, λ; φ) − ∇_λ g(z, λ; φ)),   λ ← λ − ξ_k h
    μ_{k+1} = min(μ_0 (k+2)^b, μ_max)

Every gradient is first order; h → dF/dλ as μ → ∞ (y − z ≈ −H⁻¹∇_θ f / μ), with bias
O(1/μ). The y step is the paper's α_k(∇f + μ_k ∇g) with α_k μ_k = γ_k (both inner sequences
take the same effective step on g, stable for γ ≤ 1/L). Schedules — settled against the paper
(issue 26): with stochastic noise in both levels its Theorem 3.1 takes α_k ≍ k^{-5/7} (the step
of y and, times ξ, of λ), γ_k ≍ k^{-4/7} (the step of z) and μ_k = γ_k/α_k ≍ k^{1/7}; here
(``decay``, the default) ξ_k = ξ (k+1)^{-5/7}, γ_k = γ (k+1)^{-4/7} and μ_k = μ_0 (k+1)^b with
b = 1/7, so the y step γ_k/μ_k ∝ (k+1)^{-5/7} = α_k: the three exponents are mutually
consistent (tests/test_fidelity_penalty.py checks them at k = 2). Without ``decay`` the steps
are constant — the documented setting for deterministic problems, with a faster-growing μ
(``penalty=100, penalty_growth=0.5``: error < 1e-3 on ``penalty_synthetic[example=2]`` in 300
steps, where the stochastic schedule is still at 4.7 after 600).

The theorem's schedules are c/(k + k₀)^a with constants (c, k₀, μ₀) it leaves free (as we read
its statement; verify k₀'s exact form there). ``decay_shift`` = k₀ replaces k + 1 above by
(k + k₀)/k₀ (so ξ, γ and μ_0 stay the step-0 values; k₀ = 1 is the plain schedule): a larger
k₀ keeps the steps near ξ for ~k₀ steps, so Σ ξ_k grows fast enough to cross the flat
directions of F. ``shared_batch``: the y and z steps of one inner iteration take ∇_θ g on the
same mini-batch — each is still an unbiased oracle of bounded variance, as the analysis
assumes, but the noise of y − z (which μ_k multiplies in the λ step) largely cancels
(common random numbers); the paper's Algorithm 1 draws them independently (the default).
Under mini-batches on ``finite_sum_quadratic`` quick (batches of 16) the defaults are at 3.3
relative error after 1,000 steps; ``decay_shift=200, penalty=30, outer_lr=0.3,
inner_steps=1, shared_batch=true`` (same exponents) gives a second-half mean iterate at 0.15
after 1,000 steps and 0.06 after 3,000 (``tests/test_fidelity_minibatch.py``); with
independent y/z batches the same constants stay near 1. What the theorem's rate gives in a
test budget (issue 14): the bias is O(1/μ_k) and μ_k grows like k^{1/7}, so the error falls like
(k + k₀)^{-1/7} — halving it takes 128× the steps. Full batch, μ₀ = 10, the constants above:
0.151 after 1,000 steps, 0.134 after 2,000, error × μ_k constant within 3 % (log-log slope
−0.19 in k + k₀); μ₀ = 100: 0.012 after 4,000 steps. Mini-batch noise comes on top (second-half
mean 0.06–0.15 at batches of 16 up to 8,000 steps, not monotone at this size: Q's flat
direction, curvature 0.045, averages it slowly). ``tests/test_fidelity_minibatch.py``.

Step sizes: γ = None → ``problem.inner_step_size(λ)``; ξ = None → 0.1 ·
``problem.outer_step_size()``. Batches: one fresh mini-batch per gradient from the problem's
samplers; ∇_λ g(y) and ∇_λ g(z) share one batch. Cost per outer step: 3T + 2 inner gradients
and T + 1 outer gradients; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.single_loop import (
    SingleLoop,
    inner_batch,
    or_default,
    outer_batch,
    outer_lr_default,
    sgd_outer_step,
)
from blobench.contracts.errors import UserError
from blobench.contracts.params import POSITIVE, Param


class F2SA(SingleLoop):
    name = "f2sa"
    family = "penalty (first order, stochastic)"
    reference = "Kwon, Kwon, Wright, Nowak 2023 (ICML), Alg. 1 (F2SA)"
    params = {
        "inner_steps": Param(int, 10, "T: inner iterations on y and z per outer step", low=1),
        "inner_lr": Param(float, None, "γ: step on g for z (and y); None = the problem's 1/L",
                          optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "ξ: step on λ; None = 0.1 × the problem's default",
                          optional=True, **POSITIVE),
        "penalty": Param(float, 10.0, "μ_0: initial Lagrange multiplier of g(y) − g(z)",
                         **POSITIVE),
        "penalty_growth": Param(float, 1 / 7, "b: μ_k = μ_0 (k+1)^b", low=0.0),
        "penalty_max": Param(float, 1e4, "cap on μ_k", **POSITIVE),
        "decay": Param(bool, True, "ξ_k = ξ(k+1)^-5/7, γ_k = γ(k+1)^-4/7 (else constant)"),
        "decay_shift": Param(int, 1, "k₀ of the theorem's schedules: k + 1 above becomes "
                             "(k + k₀)/k₀ (1 = the plain schedule)", low=1),
        "shared_batch": Param(bool, False, "the y and z steps of an inner iteration use one "
                              "inner mini-batch (common random numbers; else independent)"),
    }

    def check_config(self):
        if self.penalty_max < self.penalty:
            raise UserError(f"f2sa: penalty_max={self.penalty_max} must be >= "
                            f"penalty={self.penalty}")

    def setup(self, problem, state):
        state.extra["y"] = state.theta.clone()

    def step(self, problem, state):
        k = state.extra["k"]
        lam = state.lam.detach()
        gamma = or_default(self.inner_lr, problem.inner_step_size(lam))
        xi = outer_lr_default(self.outer_lr, problem)
        t = (k + self.decay_shift) / self.decay_shift  # (k + k₀)/k₀: 1 at k = 0
        if self.decay:
            gamma, xi = gamma / t ** (4 / 7), xi / t ** (5 / 7)
        mu = min(self.penalty * t ** self.penalty_growth, self.penalty_max)
        z, y = state.theta, state.extra["y"]
        for _ in range(self.inner_steps):
            batch_z = inner_batch(problem, state)
            z = z - gamma * autodiff.inner_grad(problem, z, lam, batch_z)
            f_y, _ = autodiff.outer_grads(problem, y, lam, outer_batch(problem, state))
            batch_y = batch_z if self.shared_batch else inner_batch(problem, state)
            g_y = autodiff.inner_grad(problem, y, lam, batch_y)
            y = y - (gamma / mu) * (f_y + mu * g_y)
        _, f_lam = autodiff.outer_grads(problem, y, lam, outer_batch(problem, state))
        batch = inner_batch(problem, state)
        _, g_lam_y = autodiff.inner_grads(problem, y, lam, batch)
        _, g_lam_z = autodiff.inner_grads(problem, z, lam, batch)
        state.theta, state.extra["y"], state.extra["multiplier"] = z, y, mu
        sgd_outer_step(state, f_lam + mu * (g_lam_y - g_lam_z), xi)
        state.extra["k"] = k + 1
        return state
