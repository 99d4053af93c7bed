"""StocBiO: stochastic bilevel optimizer with a stochastic Neumann series (Ji, Yang, Liang 2021).

"Bilevel Optimization: Convergence Analysis and Enhanced Design" (ICML 2021), Algorithm 2.
Each outer step k:

1. T steps of SGD on g from the previous inner iterate (warm start):
   θ ← θ − α ∇_θ g(θ, λ; S_t), a fresh inner mini-batch S_t per step;
2. v₀ = ∇_θ f(θ_T, λ; D_F), then the Q-term stochastic Neumann series

       v_Q = η Σ_{q=0..Q} Π_{j=1..q} (I − η ∇²_θθ g(θ_T, λ; B_j)) v₀  ≈ H⁻¹ ∇_θ f,

   every Hessian-vector product on a fresh inner mini-batch B_j (``autodiff.neumann`` with a
   matrix-vector product that draws a new batch per call);
3. hypergradient  ∇Φ = ∇_λ f(θ_T, λ; D_F) − ∇²_λθ g(θ_T, λ; D_G) v_Q  (IFT), and
   λ ← λ − β ∇Φ.

Step sizes: α = None → ``problem.inner_step_size(λ)``; η = None → α (the series converges for
η < 2/L); β = None → ``problem.outer_step_size()``. Cost per outer step: T inner gradients +
Q (gradient + HVP) for the series + 1 mixed product + 1 outer gradient; memory O(dim θ).

Q sets a bias: the series' expectation is the (Q+1)-term sum, so StocBiO converges to the zero
λ_Q of that truncated hypergradient, which tends to λ* like (1 − ημ)^{Q+1} (Ji et al. take Q =
O(κ log 1/ε)). On ``finite_sum_quadratic`` quick (κ ≈ 13): ‖λ_Q − λ*‖/‖λ*‖ = 0.116 at the
default Q = 10, 0.0098 at Q = 30 (full batch, η = 1/L; reached to 3.8e-12); batches of 64 at Q
= 30: mean iterate 0.057 from λ* (tests/test_fidelity_minibatch_single_loop.py).
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import DoubleLoop
from blobench.bases.single_loop import FreshBatchDerivatives
from blobench.contracts.params import Param


class StocBiO(DoubleLoop):
    name = "stocbio"
    family = "stochastic double-loop"
    reference = "Ji, Yang, Liang 2021 (ICML), Alg. 2 (StocBiO)"
    params = {
        **DoubleLoop.params,
        "inner_steps": Param(int, 10, "T: inner SGD steps per outer step", low=1),
        "neumann_terms": Param(int, 10, "Q: terms of the stochastic Neumann series", low=0),
        "neumann_lr": Param(float, None, "η: Neumann scaling; None = the inner step size",
                            optional=True, low=0.0, low_open=True),
    }

    def hypergradient(self, problem, state):
        gen = state.extra["generator"]
        lam = state.lam.detach()
        lr = self.inner_lr_at(problem, lam)
        theta = self.solve_inner(problem, state, lam, stochastic=True)
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam,
                                              problem.sample_outer_batch(gen))

        fresh = FreshBatchDerivatives(problem, theta, lam,
                                      lambda: problem.sample_inner_batch(gen))
        eta = self.neumann_lr if self.neumann_lr is not None else lr
        v = autodiff.neumann(fresh.hvp, f_theta, self.neumann_terms, eta)
        state.extra["linear_solution"] = v
        return theta, f_lam - fresh.mixed(v)
