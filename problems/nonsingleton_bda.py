"""Optimistic formulation: the BDA toy, a lower level whose solution set is an affine subspace.

The numerical example of Liu, Mu, Yuan, Zeng, Zhang, "A Generic First-Order Algorithmic
Framework for Bi-Level Programming Beyond Lower-Level Singleton" (ICML 2020, sec. 5), in our
notation (λ = x ∈ ℝⁿ outer, θ = (y₁, y₂) ∈ ℝ²ⁿ inner, e = (1, ..., 1)):

    inner  g(θ, λ) = ½ ‖y₁‖² − λᵀ y₁                   (does not depend on y₂)
    outer  f(θ, λ) = ½ ‖λ − y₂‖² + ½ ‖y₁ − e‖²

Derivation.

- Lower level: ∇_{y₁} g = y₁ − λ, ∇_{y₂} g = 0, so S(λ) = {(λ, y₂) : y₂ ∈ ℝⁿ}, an n-dimensional
  affine subspace (H = ∇²_θθ g = diag(I, 0) is singular): not a singleton.
- **Optimistic answer** (the formulation this problem ranks): φ(λ) = min_{θ ∈ S(λ)} f(θ, λ)
  = ½‖λ − e‖², attained at y₂ = λ. So λ* = e, θ* = (e, e), φ* = 0, and
  dφ/dλ = λ − e (``exact_hypergradient``). ``inner_solution(λ)`` returns this optimistic
  selection (λ, λ): the θ*(λ) of F(λ) = f(θ*(λ), λ) for this formulation.
- **Where a method that assumes a unique inner solution stops.** Gradient descent on g from θ₀ =
  (y₁⁰, y₂⁰) never moves y₂ (∇_{y₂} g = 0) and sends y₁ → λ: it selects
  θ_cs(λ) = (λ, y₂⁰) = argmin_{θ∈S(λ)} ‖θ − θ₀‖ (``min_norm_inner``). Implicit methods
  (the IFT with H⁺, e.g. ``implicit_cg``) and unrolled reverse mode from θ₀ differentiate exactly
  this selection: F_cs(λ) = ½‖λ − y₂⁰‖² + ½‖λ − e‖², dF_cs/dλ = (λ − y₂⁰) + (λ − e) (the IFT term
  −J H⁺ ∇_θ f = y₁ − e, J = ∇²_λθ g = [−I, 0]). Its stationary point is

      λ̂ = (e + y₂⁰) / 2            (``singleton_point``),

  where the optimistic gap is φ(λ̂) = ⅛ ‖y₂⁰ − e‖² > 0 unless y₂⁰ = e. Warm starts change
  nothing (y₂ is never moved by a step on g).
- Methods built for this setting (BDA, IAPTT-GM's initialization auxiliary, value-function
  methods, BAMM's averaged step) move y₂ with the upper level and reach λ* = e.

θ₀ is fixed by the seed (the same vector for every cold start of a cell): θ₀ ~ N(0, s²) entrywise,
s = ``init_scale``; λ₀ = 0. Quick n = 5, full n = 100 (the sizes are our choice; the paper plots
the same toy at small n). Primary metric ``optimistic_gap`` = φ(λ) − φ*, a function of λ alone
(the bilevel answer of λ in the optimistic formulation).
"""

from __future__ import annotations

import torch

from blobench.contracts.params import Param
from blobench.contracts.problem import Budget, Problem


class NonsingletonBDA(Problem):
    """Optimistic formulation: BDA toy, S(λ) = {λ} × ℝⁿ (Liu et al. 2020); λ* = e."""

    name = "nonsingleton_bda"
    family = "synthetic (non-singleton lower level)"
    reference = "Liu, Mu, Yuan, Zeng, Zhang 2020 (ICML, BDA), numerical example"
    #: which bilevel problem F(λ) refers to when S(λ) is not a singleton (docs/lower-levels.md)
    formulation = "optimistic"
    params = {
        "dim": Param(int, 5, "n = dim λ = dim y₁ = dim y₂", low=1),
        "init_scale": Param(float, 1.0, "θ₀ ~ N(0, init_scale²) entrywise", low=0.0),
    }
    sizes = {"quick": {"dim": 5}, "full": {"dim": 100}}
    primary_metric = "optimistic_gap"
    higher_is_better = False
    budgets = {"quick": Budget(steps=100, eval_every=10),
               "full": Budget(steps=300, eval_every=30)}

    def build(self, generator: torch.Generator) -> None:
        n = self.config["dim"]
        self.ones = self.tensor(torch.ones(n, dtype=torch.float64))
        self.theta0 = self.tensor(self.config["init_scale"]
                                  * torch.randn(2 * n, generator=generator, dtype=torch.float64))
        self.lam_star = self.ones.clone()
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
        y1, _ = self._split(theta)
        return 0.5 * (y1 @ y1) - lam @ y1

    def outer_loss(self, theta, lam, batch=None):
        y1, y2 = self._split(theta)
        r2, r1 = lam - y2, y1 - self.ones
        return 0.5 * (r2 @ r2) + 0.5 * (r1 @ r1)

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
        """φ(λ) = min_{θ∈S(λ)} f(θ, λ) = ½‖λ − e‖² (optimistic)."""
        r = lam.detach() - self.ones
        return 0.5 * float(r @ r)

    def singleton_point(self, theta0: torch.Tensor) -> torch.Tensor:
        """λ̂ = (e + y₂⁰)/2: the stationary point of F_cs(λ) = f(θ_cs(λ), λ), where methods that
        assume a unique inner solution (selected by descent from θ₀) stop."""
        return 0.5 * (self.ones + self._split(theta0)[1])

    def evaluate(self, theta, lam):
        with torch.no_grad():
            return {"optimistic_gap": self.value(lam),
                    "lam_error": float(torch.linalg.vector_norm(lam - self.lam_star)),
                    "singleton_point_dist": float(torch.linalg.vector_norm(
                        lam - self.lam_singleton))}

    def inner_solution(self, lam):
        """The optimistic selection argmin_{θ∈S(λ)} f(θ, λ) = (λ, λ)."""
        lam = lam.detach()
        return torch.cat([lam, lam])

    def min_norm_inner(self, lam, theta0=None):
        if theta0 is None:
            theta0 = torch.zeros(self.dim_inner, dtype=torch.float64, device=self.device)
        return torch.cat([lam.detach(), self._split(theta0)[1]])

    def exact_hypergradient(self, lam):
        return lam.detach() - self.ones

    def optimal_value(self):
        return 0.0
