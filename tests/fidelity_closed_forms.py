"""Closed-form derivatives and scripted mini-batches for the fidelity tests (tests/test_fidelity*).

Every expected value of those tests is computed here from the problems' formulas, never by the
engine under test (no ``blobench.autodiff``):

- ``coupled_quadratic`` (g = ½θᵀAθ − θᵀBλ − aᵀθ, f = ½‖Cθ − c‖²/m + θᵀDλ + ½ρ‖λ‖² + eᵀλ):
  ∇_θ g = Aθ − Bλ − a, ∇_λ g = −Bᵀθ, H = A, J v = −Bᵀv, ∇_θ f = Cᵀ(Cθ − c)/m + Dλ,
  ∇_λ f = Dᵀθ + ρλ + e;
- ``ridge_ho`` on an index batch S (g_S = ‖X_Sθ − y_S‖²/(2|S|) + ½Σ e^λ θ², f_D likewise on the
  validation rows D): ∇_θ g_S = X_Sᵀ(X_Sθ − y_S)/|S| + e^λ⊙θ, H_S v = X_SᵀX_S v/|S| + e^λ⊙v,
  J v = e^λ⊙θ⊙v (no data term), ∇_θ f_D = X_Dᵀ(X_Dθ − y_D)/|D|, ∇_λ f = 0.

:func:`scripted_ridge` makes a ridge problem whose samplers hand out fixed, pre-drawn index
batches in order (inner and outer streams apart), so a test can redo a stochastic step by hand
with exactly the batches the algorithm drew.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class CoupledForms:
    """Closed-form derivatives of a ``coupled_quadratic`` instance."""

    def __init__(self, p) -> None:
        self.p = p
        self.m = p.c_mat.shape[0]

    def g_theta(self, th: Tensor, lam: Tensor) -> Tensor:
        return self.p.a_mat @ th - self.p.b_mat @ lam - self.p.a_vec

    def g_lam(self, th: Tensor, lam: Tensor) -> Tensor:
        return -self.p.b_mat.T @ th

    def hvp(self, v: Tensor) -> Tensor:
        return self.p.a_mat @ v

    def mixed(self, v: Tensor) -> Tensor:
        return -self.p.b_mat.T @ v

    def f_theta(self, th: Tensor, lam: Tensor) -> Tensor:
        p = self.p
        return p.c_mat.T @ (p.c_mat @ th - p.c_vec) / self.m + p.d_mat @ lam

    def f_lam(self, th: Tensor, lam: Tensor) -> Tensor:
        p = self.p
        return p.d_mat.T @ th + p.rho * lam + p.e_vec

    def g(self, th: Tensor, lam: Tensor) -> Tensor:
        p = self.p
        return 0.5 * th @ (p.a_mat @ th) - th @ (p.b_mat @ lam) - p.a_vec @ th


class RidgeForms:
    """Closed-form mini-batch derivatives of a ``ridge_ho`` instance (per-feature λ)."""

    def __init__(self, p) -> None:
        self.p = p

    def g_theta(self, th: Tensor, lam: Tensor, s: Tensor | None) -> Tensor:
        x, y = (self.p.x, self.p.y) if s is None else (self.p.x[s], self.p.y[s])
        return x.T @ (x @ th - y) / x.shape[0] + lam.exp() * th

    def hvp(self, th: Tensor, lam: Tensor, s: Tensor | None, v: Tensor) -> Tensor:
        x = self.p.x if s is None else self.p.x[s]
        return x.T @ (x @ v) / x.shape[0] + lam.exp() * v

    def mixed(self, th: Tensor, lam: Tensor, v: Tensor) -> Tensor:
        return lam.exp() * th * v

    def f_theta(self, th: Tensor, d: Tensor | None) -> Tensor:
        x, y = (self.p.x_val, self.p.y_val) if d is None else (self.p.x_val[d], self.p.y_val[d])
        return x.T @ (x @ th - y) / x.shape[0]


def scripted_ridge(registry, n: int = 24, features: int = 6, batch: int = 4, draws: int = 400):
    """A ridge_ho instance (n_train = n_val = n) whose samplers return pre-drawn index batches
    in order: ``p.inner_script[k]`` is the k-th inner batch handed out, ``p.outer_script[k]``
    the k-th outer one; ``p.drawn`` counts what was handed out per stream."""
    base = registry.problem("ridge_ho")

    class ScriptedRidge(base):
        name = ""  # test-only, unregistered

        def build(self, generator):
            super().build(generator)
            g = torch.Generator().manual_seed(1234)
            self.inner_script = [torch.randint(n, (batch,), generator=g) for _ in range(draws)]
            self.outer_script = [torch.randint(n, (batch,), generator=g) for _ in range(draws)]
            self.drawn = {"inner": 0, "outer": 0}

        def _next(self, stream: str) -> Tensor:
            k = self.drawn[stream]
            self.drawn[stream] = k + 1
            return (self.inner_script if stream == "inner" else self.outer_script)[k]

        def sample_inner_batch(self, generator):
            return self._next("inner")

        def sample_outer_batch(self, generator):
            return self._next("outer")

    return ScriptedRidge(seed=0, n_train=n, n_val=n, n_features=features)


def neumann_by_hand(hvps: list, b: Tensor, eta: float) -> Tensor:
    """η Σ_{q=0..Q} Π_{j=1..q} (I − η H_j) b for the products ``hvps`` = [H_1·, …, H_Q·]."""
    term, total = b.clone(), b.clone()
    for hvp in hvps:
        term = term - eta * hvp(term)
        total = total + term
    return eta * total


def start(problem, alg, lam: Tensor, theta: Tensor, seed: int = 0):
    """``alg``'s initial state at (θ, λ) (the given θ replaces the problem's θ₀)."""
    gen = torch.Generator().manual_seed(seed)
    state = alg.init(problem, theta.clone(), lam.clone(), gen)
    return state


def run_from_init(registry, problem, name: str, steps: int, seed: int = 0, **params):
    """The state after ``steps`` outer steps of entry ``name`` from the problem's (θ₀, λ₀)."""
    alg = registry.algorithm(name)(**params)
    gen = torch.Generator().manual_seed(seed)
    lam = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam, gen), lam, gen)
    for _ in range(steps):
        state = alg.step(problem, state)
    return state


def point(problem, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A random (λ, θ) of the problem's sizes."""
    return randn(problem.dim_outer, seed, 0.5), randn(problem.dim_inner, seed + 1)


def randn(n: int, seed: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed),
                               dtype=torch.float64)
