"""BOME: bilevel optimization made easy (Liu, Ye, Wright, Stone, Liu, NeurIPS 2022).

A value-function method, first order only (no Hessian or mixed products). The bilevel
problem is min_{λ,θ} f(θ, λ) s.t. q(θ, λ) = g(θ, λ) − min_θ' g(θ', λ) ≤ 0. Each step k
(the paper's Algorithm 1, with x = λ, y = θ):

1. ϑ_T: T steps of gradient descent on g(·, λ_k) starting from ϑ_0 = θ_k,
   ϑ ← ϑ − α ∇_θ g(ϑ, λ_k);
2. q̂(θ, λ) = g(θ, λ) − g(ϑ_T, λ), with ϑ_T held fixed:
   ∇q̂ = (∇_θ g(θ_k, λ_k),  ∇_λ g(θ_k, λ_k) − ∇_λ g(ϑ_T, λ_k));
3. the dynamic-barrier multiplier  φ_k = η ‖∇q̂‖²,
   μ_k = max(φ_k − ⟨∇f, ∇q̂⟩, 0) / ‖∇q̂‖²   (0 when ∇q̂ = 0);
4. (θ, λ) ← (θ, λ) − ξ (∇f + μ_k ∇q̂), ∇f = (∇_θ f, ∇_λ f) at (θ_k, λ_k).

(The paper calls the multiplier λ_k; here λ is the outer variable, so it is μ_k.) The λ-part
of ∇f + μ_k ∇q̂ is this method's hypergradient estimate (``state.hypergrad``).

Defaults: η = 0.5 and T = 10 (the paper's experiments). Step size — settled against the paper
(issues 23.4, 26): the paper's Algorithm 1 moves (θ, λ) jointly with **one** step ξ, and its
analysis needs ξ below 1/(curvature of f + μ_k q̂). Here ξ_k = ``lr`` if given, else
(1/L)/(1 + μ_k) with 1/L = ``problem.inner_step_size(λ)``: the curvature of f + μ_k g in θ is at
most L_f + μ_k L ≤ (1 + μ_k) L when L_f ≤ L. The earlier default ξ_θ = 1/L sat at the stability
edge 2/(L_f + μL) and fell into a period-2 cycle on a strongly convex quadratic (error 1.065 at
steps 100, 1,000 and 3,000; now 2.7e-3 after 600 steps on ``penalty_synthetic[example=1]``,
decreasing as O(1/k) while μ_k grows like k). The same ξ_k moves λ (the paper's single step);
``outer_lr`` sets a separate constant λ step (a deviation, off by default). α (``inner_lr``)
None → the problem's inner step. Gradients use one inner and one outer mini-batch per step
from the problem's samplers (full batch when they return None).

Stochastic oracles (issue 14). The paper's analysis uses exact gradients. With a fixed batch
size BOME does not reach λ* on ``finite_sum_quadratic`` quick (relative error 4.2 after 2,000
steps with batches of 64, not moving): the noise of ∇_θ g_B keeps ‖∇q̂‖ away from 0, so μ_k
stays O(1) and the λ step follows ∇_λ f with almost no implicit correction (μ_k ∇_λ q̂ is what
carries it, and it needs μ_k → ∞ as θ → θ*). A decreasing step would not remove that bias (it is
in the direction, not in its noise); larger batches do: ``batch_growth`` = ρ > 1 takes ⌈ρ^k⌉ of
the problem's mini-batches at step k (the full sum once they cover it; Friedlander & Schmidt
2012), after which the exact-gradient behaviour follows (ρ = 1.05, η = 0.05 from batches of 16:
3.5 after 400 steps, 2.2 after 800, start 5.8; ``tests/test_fidelity_minibatch.py``). The rate
is slow here for the reason above (μ_k grows like k, the step ξ_k shrinks like 1/k; with exact
gradients and the full-batch 1/L, twice the batch-16 step: 1.0 after 1,000 steps at η = 0.5,
0.47 at η = 0.05; from batches of 16 at ρ = 1.05: 0.70 after 3,000). ρ = 1 is the default.

Cost per step: T + 2 inner gradients + 1 outer gradient; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.single_loop import SingleLoop, grown_batch, or_default, sgd_outer_step
from blobench.contracts.params import POSITIVE, Param


class BOME(SingleLoop):
    name = "bome"
    family = "value-function (first order)"
    reference = "Liu, Ye, Wright, Stone, Liu 2022 (NeurIPS), Alg. 1 (BOME)"
    params = {
        "inner_steps": Param(int, 10, "T: gradient steps on g for the value function", low=1),
        "inner_lr": Param(float, None, "α: step of those T steps; None = the problem's 1/L",
                          optional=True, **POSITIVE),
        "lr": Param(float, None, "ξ: step of the joint update; None = (1/L)/(1 + μ_k)",
                    optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "a separate constant step on λ; None = ξ (the paper's "
                          "single step)", optional=True, **POSITIVE),
        "eta": Param(float, 0.5, "η: φ_k = η‖∇q̂‖² (barrier strength)", **POSITIVE),
        "batch_growth": Param(float, 1.0, "ρ: the mini-batches at step k hold ⌈ρ^k⌉ sampler "
                              "batches (the full sum once that covers it); 1 = fixed",
                              low=1.0),
    }

    def step(self, problem, state):
        lam = state.lam.detach()
        theta = state.theta
        alpha = or_default(self.inner_lr, problem.inner_step_size(lam))
        batch = grown_batch(problem, state, "inner", self.batch_growth)
        value_theta = autodiff.gradient_descent(problem, theta, lam, self.inner_steps, alpha,
                                                sample=lambda: batch)
        g_theta, g_lam = autodiff.inner_grads(problem, theta, lam, batch)
        _, g_lam_value = autodiff.inner_grads(problem, value_theta, lam, batch)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam,
                                              grown_batch(problem, state, "outer",
                                                          self.batch_growth))
        q_theta, q_lam = g_theta, g_lam - g_lam_value
        q_sq = float(q_theta @ q_theta + q_lam @ q_lam)
        inner_prod = float(f_theta @ q_theta + f_lam @ q_lam)
        mu = max(self.eta * q_sq - inner_prod, 0.0) / q_sq if q_sq > 0 else 0.0
        state.extra["multiplier"] = mu
        state.extra["value_theta"] = value_theta
        xi = or_default(self.lr, problem.inner_step_size(lam) / (1.0 + mu))
        state.theta = theta - xi * (f_theta + mu * q_theta)
        sgd_outer_step(state, f_lam + mu * q_lam, or_default(self.outer_lr, xi))
        state.extra["k"] += 1
        return state
