"""SAMA: scalable meta learning with the adaptive-optimizer correction (Choe et al., NeurIPS 2023).

"Making scalable meta learning practical", §3. The inner problem is solved by a base
optimizer with update θ ← θ − u(∇_θ g) (SGD: u = η g; Adam: u = η m̂/(√v̂ + ε)); at its fixed
point the implicit function theorem gives dθ*/dλ = −(∂u/∂θ)⁻¹ (∂u/∂g) ∂²_θλ g. SAMA
approximates the base Jacobian ∂u/∂θ by the identity (no inverse, no Hessian) but keeps the
optimizer's own Jacobian ∂u/∂g — the "algorithmic adaptation" for adaptive optimizers:

    dF/dλ ≈ ∇_λ f − J P ∇_θ f,   P = ∂u/∂g = η I (SGD),  diag(η / (√v̂ + ε)) (Adam, with
                                               Adam's moments held constant, as the paper)

and the mixed product J (P ∇_θ f) by a central finite difference of ∇_λ g (first-order
oracles only; ``autodiff.mixed_fd``, ε = ε₀ / ‖P ∇_θ f‖).

Each outer step: T steps of the base optimizer on g (its state — Adam's moments — kept across
outer steps: a warm start), then the estimate above at θ_T, then the outer optimizer on λ.
With ``base_optimizer=sgd`` this is the identity-Hessian (T1–T2) approximation with s = η.
Defaults: Adam (the paper's base optimizer for its experiments) at the problem's inner step
size, T = 10, ε₀ = 0.01 (DARTS' finite-difference radius, as ``darts_fd``). A deliberately
biased estimator: exact only where P = H⁻¹ (``blobench check sama`` verifies the direction by
hand, kind ``approximation``). Where a coordinate's gradient was 0 at every step (v̂ = 0: Adam
never moved it, e.g. dead units of sinusoid[proximal=2] where θ₀ = λ) P would be η/ε = 1e8 η
and the estimate NaN; P = η there (the identity base Jacobian). Elsewhere a small v̂ still
makes P large: mean cosine with dF/dλ 0.11 on quadratic (``base_optimizer=sgd``: 0.76).
Cost per outer step: T inner gradients + 1 outer gradient + 2 inner gradients (FD).
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import POSITIVE, DoubleLoop
from blobench.contracts.params import Param


class SAMA(DoubleLoop):
    name = "sama"
    family = "approximate (identity base Jacobian)"
    reference = "Choe et al. 2023 (NeurIPS), SAMA §3"
    #: `blobench check`: a deliberate approximation, its first direction checked by hand
    approximation = "optimizer_jacobian"
    params = {
        **DoubleLoop.params,
        "inner_steps": Param(int, 10, "T: base-optimizer steps per outer step", low=1),
        "base_optimizer": Param(str, "adam", "optimizer of the inner problem (its Jacobian "
                                "∂u/∂g is SAMA's correction)", choices=("adam", "sgd")),
        "fd_radius": Param(float, 0.01, "ε₀: the FD step is ε₀/‖P ∇_θ f‖", **POSITIVE),
    }

    def check_config(self):
        if not self.warm_start:
            from blobench.contracts.errors import UserError
            raise UserError("sama: the base optimizer's state is carried across outer steps "
                            "(warm_start must be true)")

    def init(self, problem, theta0, lam0, generator):
        state = super().init(problem, theta0, lam0, generator)
        leaf = state.theta.detach().clone()
        opt = torch.optim.Adam if self.base_optimizer == "adam" else torch.optim.SGD
        state.extra.update(theta_leaf=leaf, base_optimizer=opt([leaf], lr=1.0))
        return state

    def hypergradient(self, problem, state):
        lam = state.lam.detach()
        leaf, opt = state.extra["theta_leaf"], state.extra["base_optimizer"]
        lr = self.inner_lr_at(problem, lam)
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(self.inner_steps):
            leaf.grad = autodiff.inner_grad(problem, leaf.detach(), lam)
            opt.step()
            leaf.grad = None
        theta = leaf.detach().clone()
        f_theta, f_lam = autodiff.outer_grads(problem, theta, lam)
        v = preconditioner(opt, leaf, lr) * f_theta
        norm = float(torch.linalg.vector_norm(v))
        if norm == 0.0:
            return theta, f_lam
        return theta, f_lam - autodiff.mixed_fd(problem, theta, lam, v, self.fd_radius / norm)


def preconditioner(opt: torch.optim.Optimizer, leaf: torch.Tensor, lr: float) -> torch.Tensor:
    """∂u/∂g as a vector: η for SGD; η / (√v̂ + ε) for Adam (bias-corrected second moment)."""
    if not isinstance(opt, torch.optim.Adam):
        return torch.full_like(leaf, lr)
    group, st = opt.param_groups[0], opt.state[leaf]
    beta2, eps = group["betas"][1], group["eps"]
    v_hat = st["exp_avg_sq"] / (1.0 - beta2 ** float(st["step"]))
    # v̂ = 0 exactly: every gradient of this coordinate was 0, Adam never moved it and its
    # preconditioner has no scale there (η/ε = 1e8 η); the identity base Jacobian's η instead
    return torch.where(v_hat > 0, lr / (v_hat.sqrt() + eps), torch.full_like(v_hat, lr))
