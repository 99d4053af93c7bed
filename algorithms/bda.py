"""Bilevel Descent Aggregation (BDA): reverse mode through aggregated inner steps.

For lower levels without a unique minimizer, BDA (Liu, Mu, Yuan, Zeng, Zhang, ICML 2020,
"A generic first-order algorithmic framework for bi-level programming beyond lower-level
singleton", Alg. 1) replaces the inner gradient step by a convex combination of a lower-level
and an upper-level descent step:

    θ_{t+1} = θ_t − [(1 − α_t) s_l ∇_θ g(θ_t, λ) + α_t s_u ∇_θ f(θ_t, λ)],   t = 0..T−1,

with aggregation weights α_t ∈ [0, 1] decaying to 0 (α_t = α₀/(t+1) here, a schedule of the
form the paper's convergence theory asks for: α_t → 0, Σ α_t = ∞), so the iterates head for the
inner solution that is best for f. The hypergradient is the reverse-mode derivative of
f(θ_T(λ), λ) through the T aggregated steps (``autodiff.aggregated_unroll``), the derivative
also flowing through the ∇_θ f terms. α₀ = 0 is exactly ``unrolled``. s_l = the inner step
size, s_u = None → s_l. Time ≈ 2× reverse mode (an extra outer gradient per step), memory
O(T · dim θ). Default: cold start per outer step (θ₀ fixed), as in the paper.
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import POSITIVE, DoubleLoop
from blobench.contracts.params import Param


class BDA(DoubleLoop):
    name = "bda"
    family = "explicit (aggregation)"
    reference = "Liu et al. 2020 (BDA), Alg. 1"
    #: `blobench check`: the aggregation bias decays like α₀/T only (tolerance 5e-3)
    check_knob = ("inner_steps", (10, 100, 1500), {}, 5e-3)
    params = {
        **DoubleLoop.params,
        "warm_start": Param(bool, False, "start the inner solver from the previous θ (else θ₀)"),
        "alpha0": Param(float, 0.5, "α₀ of the aggregation weights α_t = α₀/(t+1)",
                        low=0.0, high=1.0),
        "upper_lr": Param(float, None, "s_u, step on ∇_θ f; None = the inner step size s_l",
                          optional=True, **POSITIVE),
    }

    def weights(self) -> list[float]:
        return [self.alpha0 / (t + 1) for t in range(self.inner_steps)]

    @property
    def differentiates_through_init(self):
        return not self.warm_start  # a cold start unrolls from θ₀(λ)

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        lr = self.inner_lr_at(problem, lam)
        upper_lr = self.upper_lr if self.upper_lr is not None else lr
        theta0 = self.start_theta(problem, state, lam)
        theta_t = autodiff.aggregated_unroll(problem, theta0, lam, self.inner_steps, lr,
                                             upper_lr, self.weights())
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)
