"""ApproxGrad: implicit hypergradient with a damped, warm-started least-squares solve.

After T inner gradient steps to θ_T (warm start, as the method is used by Mehra & Hamm), the
adjoint p solves the damped linear system (H + σI) p = ∇_θ f, H = ∇²_θθ g(θ_T, λ), and

    dF/dλ ≈ ∇_λ f − J p,    J = ∇²_λθ g(θ_T, λ)

(Mehra & Hamm, ACML 2021, "Penalty method for inversion-free deep bilevel optimization",
arXiv 1911.03432, the ApproxGrad baseline; σ in 1e-6…1e-3 there). As the authors' method
does, p minimizes the squared residual ½‖(H + σI) p − ∇_θ f‖² by a gradient method,
keeping p between outer steps (warm start); the residual form is valid even where H is
indefinite. Here the gradient method is plain gradient descent (``autodiff.least_squares_gd``,
two HVPs per step) with step size p_lr = None → 1/(L + σ)², L = 1/η the inner smoothness
constant; the authors' code uses Adam for this step, which is replaced by plain GD here so the
estimate converges to the solution and can be validated. σ > 0 biases the estimate by
O(σ/μ) (μ the smallest eigenvalue of H) but keeps the system well posed when H is singular.

Cost per outer step: T inner gradients + 2K HVPs + one mixed product; memory O(dim θ + dim λ).
"""

from __future__ import annotations

from blobench.autodiff import least_squares_gd
from blobench.bases.algorithm import POSITIVE, ImplicitDoubleLoop
from blobench.contracts.params import Param


class ApproxGrad(ImplicitDoubleLoop):
    name = "approxgrad"
    family = "implicit"
    reference = "Mehra & Hamm 2021 (arXiv 1911.03432), ApproxGrad"
    check_knob = ("solver_steps", (10, 100, 3000), {"inner_steps": 400, "sigma": 0.0})
    params = {
        **ImplicitDoubleLoop.params,
        "solver_steps": Param(int, 20, "K: gradient steps on ½‖(H + σI)p − ∇_θ f‖²", low=0),
        "sigma": Param(float, 1e-4, "σ, damping of the Hessian (paper: 1e-6…1e-3)", low=0.0),
        "p_lr": Param(float, None, "step size on p; None = 1/(L + σ)² with L = 1/inner step",
                      optional=True, **POSITIVE),
        "solver_warm_start": Param(bool, True, "start p from the previous outer step's p"),
    }

    def solve(self, problem, ops, b, previous):
        sigma = self.sigma
        if self.p_lr is not None:
            lr = self.p_lr
        else:
            eta = self.inner_lr_at(problem, ops.lam.detach())
            lr = (eta / (1.0 + eta * sigma)) ** 2

        def damped(v):
            return ops.hvp(v) + sigma * v

        x0 = previous if self.solver_warm_start else None
        return least_squares_gd(damped, b, self.solver_steps, lr, x0=x0)
