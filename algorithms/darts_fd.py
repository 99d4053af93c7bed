"""DARTS second-order approximation with a finite-difference mixed product.

After T inner gradient steps to θ (T = 1, warm start: DARTS alternates one step on the weights
and one on the architecture), one virtual step θ' = θ − ξ ∇_θ g(θ, λ) gives the unrolled
one-step hypergradient (Liu, Simonyan, Yang, ICLR 2019, "DARTS", eq. 7):

    ∇_λ f(θ', λ) − ξ ∇²_λθ g(θ, λ) ∇_θ' f(θ', λ),

whose mixed product is replaced by a central finite difference (eq. 8):

    ∇²_λθ g · v ≈ (∇_λ g(θ⁺, λ) − ∇_λ g(θ⁻, λ)) / (2ε),  θ± = θ ± ε v,  v = ∇_θ' f(θ', λ),

with ε = ε₀/‖v‖ (ε₀ = 0.01 in the paper), so only first-order gradients are needed
(``autodiff.mixed_fd``). ξ = None uses the inner step size, as DARTS sets ξ to the weights'
learning rate; ξ = 0 would be the first-order DARTS approximation (∇_λ f only), which the
``alternating`` entry covers. The virtual step is not kept: the next outer step continues
from θ. Cost: T + 1 inner gradients, one outer gradient, 2 inner gradients for the FD.
"""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.bases.algorithm import POSITIVE, DoubleLoop
from blobench.contracts.params import Param


class DartsFD(DoubleLoop):
    name = "darts_fd"
    family = "approximate (finite differences)"
    reference = "Liu, Simonyan, Yang 2019 (DARTS), eq. 7–8"
    approximation = "one_step_unroll"  # what `blobench check` verifies (check_claims.py)
    params = {
        **DoubleLoop.params,
        "inner_steps": Param(int, 1, "T: inner gradient steps per outer step", low=1),
        "xi": Param(float, None, "ξ, virtual step size; None = the inner step size",
                    optional=True, **POSITIVE),
        "fd_radius": Param(float, 0.01, "ε₀: the FD step is ε = ε₀/‖∇_θ' f‖", **POSITIVE),
    }

    def hypergradient(self, problem, state):
        lam = state.lam.detach()
        lr = self.inner_lr_at(problem, lam)
        theta = self.solve_inner(problem, state, lam)
        return theta, self.one_step_hypergradient(problem, theta, lam, lr)

    def one_step_hypergradient(self, problem, theta, lam, lr, exact_mixed: bool = False):
        """Eq. 7 at θ, its mixed product by FD (eq. 8) or, with ``exact_mixed``, by autodiff."""
        xi = self.xi if self.xi is not None else lr
        virtual = theta - xi * autodiff.inner_grad(problem, theta, lam)
        f_virtual, f_lam = autodiff.outer_grads(problem, virtual, lam)
        norm = float(torch.linalg.vector_norm(f_virtual))
        if norm == 0.0:
            return f_lam
        if exact_mixed:
            mixed = autodiff.InnerDerivatives(problem, theta, lam).mixed(f_virtual)
        else:
            mixed = autodiff.mixed_fd(problem, theta, lam, f_virtual, self.fd_radius / norm)
        return f_lam - xi * mixed
