"""Two biased first-order baselines: the identity-Hessian approximation and plain alternation.

``one_step`` — after T inner gradient steps (T = 1, warm start: the alternating T1–T2 scheme
of Luketina, Berglund, Raiko, Greff, ICML 2016, "Scalable gradient-based tuning of continuous
regularization hyperparameters"), replace H⁻¹ by s·I in the implicit formula:

    dF/dλ ≈ ∇_λ f(θ_T, λ) − s J ∇_θ f(θ_T, λ),    J = ∇²_λθ g(θ_T, λ).

With s = η (the inner step size; ``scale`` = None) this is the derivative of f through one
gradient step with the Hessian term dropped, Luketina et al.'s approximation (there the
mixed term is evaluated at the iterate before the step; here both at θ_T), and equals the
0-term Neumann series of Lorraine et al. 2020. Cost: T gradients + one mixed product.

``alternating`` — plain alternating gradient descent: T inner gradient steps (warm start),
then λ moves along ∇_λ f(θ_T, λ) only, with no implicit term: the "GD" baseline of Mehra &
Hamm 2021 (arXiv 1911.03432). Exact only when f does not depend on θ through λ's effect,
i.e. never on the hyperparameter problems here: a floor for every other estimator.

Both are biased by design: they do not converge to dF/dλ as T grows.
"""

from __future__ import annotations

from blobench import autodiff
from blobench.bases.algorithm import POSITIVE, DoubleLoop, ImplicitDoubleLoop
from blobench.contracts.params import Param

_ONE_STEP = Param(int, 1, "T: inner gradient steps per outer step", low=1)


class OneStep(ImplicitDoubleLoop):
    name = "one_step"
    family = "approximate (identity Hessian)"
    reference = "Luketina et al. 2016 (T1–T2); Lorraine et al. 2020 (Neumann, K = 0)"
    approximation = "identity_hessian"  # what `blobench check` verifies (check_claims.py)
    params = {
        **ImplicitDoubleLoop.params,
        "inner_steps": _ONE_STEP,
        "scale": Param(float, None, "s in H⁻¹ ≈ s·I; None = the inner step size η",
                       optional=True, **POSITIVE),
    }

    def solve(self, problem, ops, b, previous):
        scale = self.scale if self.scale is not None else self.inner_lr_at(problem,
                                                                           ops.lam.detach())
        return scale * b


class Alternating(DoubleLoop):
    name = "alternating"
    family = "approximate (no implicit term)"
    reference = "Mehra & Hamm 2021 (arXiv 1911.03432), GD baseline"
    approximation = "partial_gradient"
    params = {**DoubleLoop.params, "inner_steps": _ONE_STEP}

    def hypergradient(self, problem, state):
        lam = state.lam.detach()
        theta = self.solve_inner(problem, state, lam)
        _, f_lam = autodiff.outer_grads(problem, theta, lam)
        return theta, f_lam
