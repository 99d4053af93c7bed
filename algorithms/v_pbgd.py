"""V-PBGD: value-function penalty-based bilevel gradient descent (Shen & Chen, ICML 2023).

"On penalty-based bilevel gradient descent method", Algorithm 1 (V-PBGD). The bilevel
problem is replaced by a penalty on the lower-level value gap, with v(λ) = min_z g(z, λ):

    min_{λ, θ}  F_γ(λ, θ) = f(θ, λ) + γ (g(θ, λ) − v(λ))                         (eq. 4)

whose gradient needs only first-order oracles, ∇v(λ) = ∇_λ g(ẑ, λ) at the inner minimizer ẑ
(Danskin's theorem):

    ∇_λ F_γ = ∇_λ f(θ, λ) + γ (∇_λ g(θ, λ) − ∇_λ g(ẑ, λ)),
    ∇_θ F_γ = ∇_θ f(θ, λ) + γ ∇_θ g(θ, λ).

Each outer step: ẑ ← T gradient steps on g(·, λ) from the previous ẑ (warm start, the paper's
inner loop for v), then ``theta_steps`` gradient steps on θ along ∇_θ F_γ (1 in the paper's
joint update), then one step on λ along ∇_λ F_γ (recorded as the hypergradient). At a
θ-stationary point γ (θ − ẑ) ≈ −H⁻¹ ∇_θ f, so ∇_λ F_γ = ∇_λ f − J H⁻¹ ∇_θ f + O(1/γ): the
IFT hypergradient as γ → ∞ (the paper's Theorem 2, ε-stationarity with γ = Θ(1/ε)).

Step sizes: ẑ at the problem's 1/L (``inner_lr``); θ at 1/(L (1 + γ)) (the smoothness of F_γ
in θ when ‖∇²_θθ f‖ ≤ L); λ at γ_λ = None → 0.1 · ``problem.outer_step_size``. Defaults:
γ = 10, T = 10, one θ step.

``mode=gradient`` is the paper's G-PBGD (§3, the gradient-norm penalty, for lower levels with
the PL property): F_γ = f + γ ‖∇_θ g‖², ∇_λ F_γ = ∇_λ f + 2γ J ∇_θ g, ∇_θ F_γ = ∇_θ f +
2γ H ∇_θ g (Hessian- and mixed-vector products; no ẑ), θ at 1/(L (1 + 2γL)). At a θ-stationary
point 2γ ∇_θ g = −H⁻¹ ∇_θ f, so ∇_λ F_γ is the IFT formula at θ_γ (θ_γ − θ* = O(1/γ)).
Mini-batches (issue 14). By default every gradient is full batch — the paper's algorithm and
analysis are deterministic — and the problem's samplers are not used (on a finite-sum problem one
step costs the full sums). ``batch_growth`` = ρ makes it stochastic: each outer step draws one
inner and one outer batch of ⌈ρ^k⌉ sampler mini-batches (:func:`~blobench.bases.single_loop.
grown_batch`; the full sum once they cover it) and takes every gradient of that step (the ẑ
steps, the θ steps, ∇_λ F_γ) on them. With a fixed size (ρ = 1) the estimate is biased, not
merely noisy: ẑ minimizes the batch's g_B, and ∇_λ g_B(θ) − ∇_λ g_B(ẑ_B) is a difference
quotient of the batch value function v_B, whose mean is not ∇v (the mean of minima is not the
minimum of the mean); so λ stays in a ball around the penalized optimum whose radius shrinks
with the batch size (measured on ``finite_sum_quadratic`` quick, γ = 30, 1,500 steps: see
``tests/test_fidelity_minibatch.py``). Growing batches (ρ > 1) remove the bias and the noise.

Cost per outer step (value mode): T + theta_steps + 1 inner gradients (with ∇_λ g),
theta_steps + 1 outer gradients; no second derivatives (gradient mode: theta_steps + 1 HVPs).
Memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.single_loop import (
    SingleLoop,
    grown_batch,
    or_default,
    outer_lr_default,
    sgd_outer_step,
)
from blobench.contracts.params import POSITIVE, Param


def gradient_penalty_grads(problem, theta, lam, gamma: float, inner=None, outer=None):
    """G-PBGD's (∇_λ F_γ, ∇_θ F_γ) for F_γ = f + γ ‖∇_θ g‖² (on the given batches; None =
    full)."""
    f_theta, f_lam = autodiff.outer_grads(problem, theta, lam, outer)
    ops = autodiff.InnerDerivatives(problem, theta, lam, inner)
    w = 2.0 * gamma * ops.grad
    return f_lam + ops.mixed(w), f_theta + ops.hvp(w)


def value_penalty_grads(problem, theta, z, lam, gamma: float, inner=None, outer=None):
    """(∇_λ F_γ, ∇_θ F_γ) at (θ, λ) with the inner minimizer estimate ẑ (on the given
    batches; None = full)."""
    f_theta, f_lam = autodiff.outer_grads(problem, theta, lam, outer)
    g_theta, g_lam = autodiff.inner_grads(problem, theta, lam, inner)
    _, g_lam_at_z = autodiff.inner_grads(problem, z, lam, inner)
    return f_lam + gamma * (g_lam - g_lam_at_z), f_theta + gamma * g_theta


class VPBGD(SingleLoop):
    name = "v_pbgd"
    family = "penalty (value function, first order)"
    reference = "Shen & Chen 2023 (ICML), Alg. 1 (V-PBGD)"
    #: `blobench check`: λ* of ``quadratic`` within the O(1/γ) bias of γ = 10 (measured 3.9e-2)
    check_budget = (90, {"penalty": 10.0, "inner_steps": 100, "theta_steps": 100,
                         "outer_lr": 0.5}, 6e-2)
    params = {
        "penalty": Param(float, 10.0, "γ: weight of the value gap g(θ, λ) − v(λ)", **POSITIVE),
        "inner_steps": Param(int, 10, "T: gradient steps on ẑ ≈ argmin g(·, λ) per step", low=1),
        "theta_steps": Param(int, 1, "gradient steps on θ along ∇_θ F_γ per outer step", low=1),
        "inner_lr": Param(float, None, "step on ẑ; None = the problem's 1/L (θ: / (1 + γ))",
                          optional=True, **POSITIVE),
        "outer_lr": Param(float, None, "step on λ; None = 0.1 × the problem's default",
                          optional=True, **POSITIVE),
        "batch_growth": Param(float, None, "None: full batches (the paper's); ρ ≥ 1: each step "
                              "on ⌈ρ^k⌉ sampler mini-batches (1 = fixed size)", optional=True,
                              low=1.0),
        "mode": Param(str, "value", "penalty: value gap g − v (V-PBGD) or ‖∇_θ g‖² (G-PBGD)",
                      choices=("value", "gradient")),
    }

    def setup(self, problem, state):
        state.extra["z"] = state.theta.clone()

    def batches(self, problem, state) -> tuple:
        """This step's (inner, outer) batches: (None, None) = full, unless ``batch_growth``."""
        if self.batch_growth is None:
            return None, None
        return tuple(grown_batch(problem, state, level, self.batch_growth)
                     for level in ("inner", "outer"))

    def theta_phase(self, problem, state, steps: int, inner=None, outer=None) -> None:
        """``steps`` gradient steps on θ along ∇_θ F_γ at the current λ and ẑ."""
        lam = state.lam.detach()
        s = or_default(self.inner_lr, problem.inner_step_size(lam))
        gradient_mode = self.mode == "gradient"
        lr = s / (1.0 + 2.0 * self.penalty / s) if gradient_mode else s / (1.0 + self.penalty)
        for _ in range(steps):
            if gradient_mode:
                _, direction = gradient_penalty_grads(problem, state.theta, lam, self.penalty,
                                                      inner, outer)
            else:
                f_theta, _ = autodiff.outer_grads(problem, state.theta, lam, outer)
                g_theta = autodiff.inner_grad(problem, state.theta, lam, inner)
                direction = f_theta + self.penalty * g_theta
            state.theta = state.theta - lr * direction

    def step(self, problem, state):
        lam = state.lam.detach()
        inner, outer = self.batches(problem, state)
        if self.mode == "gradient":
            self.theta_phase(problem, state, self.theta_steps, inner, outer)
            grad_lam, _ = gradient_penalty_grads(problem, state.theta, lam, self.penalty,
                                                 inner, outer)
        else:
            lr = or_default(self.inner_lr, problem.inner_step_size(lam))
            state.extra["z"] = autodiff.gradient_descent(problem, state.extra["z"], lam,
                                                         self.inner_steps, lr,
                                                         sample=lambda: inner)
            self.theta_phase(problem, state, self.theta_steps, inner, outer)
            grad_lam, _ = value_penalty_grads(problem, state.theta, state.extra["z"], lam,
                                              self.penalty, inner, outer)
        sgd_outer_step(state, grad_lam, outer_lr_default(self.outer_lr, problem))
        state.extra["k"] += 1
        return state
