"""Bilevel Descent Aggregation (BDA): reverse mode through aggregated inner steps.

For lower levels without a unique minimizer, BDA (Liu, Mu, Yuan, Zeng, Zhang, ICML 2020,
"A generic first-order algorithmic framework for bi-level programming beyond lower-level
singleton", Alg. 1) replaces the inner gradient step by a convex combination of a lower-level
and an upper-level descent step:

    θ_{t+1} = θ_t − [(1 − α_t) s_l ∇_θ g(θ_t, λ) + α_t s_u ∇_θ f(θ_t, λ)],   t = 0..T−1,

with aggregation weights α_t ∈ [0, 1] decaying to 0 (α_t = α₀/(t+1) here, a schedule of the
form the paper's convergence theory asks for: α_t → 0, Σ α_t = ∞), so the iterates head for the
inner solution that is best for f. The hypergradient is the reverse-mode derivative of
f(θ_T(λ), λ) through the T aggregated steps (``autodiff.unroll`` with the ``bda``
:class:`~blobench.autodiff.InnerSolver`), the derivative also flowing through the ∇_θ f terms.
α₀ = 0 is exactly ``unrolled``. The same aggregation is an ``inner_solver`` choice of
``truncated`` and ``forward_mode`` (issue 21); this entry is reverse mode through it. It is
no inner solver of the implicit entries: their IFT needs ∇_θ g = 0, which BDA's iterate meets
only as α_t → 0. s_l = the inner step
size, s_u = None → s_l. Time ≈ 2× reverse mode (an extra outer gradient per step), memory
O(T · dim θ). Default: cold start per outer step (θ₀ fixed), as in the paper.
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import BDA_PARAMS, DoubleLoop
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
        **BDA_PARAMS,
    }
    handles_inner_prox = True

    def inner_solver_spec(self) -> autodiff.InnerSolver:
        """BDA's aggregation with this entry's α₀ and s_u."""
        return autodiff.InnerSolver("bda", alpha0=self.alpha0, upper_lr=self.upper_lr)

    @property
    def differentiates_through_init(self):
        return not self.warm_start  # a cold start unrolls from θ₀(λ)

    def hypergradient(self, problem, state):
        lam = state.lam.detach().requires_grad_(True)
        theta0 = self.start_theta(problem, state, lam)
        theta_t = autodiff.unroll(problem, theta0, lam, self.inner_steps,
                                  self.inner_lr_at(problem, lam), solver=self.inner_solver_spec())
        return theta_t.detach(), autodiff.outer_hypergradient(problem, theta_t, lam)
