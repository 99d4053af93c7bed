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

Step size — settled against the paper (issues 23.4, 26): the paper's Algorithm 1 moves (θ, λ)
jointly with **one** step ξ, and its analysis needs ξ below 1/(curvature of f + μ_k q̂). Here
ξ_k = ``lr`` if given, else (1/L)/(1 + μ_k) with 1/L = ``problem.inner_step_size(λ)``: the
curvature of f + μ_k g in θ is at most L_f + μ_k L ≤ (1 + μ_k) L when L_f ≤ L. The earlier
default ξ_θ = 1/L sat at the stability edge 2/(L_f + μL) and fell into a period-2 cycle on a
strongly convex quadratic (error 1.065 at steps 100, 1,000 and 3,000). The same ξ_k moves λ
(the paper's single step); ``outer_lr`` sets a separate constant λ step (a deviation, off by
default). α (``inner_lr``) None → the problem's inner step. Gradients use one inner and one
outer mini-batch per step from the problem's samplers (full batch when they return None).

**Defaults η = 0.1, T = 30** (issue 14; the paper's experiments use η = 0.5, T = 10, which do
not converge on an ill-conditioned problem whose lower level is unique and strongly convex —
the paper's own assumptions). Measured, full batch, seed 0, ``tests/test_fidelity_minibatch.py``
and ``tests/test_fidelity_penalty.py``:

    finite_sum_quadratic quick, ‖λ − λ*‖/‖λ*‖ from 5.8, after 1,000 / 2,000 / 4,000 steps
      η = 0.5, T = 10 (old):  1.01 / 0.89 / 0.80    η = 0.5, T = 30:  0.84 / 0.69 / 0.56
      η = 0.2, T = 30:        0.50 / 0.31 / 0.19    η = 0.1, T = 30:  0.33 / 0.148 / 0.065
      η = 0.1, T = 20:        0.35 / 0.16 / 0.081   η = 0.05, T = 30: 0.30 / 0.12 / 0.056
    penalty_synthetic, ‖(λ, θ) − (λ*, θ*)‖ after 200 / 400 / 2,000 steps
      example 1: η = 0.5, T = 10: 0.0075 / 0.0039 / 8e-4    η = 0.1, T = 30: 0.029 / 0.014 / 0.0028
      example 2: η = 0.5, T = 10: 0.098 / 0.048 / 0.0094    η = 0.1, T = 30: < 1e-4 from 200 on

Why η (as we read the dynamics; the figures above are what is established): with the
adaptive step θ stays at the minimizer of f + μ_k g (θ − θ*(λ) ≈ −H⁻¹∇_θ f/μ_k), ∇q̂ → 0 and
μ_k = η − ⟨∇f, ∇q̂⟩/‖∇q̂‖² grows about linearly at a rate ∝ η (μ after 4,000 steps: 93 at
η = 0.1, 496 at 0.5; on penalty_synthetic 1 after 2,000: 397 and 1,354), so (a) the bias of
∇_λ f + μ_k ∇_λ q̂ against dF/dλ is O(1/μ_k) = O(1/(ηk)), and (b)
λ moves by ξ_k ∇F with ξ_k ≈ 1/(L μ_k): along a direction where F has curvature c the error
shrinks like Π (1 − c/(L μ_k)), a power k^(−c/(Lη')) whose exponent grows as η falls. Here Q's
flattest direction has c/L ≈ 0.045/1.09, so at η = 0.5 λ barely moves (slope −0.3 from 2,000 to
4,000 steps) and at η = 0.1 the error falls like k^−1.2; well-conditioned problems
(``penalty_synthetic`` 1: c/L = 2) are limited by the O(1/(ηk)) bias instead, which a smaller η
raises (× 3.5 at η = 0.1 vs 0.5 above). η = 0.1 trades the two; the exponent argument says no
fixed η suits every conditioning (``eta`` is the knob: smaller for flat outer problems).

The inner steps: ϑ_T starts at θ_k, so ∇_λ q̂ = J (I − (I − αH)^T)(θ − θ*) carries only the
part of θ − θ* that T steps resolve: the implicit term becomes J (I − (I − αH)^T) H⁻¹∇_θ f, a
bias that stays as λ converges. T = 10 (the paper's) leaves a floor of 0.19 here (H's condition
number ≈ 20); T = 30 is at the T = 100 figures, T = 20 slightly above (table).

Quick suite, before (η = 0.5, T = 10) → after, 1 seed, ``blobench run -a bome --size quick
--no-tuned`` at 6fba240's budgets (final outer loss; suboptimality / error where the problem has
one): better on 9 of 14 — coupled_quadratic suboptimality 0.348 → 0.334, datacleaning_logreg
0.183 → 0.103, distill_linear 0.081 → 0.042, logreg_ho 0.161 → 0.141, meta_weight_net 1.307 →
0.867 (test accuracy 0.565 → 0.695), poison_logreg −0.283 → −0.483 (the attacker's loss),
quadratic suboptimality 0.659 → 0.515, ridge_ho 1.016 → 0.642, sparse_ho 0.611 → 0.553; mixed
on three — distill_convnet (outer loss 0.491 → 0.439, test accuracy 0.640 → 0.595),
fewshot_ridge (outer loss 0.567 → 0.955, test accuracy 0.462 → 0.558), overparam_linreg (outer
loss 0.060 → 0.003, suboptimality 1.498 → 1.560); worse on two: ``penalty_synthetic`` example 1
after its 400 steps (0.0028 → 0.014: the larger 1/(ηk) bias, still converging) and
``finite_sum_quadratic`` quick with fixed batches of 16 (suboptimality 1.07 → 6.65: the
fixed-batch estimate is biased at any η, below, and a smaller η weights the implicit part less
while the noise keeps ∇q̂ large).

Constant and decaying given steps (the documented stochastic route): a constant ξ (the paper's
Algorithm 1) does not converge: μ_k saturates where the θ step nears its stability edge
(ξ μ_k L ≈ 1.8–1.9 < 2: μ_k = 17.6 at ξ = 0.1, 5.6 at 0.3, L = 1.09) and λ settles at a
distance ∝ ξ (full batch, T = 100: 0.107 at ξ = 0.1, 0.325 at ξ = 0.3) — the paper's bound has
a term that grows with ξ, and its theorem takes ξ small with the horizon K (as we read it,
ξ ∝ K^{-1/2}; verify). ``decay`` = a makes a given step anytime-decaying, ξ_k = ``lr`` ·
((k + k₀)/k₀)^{-a} (k₀ = ``decay_shift``; ``outer_lr`` likewise), and with a = 1/2 the distance
shrinks like ξ_k (full batch, ξ = 0.3, k₀ = 100, T = 30: 0.091 after 1,500 steps, 0.062 after
3,000, log-log slope −0.55; ξ = 0.5/L, k₀ = 10: 0.066 after 2,000). As a default it is not
better: on ``penalty_synthetic`` 1 its O(ξ_k) floor is far above the adaptive step's O(1/(ηk))
(ξ = 0.5/L, k₀ = 10: 0.089 after 400 steps, 0.08 after 2,000; k₀ = 100: 0.27 after 400), and on
the quick suite it was mixed (better on finite_sum_quadratic's batches of 16, 0.385; worse on
distill_convnet, meta_weight_net and penalty_synthetic).

Mini-batches. The paper's analysis uses exact gradients. With a fixed batch size the noise of
∇_θ g_B keeps ‖∇q̂‖ away from 0, so μ_k stays O(1) and λ follows ∇_λ f with almost no implicit
correction: the estimate is biased, and λ stays far from λ* at every batch size below the full
sum (≈ 2.9 after 3,000 steps at the decaying setting below with batches of 16 and of 64 of the
128 samples; 2,000 steps at the old defaults with 64: 4.2). Growing batches remove it:
``batch_growth`` = ρ > 1 takes ⌈ρ^k⌉ of the problem's mini-batches at step k (the full sum once
they cover it; Friedlander & Schmidt 2012). ``lr=0.3, decay=0.5, decay_shift=100,
inner_steps=30, eta=0.5, batch_growth=1.005`` from batches of 16: 0.176 after 1,500 steps,
0.106 after 3,000 (``tests/test_fidelity_minibatch.py``; at η = 0.1: 0.48, 0.113). The adaptive
default with growing batches is worse there (ρ = 1.02: 2.2 after 500 steps, 0.31 after 3,000:
the noisy first steps, with μ_k small, move λ along ∇_λ f_B with steps near 1/L). ρ = 1 and
a = 0 are the defaults.

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
    #: ``blobench check``: λ* of ``quadratic`` at the defaults (measured 0.110 after 1,500 steps,
    #: 0.074 after 3,000; the earlier budget's lr = outer_lr = 0.02 at η = 0.1: 0.155 after 800)
    check_budget = (1500, {}, 0.15)
    params = {
        "inner_steps": Param(int, 30, "T: gradient steps on g for the value function "
                             "(the paper's experiments: 10)", low=1),
        "inner_lr": Param(float, None, "α: step of those T steps; None = the problem's 1/L",
                          optional=True, **POSITIVE),
        "lr": Param(float, None, "ξ: step of the joint update; None = (1/L)/(1 + μ_k)",
                    optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "a separate constant step on λ; None = ξ (the paper's "
                          "single step)", optional=True, **POSITIVE),
        "eta": Param(float, 0.1, "η: φ_k = η‖∇q̂‖² (barrier strength; the paper's "
                     "experiments: 0.5)", **POSITIVE),
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
