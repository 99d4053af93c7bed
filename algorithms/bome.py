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

Why BOME stalled at the defaults, and the converging setting (issue 14; measured on
``finite_sum_quadratic`` quick, relative error ‖λ − λ*‖/‖λ*‖ from 5.8, seed 0):

- **The step.** The default ξ_k = (1/L)/(1 + μ_k) is stable, but μ_k grows like k (as θ → θ*,
  ∇q̂ → 0 and μ_k ≈ −⟨∇f, ∇q̂⟩/‖∇q̂‖² ~ 1/‖θ − θ*(λ)‖: the barrier term φ_k = η‖∇q̂‖² fades
  with ∇q̂), so ξ_k ∝ 1/k and λ travels only ∝ log k: full batch, η = 0.5, 0.89 after 2,000
  steps. A constant ξ (the paper's Algorithm 1) does not converge either: μ_k saturates where
  the θ step nears its stability edge (ξ μ_k L ≈ 1.8–1.9 < 2: μ_k = 17.6 at ξ = 0.1, 5.6 at
  0.3, L = 1.09) and λ settles at a distance ∝ ξ (full batch, T = 100: 0.107 at ξ = 0.1,
  0.325 at ξ = 0.3) — the paper's convergence bound has a term
  that grows with ξ, and its theorem takes ξ small with the horizon K (as we read it,
  ξ ∝ K^{-1/2}; verify). ``decay`` = a makes the given steps anytime-decaying,
  ξ_k = ``lr`` · ((k + k₀)/k₀)^{-a} (k₀ = ``decay_shift``; ``outer_lr`` likewise), and with
  a = 1/2 the distance shrinks like ξ_k: full batch, ξ = 0.3, k₀ = 100, T = 30: 0.091 after 1,500
  steps, 0.062 after 3,000 (log-log slope −0.55).
- **The inner steps.** ϑ_T starts at θ_k, so ∇_λ q̂ = J (I − (I − αH)^T)(θ − θ*) carries only
  the part of θ − θ* that T steps resolve: the implicit term becomes J (I − (I − αH)^T) H⁻¹∇_θ f,
  a bias that stays as λ converges. T = 10 (the paper's) leaves a floor of 0.19 here (H's
  condition number ≈ 20); T = 30 is at the T = 100 figures above.
- **η** matters little once the above are set (η = 0.05 or 0.5: 0.066 and 0.062 after 3,000).
- **Mini-batches.** The paper's analysis uses exact gradients. With a fixed batch size the
  noise of ∇_θ g_B keeps ‖∇q̂‖ away from 0, so μ_k stays O(1) and λ follows ∇_λ f with almost
  no implicit correction: the estimate is biased, and λ stays far from λ* at every batch size
  below the full sum (≈ 2.9 after 3,000 steps at the setting above with batches of 16 and of 64
  of the 128 samples; 2,000 steps at the old defaults with 64: 4.2). Growing batches remove it:
  ``batch_growth`` = ρ > 1 takes ⌈ρ^k⌉ of the problem's mini-batches at step k (the full sum
  once they cover it; Friedlander & Schmidt 2012). ``lr=0.3, decay=0.5, decay_shift=100,
  inner_steps=30, batch_growth=1.005`` from batches of 16: 0.176 after 1,500 steps, 0.106 after
  3,000 (``tests/test_fidelity_minibatch.py``). ρ = 1 and a = 0 are the defaults.

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
        "decay": Param(float, 0.0, "a: the given lr / outer_lr decay as ((k + k₀)/k₀)^-a "
                       "(0 = constant, the paper's; the adaptive default step does not)",
                       low=0.0),
        "decay_shift": Param(int, 1, "k₀ of that decay", low=1),
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
        decay = ((state.extra["k"] + self.decay_shift) / self.decay_shift) ** -self.decay
        xi = problem.inner_step_size(lam) / (1.0 + mu) if self.lr is None else self.lr * decay
        state.theta = theta - xi * (f_theta + mu * q_theta)
        sgd_outer_step(state, f_lam + mu * q_lam,
                       xi if self.outer_lr is None else self.outer_lr * decay)
        state.extra["k"] += 1
        return state
