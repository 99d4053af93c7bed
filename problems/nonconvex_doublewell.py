"""Optimistic formulation: a separable double-well lower level, where the initialization decides.

λ = x ∈ ℝⁿ outer, θ = y ∈ ℝⁿ inner, b = ``target``, ρ = ``rho``:

    inner  g(θ, λ) = ¼ Σᵢ ((yᵢ − xᵢ)² − 1)²                (non-convex: two wells per coordinate)
    outer  f(θ, λ) = ½ ‖y − b e‖² + (ρ/2) ‖x‖²

Derivation.

- Lower level: g ≥ 0 with equality iff yᵢ − xᵢ = ±1, so S(x) = Πᵢ {xᵢ − 1, xᵢ + 1} (2ⁿ global
  minimizers); ∂g/∂yᵢ = (uᵢ² − 1)uᵢ with uᵢ = yᵢ − xᵢ, a local maximum (the barrier) at uᵢ = 0,
  and ∂²g/∂yᵢ² = 3uᵢ² − 1 = 2 at both wells.
- **Optimistic answer**: per coordinate the selection is the well nearer b: y = x + 1 when
  x ≤ b, else y = x − 1; φ(x) = Σᵢ ½ min((xᵢ + 1 − b)², (xᵢ − 1 − b)²) + (ρ/2)xᵢ². On the "+"
  branch the minimum is x⁺ = (b − 1)/(1 + ρ) with value ½ρ(b − 1)²/(1 + ρ); on the "−" branch
  x⁻ = (b + 1)/(1 + ρ), value ½ρ(b + 1)²/(1 + ρ), and x⁻ > b (it is a genuine local minimum of
  φ) iff ρb < 1. With b > 0 the global bilevel optimum is λ* = x⁺e, θ* = λ* + e,
  φ* = n·½ρ(b − 1)²/(1 + ρ); every mixed choice of branches is a spurious local minimum of φ.
  Quick (b = ½, ρ = 1): x⁺ = −¼ (φ = 1/16 per coordinate), x⁻ = ¾ (φ = 9/16).
  ``exact_hypergradient`` = ∇φ = (θ*(x) − b) + ρx (dθ*/dx = 1 on both branches; equal to the IFT:
  −J H⁻¹ ∇_θ f = ∇_θ f because J = −H on this g).
- **Initialization decides**: descent on g from y₀ ends in the well on its side of the barrier,
  θ_cs(x) = x + sign(y₀ − x) (``min_norm_inner``: the nearest point of S(x) to y₀). A method that
  trusts that inner solution (implicit, unrolled from θ₀) sees the branch of sign(y₀ᵢ − xᵢ) and
  converges to that branch's minimum: from λ₀ = 0 the "+" branch moves x down to x⁺ (away from
  y₀ > 0) and the "−" branch moves x up to x⁻ (away from y₀ < 0), so the basin never changes and
  it reaches λ* exactly for the seeds with every y₀ᵢ > 0 (``predicted_global``): probability 2⁻ⁿ
  for y₀ ~ U(−1.5, 1.5)ⁿ. Methods that can move the inner initialization or select among minima
  (IAPTT-GM's initialization auxiliary) can do better; the fraction of seeds reaching λ* is
  the figure to compare (tests/test_lower_level_nonconvex.py).

θ₀ = y₀ is fixed by the seed: U(−1.5, 1.5)ⁿ (|u| ≤ 1.5 keeps gradient steps of 0.2 from jumping
over the barrier); λ₀ = 0. Quick n = 2, full n = 10 (our choice). ``inner_step_size`` 0.2
(curvature 2 at the wells). Metrics: ``optimistic_gap`` = φ(λ) − φ* (primary), ``reached_global``
= 1 when every |λᵢ − x⁺| < 0.1 (x⁻ − x⁺ = 2/(1 + ρ)).
"""

from __future__ import annotations

import torch

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem

REACHED_TOL = 0.1


