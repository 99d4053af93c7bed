"""A quadratic bilevel problem with an exact answer and a non-square mixed derivative.

    inner  g(θ, λ) = ½ θᵀ A θ − θᵀ B λ − aᵀθ              A ≻ 0 (d×d), B (d×p)
    outer  f(θ, λ) = ½ ‖C θ − c‖² / m + ½ ρ ‖λ‖²          C (m×d)

θ*(λ) = A⁻¹(B λ + a) and, with J = ∇²_λθ g = −Bᵀ (p×d),

    dF/dλ = Bᵀ A⁻¹ Cᵀ (C θ* − c) / m + ρ λ,

minimized at λ* solving (M + ρ I) λ = Bᵀ A⁻¹ Cᵀ(c − C A⁻¹ a)/m with M = Bᵀ A⁻¹ CᵀC A⁻¹ B / m.
Because B is not square (p ≠ d), a transposed Jacobian does not even have the right shape, and
a wrong sign moves λ away from λ*: the testbed for every hypergradient estimator. It is
benchopt's quadratic bilevel benchmark (Dagréou et al. 2022) in its deterministic form;
the condition number of A is a parameter.
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem


class Quadratic(Problem):
    name = "quadratic"
    family = "synthetic (closed form)"
    reference = "Dagréou et al. 2022 (benchopt bilevel benchmark, quadratic problem)"
    params = {
        "dim_theta": Param(int, 30, "d, inner dimension", low=1),
        "dim_lambda": Param(int, 10, "p, outer dimension", low=1),
        "n_outer": Param(int, 40, "m, rows of C", low=1),
        "condition": Param(float, 10.0, "condition number of A", low=1.0),
        "rho": Param(float, 0.1, "ρ, outer ridge term", low=0.0),
    }
    sizes = {"quick": {"dim_theta": 30, "dim_lambda": 10, "n_outer": 40},
             "full": {"dim_theta": 300, "dim_lambda": 100, "n_outer": 400}}
    primary_metric = "suboptimality"
    budgets = {"quick": Budget(steps=100, eval_every=10), "full": Budget(steps=300, eval_every=30)}

    def build(self, generator):
        c = self.config
        d, p, m = c["dim_theta"], c["dim_lambda"], c["n_outer"]

        def randn(*shape):
            return torch.randn(*shape, generator=generator, dtype=torch.float64)

        q, _ = torch.linalg.qr(randn(d, d))
        eig = torch.logspace(0, torch.log10(torch.tensor(c["condition"])).item(), d,
                             dtype=torch.float64)
        self.a_mat = self.tensor((q * eig) @ q.T)
        self.b_mat = self.tensor(randn(d, p) / d**0.5)
        self.a_vec = self.tensor(randn(d))
        self.c_mat = self.tensor(randn(m, d))
        self.c_vec = self.tensor(randn(m))
        self.rho = c["rho"]
        self.lipschitz = float(eig.max())
        a_inv_b = torch.linalg.solve(self.a_mat, self.b_mat)
        a_inv_a = torch.linalg.solve(self.a_mat, self.a_vec)
        ca = self.c_mat @ a_inv_b
        rhs = ca.T @ (self.c_vec - self.c_mat @ a_inv_a) / m
        self.lam_star = torch.linalg.solve(ca.T @ ca / m + self.rho * torch.eye(
            p, dtype=torch.float64, device=self.device), rhs)
        self.f_star = float(self._value(self.lam_star))

    @property
    def dim_inner(self):
        return self.config["dim_theta"]

    @property
    def dim_outer(self):
        return self.config["dim_lambda"]

    def inner_loss(self, theta, lam, batch=None):
        return 0.5 * theta @ (self.a_mat @ theta) - theta @ (self.b_mat @ lam) - self.a_vec @ theta

    def outer_loss(self, theta, lam, batch=None):
        r = self.c_mat @ theta - self.c_vec
        return 0.5 * (r @ r) / r.shape[0] + 0.5 * self.rho * (lam @ lam)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / self.lipschitz

    def outer_step_size(self):
        return 1.0

    def _value(self, lam):
        return self.outer_loss(self.inner_solution(lam), lam)

    def evaluate(self, theta, lam):
        with torch.no_grad():
            return {"suboptimality": float(self._value(lam)) - self.f_star,
                    "lam_error": float(torch.linalg.vector_norm(lam - self.lam_star))}

    def inner_solution(self, lam):
        return torch.linalg.solve(self.a_mat, self.b_mat @ lam.detach() + self.a_vec)

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        theta = self.inner_solution(lam)
        grad_theta = self.c_mat.T @ (self.c_mat @ theta - self.c_vec) / self.config["n_outer"]
        return self.b_mat.T @ torch.linalg.solve(self.a_mat, grad_theta) + self.rho * lam

    def optimal_value(self):
        return self.f_star
