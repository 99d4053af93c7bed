"""A quadratic bilevel problem whose outer loss couples θ and λ (closed-form answers).

    inner  g(θ, λ) = ½ θᵀ A θ − θᵀ B λ − aᵀθ                          A ≻ 0 (d×d), B (d×p)
    outer  f(θ, λ) = ½ ‖C θ − c‖² / m + θᵀ D λ + ½ ρ ‖λ‖² + eᵀλ        C (m×d), D (d×p)

Unlike ``quadratic`` (whose ∇_λ f = ρλ never sees θ), here ∇_λ f(θ, λ) = Dᵀθ + ρλ + e depends on
θ through the cross term θᵀDλ, and on λ directly (ρλ + e ≠ 0 at the optimum): an estimator
that evaluates ∇_λ f at the wrong θ (before the inner steps, at an auxiliary iterate) or drops
it is wrong here by a visible margin, where on every other registered problem it was not.

Closed forms, with M = A⁻¹B and θ_a = A⁻¹a:

    θ*(λ) = A⁻¹(Bλ + a) = Mλ + θ_a,     J = ∇²_λθ g = −Bᵀ,
    ∇_θ f = Cᵀ(Cθ − c)/m + Dλ,           ∇_λ f = Dᵀθ + ρλ + e,
    dF/dλ = ∇_λ f(θ*, λ) + Bᵀ A⁻¹ ∇_θ f(θ*, λ)                      (IFT, Pedregosa 2016 eq. 3)
          = Q λ + q,   Q = MᵀCᵀCM/m + MᵀD + DᵀM + ρI,   q = MᵀCᵀ(Cθ_a − c)/m + Dᵀθ_a + e,

so F is a quadratic in λ with Hessian Q and minimizer λ* = −Q⁻¹q. ``coupling`` scales D
(entries N(0, coupling²/d)); ρ is raised, if needed, so that Q ⪰ ρ_min·I with ρ_min = 0.1
(``build`` reports the effective ρ in ``self.rho``). A has condition number ``condition``.
``inner_step_size`` = 1/λ_max(A), ``outer_step_size`` = 1/λ_max(Q) (exact gradient descent on F
is then stable). It has the analytic ``outer_grads_oracle`` (so the oracle path of
``autodiff.outer_hypergradient`` is exercised) and no inner oracles (autodiff there).

Sizes: quick d = 20, p = 5, m = 30; full d = 300, p = 100, m = 400 (benchopt's quadratic
benchmark scale, as ``quadratic``). Written for blobench (issue 26), no paper uses it as is.
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem

RHO_MIN = 0.1


class CoupledQuadratic(Problem):
    name = "coupled_quadratic"
    family = "synthetic (closed form)"
    reference = "blobench (issue 26): quadratic with a θ–λ cross term in the outer loss"
    params = {
        "dim_theta": Param(int, 20, "d, inner dimension", low=1),
        "dim_lambda": Param(int, 5, "p, outer dimension", low=1),
        "n_outer": Param(int, 30, "m, rows of C", low=1),
        "condition": Param(float, 10.0, "condition number of A", low=1.0),
        "coupling": Param(float, 1.0, "scale of D in the cross term θᵀDλ", low=0.0),
        "rho": Param(float, 0.5, "ρ, outer ridge term (raised if Q needs it)", low=0.0),
    }
    sizes = {"quick": {"dim_theta": 20, "dim_lambda": 5, "n_outer": 30},
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
        a_mat = (q * eig) @ q.T
        b_mat, a_vec = randn(d, p) / d**0.5, randn(d)
        c_mat, c_vec = randn(m, d), randn(m)
        d_mat, e_vec = c["coupling"] * randn(d, p) / d**0.5, randn(p)
        m_mat = torch.linalg.solve(a_mat, b_mat)
        theta_a = torch.linalg.solve(a_mat, a_vec)
        cm = c_mat @ m_mat
        cross = m_mat.T @ d_mat + d_mat.T @ m_mat
        base = cm.T @ cm / m + cross
        lowest = float(torch.linalg.eigvalsh(base)[0])
        self.rho = max(c["rho"], RHO_MIN - lowest)
        eye = torch.eye(p, dtype=torch.float64)
        q_mat = base + self.rho * eye
        q_vec = cm.T @ (c_mat @ theta_a - c_vec) / m + d_mat.T @ theta_a + e_vec
        self.a_mat, self.b_mat, self.a_vec = map(self.tensor, (a_mat, b_mat, a_vec))
        self.c_mat, self.c_vec = self.tensor(c_mat), self.tensor(c_vec)
        self.d_mat, self.e_vec = self.tensor(d_mat), self.tensor(e_vec)
        self.q_mat, self.q_vec = self.tensor(q_mat), self.tensor(q_vec)
        self.lipschitz = float(eig.max())
        self.outer_lipschitz = float(torch.linalg.eigvalsh(q_mat)[-1])
        self.lam_star = self.tensor(-torch.linalg.solve(q_mat, q_vec))
        self.f_star = float(self.value(self.lam_star))

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
        return (0.5 * (r @ r) / r.shape[0] + theta @ (self.d_mat @ lam)
                + 0.5 * self.rho * (lam @ lam) + self.e_vec @ lam)

    def outer_grads_oracle(self, theta, lam, batch=None):
        """(∇_θ f, ∇_λ f) = (Cᵀ(Cθ − c)/m + Dλ, Dᵀθ + ρλ + e): the engine's oracle path of
        ``autodiff.outer_hypergradient`` runs here (``quadratic`` keeps the autodiff path)."""
        m = self.c_mat.shape[0]
        return (self.c_mat.T @ (self.c_mat @ theta - self.c_vec) / m + self.d_mat @ lam,
                self.d_mat.T @ theta + self.rho * lam + self.e_vec)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)

    def inner_step_size(self, lam):
        return 1.0 / self.lipschitz

    def outer_step_size(self):
        return 1.0 / self.outer_lipschitz

    def value(self, lam: torch.Tensor) -> torch.Tensor:
        """F(λ) = f(θ*(λ), λ)."""
        return self.outer_loss(self.inner_solution(lam), lam.detach())

    def evaluate(self, theta, lam):
        with torch.no_grad():
            return {"suboptimality": float(self.value(lam)) - self.f_star,
                    "lam_error": float(torch.linalg.vector_norm(lam - self.lam_star))}

    def inner_solution(self, lam):
        return torch.linalg.solve(self.a_mat, self.b_mat @ lam.detach() + self.a_vec)

    def exact_hypergradient(self, lam):
        return self.q_mat @ lam.detach() + self.q_vec

    def optimal_value(self):
        return self.f_star