class NonconvexDoublewell(Problem):
    """Optimistic formulation: double-well lower level, S(λ) = Π{λᵢ ± 1}; λ* = (b − 1)/(1 + ρ)."""

    name = "nonconvex_doublewell"
    family = "synthetic (non-convex lower level)"
    reference = "blobench (issue 22): derived in the module docstring"
    #: which bilevel problem F(λ) refers to when S(λ) is not a singleton (docs/lower-levels.md)
    formulation = "optimistic"
    params = {
        "dim": Param(int, 2, "n = dim λ = dim θ", low=1),
        "target": Param(float, 0.5, "b, the outer target of θ", low=0.0, low_open=True),
        "rho": Param(float, 1.0, "ρ, outer ridge on λ", low=0.0, low_open=True),
    }
    sizes = {"quick": {"dim": 2}, "full": {"dim": 10}}
    primary_metric = "optimistic_gap"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n, b, rho = c["dim"], c["target"], c["rho"]
        if rho * b >= 1:
            raise UserError(f"nonconvex_doublewell: rho·target = {rho * b:g} must be < 1 (else "
                            "the '−' branch has no local minimum and nothing is at stake)")
        self.b, self.rho = b, rho
        self.theta0 = self.tensor(3 * torch.rand(n, generator=generator, dtype=torch.float64)
                                  - 1.5)
        self.x_plus, self.x_minus = (b - 1) / (1 + rho), (b + 1) / (1 + rho)
        self.lam_star = self.tensor(torch.full((n,), self.x_plus, dtype=torch.float64))
        self.f_star = n * 0.5 * rho * (b - 1) ** 2 / (1 + rho)
        #: where a method trusting descent from θ₀ ends (module docstring): per coordinate
        self.lam_singleton = torch.where(self.theta0 > 0, self.x_plus, self.x_minus)
        self.predicted_global = bool((self.theta0 > 0).all())

    @property
    def dim_inner(self) -> int:
        return self.config["dim"]

    @property
    def dim_outer(self) -> int:
        return self.config["dim"]

    def inner_loss(self, theta, lam, batch=None):
        u = theta - lam
        w = u * u - 1
        return 0.25 * (w @ w)

    def outer_loss(self, theta, lam, batch=None):
        r = theta - self.b
        return 0.5 * (r @ r) + 0.5 * self.rho * (lam @ lam)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return self.theta0.clone()

    def inner_step_size(self, lam):
        return 0.2

    def outer_step_size(self):
        return 0.5

    # ----------------------------------------------------------- ground truth
    def value(self, lam: torch.Tensor) -> float:
        """φ(λ) = f(θ*(λ), λ) with the optimistic selection θ*(λ)."""
        lam = lam.detach()
        return float(self.outer_loss(self.inner_solution(lam), lam))

    def reached(self, lam: torch.Tensor) -> bool:
        """Whether λ is at the global bilevel optimum (every |λᵢ − x⁺| < 0.1)."""
        return bool(((lam.detach() - self.x_plus).abs() < REACHED_TOL).all())

    def evaluate(self, theta, lam):
        with torch.no_grad():
            return {"optimistic_gap": self.value(lam) - self.f_star,
                    "lam_error": float(torch.linalg.vector_norm(lam - self.lam_star)),
                    "reached_global": float(self.reached(lam))}

    def inner_solution(self, lam):
        """The optimistic selection: λᵢ + 1 where λᵢ ≤ b, else λᵢ − 1."""
        lam = lam.detach()
        return lam + torch.where(lam <= self.b, 1.0, -1.0)

    def min_norm_inner(self, lam, theta0=None):
        """The minimizer descent from θ₀ converges to: λ + sign(θ₀ − λ) (the nearest one)."""
        lam = lam.detach()
        if theta0 is None:
            theta0 = torch.zeros_like(lam)
        return lam + torch.where(theta0 >= lam, 1.0, -1.0)

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        return self.inner_solution(lam) - self.b + self.rho * lam

    def optimal_value(self):
        return self.f_star
