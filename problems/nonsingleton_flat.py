"""A flat-bottomed lower level (solution set a box) in its optimistic and pessimistic forms.

λ = x ∈ ℝⁿ outer, θ = (y₁, y₂) ∈ ℝ²ⁿ inner, a = ``target``·e, c = ``coupling`` ∈ (0, 1):

    inner  g(θ, λ) = ½ ‖y₁ − λ‖² + ½ Σᵢ max(|y₂ᵢ| − 1, 0)²       (C¹, convex, flat on the box)
    outer  f(θ, λ) = ½ ‖y₁ − a‖² + (c/2) Σᵢ y₁ᵢ² y₂ᵢ

Derivation.

- Lower level: g ≥ 0 with equality iff y₁ = λ and |y₂ᵢ| ≤ 1, so S(λ) = {λ} × [−1, 1]ⁿ, a
  compact box (H = diag(I, 0) inside it): not a singleton, and f is bounded on it, so both the
  optimistic and the pessimistic problem are well posed.
- **Optimistic** (``nonsingleton_flat``; c < 1, else φ_o is unbounded below): the min over
  y₂ ∈ [−1, 1]ⁿ of (c/2)Σ λᵢ² y₂ᵢ is at y₂ = −e, so φ_o(λ) = ½‖λ − a‖² − (c/2)‖λ‖², λ_o = a/(1 − c),
  φ_o* = −½‖a‖² c/(1 − c), dφ_o/dλ = (1 − c)λ − a.
- **Pessimistic** (``nonsingleton_flat_pessimistic``, the worst case over S(λ)): the max is at
  y₂ = +e, φ_p(λ) = ½‖λ − a‖² + (c/2)‖λ‖², λ_p = a/(1 + c), φ_p* = +½‖a‖² c/(1 + c),
  dφ_p/dλ = (1 + c)λ − a. (Quick: a = e, c = ½: λ_o = 2e, λ_p = ⅔e.)
- **Where a method that assumes a unique inner solution stops**: gradient descent on g from θ₀
  moves y₂ only outside the box, to its nearest point, so it selects
  θ_cs(λ) = (λ, clip(y₂⁰, −1, 1)) = argmin_{θ∈S(λ)} ‖θ − θ₀‖ (``min_norm_inner``); implicit
  (H⁺) and unrolled-from-θ₀ methods descend F_cs(λ) = ½‖λ − a‖² + (c/2)Σ λᵢ² ȳᵢ,
  ȳ = clip(y₂⁰, −1, 1), and stop at

      λ̂ᵢ = aᵢ / (1 + c ȳᵢ)          (``singleton_point``),

  strictly between λ_p and λ_o when |ȳᵢ| < 1: neither the optimistic nor the pessimistic
  answer. Optimistic methods (BDA-type aggregation, value-function methods) push y₂ to −e and
  reach λ_o — a pessimistic problem needs a method that maximizes over S(λ).

``inner_solution(λ)`` is the selection of the class's formulation ((λ, −e) optimistic, (λ, +e)
pessimistic) and ``exact_hypergradient`` the derivative of that φ. θ₀ is fixed by the seed:
y₁⁰ ~ N(0, 1), y₂⁰ ~ U(−1, 1) (inside the box); λ₀ = 0. Quick n = 5, full n = 100 (our choice).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem


class NonsingletonFlat(Problem):
    """Optimistic formulation: flat-bottomed lower level, S(λ) = {λ} × [−1, 1]ⁿ; λ* = a/(1 − c)."""

    name = "nonsingleton_flat"
    family = "synthetic (non-singleton lower level)"
    reference = "blobench (issue 22): derived in the module docstring"
    #: which bilevel problem F(λ) refers to when S(λ) is not a singleton (docs/lower-levels.md)
    formulation: ClassVar[str] = "optimistic"
    params = {
        "dim": Param(int, 5, "n = dim λ = dim y₁ = dim y₂", low=1),
        "target": Param(float, 1.0, "a = target·e", low=0.0, low_open=True),
        "coupling": Param(float, 0.5, "c, weight of (c/2)Σ y₁ᵢ² y₂ᵢ in f", low=0.0, high=1.0,
                          low_open=True, high_open=True),
    }
    sizes = {"quick": {"dim": 5}, "full": {"dim": 100}}
    primary_metric = "gap"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    @property
    def sign(self) -> float:
        """y₂ of the formulation's selection: −1 (optimistic, min over S) or +1 (pessimistic)."""
        return -1.0 if self.formulation == "optimistic" else 1.0

    def build(self, generator: torch.Generator) -> None:
        c = self.config
        n = c["dim"]
        self.a = self.tensor(c["target"] * torch.ones(n, dtype=torch.float64))
        self.c = c["coupling"]
        y1 = torch.randn(n, generator=generator, dtype=torch.float64)
        y2 = 2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1
        self.theta0 = self.tensor(torch.cat([y1, y2]))
        self.lam_star = self.a / (1 + self.sign * self.c)
        self.f_star = self.value(self.lam_star)
        self.lam_singleton = self.singleton_point(self.theta0)

    @property
    def dim_inner(self) -> int:
        return 2 * self.config["dim"]

    @property
    def dim_outer(self) -> int:
        return self.config["dim"]

    def _split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.config["dim"]
        return theta[:n], theta[n:]

    def inner_loss(self, theta, lam, batch=None):
        y1, y2 = self._split(theta)
        r, out = y1 - lam, torch.relu(y2.abs() - 1)
        return 0.5 * (r @ r) + 0.5 * (out @ out)

    def outer_loss(self, theta, lam, batch=None):
        y1, y2 = self._split(theta)
        r = y1 - self.a
        return 0.5 * (r @ r) + 0.5 * self.c * ((y1 * y1) @ y2)

    def init_outer(self, generator):
        return torch.zeros(self.dim_outer, dtype=torch.float64, device=self.device)

    def init_inner(self, lam, generator):
        return self.theta0.clone()

    def inner_step_size(self, lam):
        return 0.5

    def outer_step_size(self):
        return 0.5

    # ----------------------------------------------------------- ground truth
    def value(self, lam: torch.Tensor) -> float:
        """φ(λ) of this class's formulation: ½‖λ − a‖² ∓ (c/2)‖λ‖²."""
        lam = lam.detach()
        r = lam - self.a
        return 0.5 * float(r @ r) + self.sign * 0.5 * self.c * float(lam @ lam)

    def singleton_point(self, theta0: torch.Tensor) -> torch.Tensor:
        """λ̂ = a / (1 + c·clip(y₂⁰)): where methods assuming a unique inner solution stop."""
        return self.a / (1 + self.c * self._split(theta0)[1].clamp(-1.0, 1.0))

    def evaluate(self, theta, lam):
        with torch.no_grad():
            other = self.a / (1 - self.sign * self.c)  # the other formulation's answer
            return {"gap": self.value(lam) - self.f_star,
                    "lam_error": float(torch.linalg.vector_norm(lam - self.lam_star)),
                    "other_formulation_dist": float(torch.linalg.vector_norm(lam - other)),
                    "singleton_point_dist": float(torch.linalg.vector_norm(
                        lam - self.lam_singleton))}

    def inner_solution(self, lam):
        """The formulation's selection from S(λ): (λ, ∓e) (optimistic: −e; pessimistic: +e)."""
        lam = lam.detach()
        return torch.cat([lam, self.sign * torch.ones_like(lam)])

    def min_norm_inner(self, lam, theta0=None):
        if theta0 is None:
            theta0 = torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)
        return torch.cat([lam.detach(), self._split(theta0)[1].clamp(-1.0, 1.0)])

    def exact_hypergradient(self, lam):
        lam = lam.detach()
        return (1 + self.sign * self.c) * lam - self.a

    def optimal_value(self):
        return self.f_star


class NonsingletonFlatPessimistic(NonsingletonFlat):
    """Pessimistic formulation: min_λ max_{θ∈S(λ)} f, S(λ) = {λ} × [−1, 1]ⁿ; λ* = a/(1 + c)."""

    name = "nonsingleton_flat_pessimistic"
    formulation = "pessimistic"
