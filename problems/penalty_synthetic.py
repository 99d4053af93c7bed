"""The synthetic bilevel problems of Mehra & Hamm's penalty-method paper, with closed-form optima.

Mehra & Hamm, "Penalty Method for Inversion-Free Deep Bilevel Optimization" (ACML 2021,
arXiv 1911.03432), section on synthetic examples: four problems with u, v ∈ ℝ^10 (u = λ outer,
v = θ inner), two with a unique lower-level solution and two whose lower level has a
5 × 10 Gaussian matrix A (a 5-dimensional affine family of solutions), initialization uniform
in [−5, 5], error = distance to the optimum. The functional forms below are our
reconstruction of that family (the paper's exact formulas were not available to us while
writing this; the page of ``blobench reproduce mehra2021`` says so):

    example 1 (unique):      f = ‖λ‖² + ‖θ‖²,                  g = ‖1 − λ − θ‖²
                             θ*(λ) = 1 − λ;  λ* = θ* = ½·1
    example 2 (unique):      f = ‖θ‖² − ‖λ − θ‖²,               g = ‖λ − θ‖²
                             θ*(λ) = λ, F(λ) = ‖λ‖²;  λ* = θ* = 0
    example 3 (non-unique):  f = ‖λ‖² + ‖θ‖²,                  g = ‖1₅ − A(λ + θ)‖²
                             S(λ) = {θ : A(λ + θ) = 1₅};  optimistic optimum λ* = θ* = ½ A⁺1₅
    example 4 (non-unique):  f = ‖λ‖² + ‖θ‖² − ‖A(λ − θ)‖²,    g = ‖A(λ − θ)‖²
                             S(λ) = λ + null(A), F(λ) = ‖λ‖² + ‖P_A λ‖² at the optimistic
                             θ = P_A λ;  λ* = θ* = 0

(P_A: projection onto the row space of A.) Examples 2 and 4 have an outer loss with negative
curvature in λ − θ: the penalized objective f + (γ/2)‖∇_θ g‖² is bounded below only for γ above
a threshold (γ > ½ in example 2; γ > 1/(2σ_min(A)²) in example 4) — the regime where a penalty
method's growing γ matters. For examples 3 and 4 the bilevel problem is the optimistic one
(min over λ and θ ∈ S(λ)); ``exact_hypergradient`` exists only for the unique ones.

Metrics: ``error`` = ‖(λ, θ) − (λ*, θ*)‖ (the paper's "error to the optimum"), ``lam_error`` =
‖λ − λ*‖, ``lower_gap`` = g(θ, λ) − min_θ' g(θ', λ) = g(θ, λ) (min g = 0 in all four;
A has full row rank). Sizes: quick = full =
the paper's (dim 10, A 5 × 10).
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem

DIM, ROWS = 10, 5


class PenaltySynthetic(Problem):
    name = "penalty_synthetic"
    family = "synthetic (closed form)"
    reference = "Mehra & Hamm 2021 (ACML), synthetic examples (reconstructed forms)"
    params = {"example": Param(int, 1, "which of the four problems (1, 2: unique lower "
                               "level; 3, 4: non-unique, 5 × 10 Gaussian A)", low=1, high=4)}
    sizes = {"quick": {}, "full": {}}
    primary_metric = "error"
    budgets = {"quick": Budget(steps=400, eval_every=20), "full": Budget(steps=1000,
                                                                           eval_every=50)}

    def build(self, generator):
        a = torch.randn(ROWS, DIM, generator=generator, dtype=torch.float64)
        self.a_mat = self.tensor(a)
        self.ones = self.tensor(torch.ones(ROWS))
        self.row_proj = self.tensor(torch.linalg.pinv(a) @ a)  # P_A
        sigma = torch.linalg.svdvals(a)
        self.sigma_max, self.sigma_min = float(sigma[0]), float(sigma[-1])
        ex = self.config["example"]
        if ex == 1:
            star = 0.5 * torch.ones(DIM, dtype=torch.float64)
        elif ex == 3:
            star = 0.5 * torch.linalg.pinv(a) @ torch.ones(ROWS, dtype=torch.float64)
        else:
            star = torch.zeros(DIM, dtype=torch.float64)
        self.lam_star = self.tensor(star)
        self.theta_star = self.tensor(star)

    @property
    def dim_inner(self):
        return DIM

    @property
    def dim_outer(self):
        return DIM

    @property
    def unique(self) -> bool:
        return self.config["example"] in (1, 2)

    def inner_loss(self, theta, lam, batch=None):
        ex = self.config["example"]
        if ex == 1:
            r = 1.0 - lam - theta
        elif ex == 2:
            r = lam - theta
        elif ex == 3:
            r = self.ones - self.a_mat @ (lam + theta)
        else:
            r = self.a_mat @ (lam - theta)
        return r @ r

    def outer_loss(self, theta, lam, batch=None):
        ex = self.config["example"]
        if ex == 2:
            d = lam - theta
            return theta @ theta - d @ d
        value = lam @ lam + theta @ theta
        if ex == 4:
            d = self.a_mat @ (lam - theta)
            value = value - d @ d
        return value

    def init_outer(self, generator):
        return self.tensor(10.0 * torch.rand(DIM, generator=generator, dtype=torch.float64) - 5)

    def init_inner(self, lam, generator):
        return self.tensor(10.0 * torch.rand(DIM, generator=generator, dtype=torch.float64) - 5)

    def inner_step_size(self, lam):
        """1/L of g in θ: L = 2 (examples 1, 2) or 2σ_max(A)² (3, 4)."""
        return 0.5 if self.unique else 0.5 / self.sigma_max**2

    def outer_step_size(self):
        """1/4: F(λ) has curvature 4 (examples 1, 3, 4: ‖λ‖² plus a second square) or 2."""
        return 0.25

    def evaluate(self, theta, lam):
        with torch.no_grad():
            d_lam, d_theta = lam - self.lam_star, theta - self.theta_star
            return {"error": float(torch.sqrt(d_lam @ d_lam + d_theta @ d_theta)),
                    "lam_error": float(torch.linalg.vector_norm(d_lam)),
                    "lower_gap": float(self.inner_loss(theta, lam))}  # min_θ g = 0

    def has(self, method):
        """The ground truth of a singleton lower level exists for examples 1 and 2 only."""
        if method in ("inner_solution", "exact_hypergradient") and not self.unique:
            return False
        return super().has(method)

    def inner_solution(self, lam):
        if not self.unique:
            raise NotImplementedError("the lower level of examples 3 and 4 is not a singleton")
        return (1.0 - lam if self.config["example"] == 1 else lam).detach().clone()

    def exact_hypergradient(self, lam):
        """dF/dλ: example 1, F = ‖λ‖² + ‖1 − λ‖² → 4λ − 2; example 2, F = ‖λ‖² → 2λ."""
        if not self.unique:
            raise NotImplementedError("defined for the unique lower levels (examples 1, 2)")
        lam = lam.detach()
        return 4.0 * lam - 2.0 if self.config["example"] == 1 else 2.0 * lam

    def optimal_value(self):
        return float(self.outer_loss(self.theta_star, self.lam_star))
