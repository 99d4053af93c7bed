"""Issue 22: the non-convex lower level ``nonconvex_doublewell`` — ground truth by enumeration
of S(λ), and the fraction of seeds on which a method reaches the global bilevel optimum.

Fractions measured at quick size (n = 2), 10 seeds (θ₀ drawn by the seed), 100 outer steps
at defaults (`pytest -s` prints them): unrolled 4/10, iaptt_gm 4/10, bamm 4/10, bvfsm 10/10.
The basin argument of the problem's docstring (every y₀ᵢ > 0) predicts 3/10 for methods that
follow the well θ₀ starts in — seed 4 has y₀₁ = −0.07, next to the barrier, and leaves the
wrong basin before the well is reached; on the seeds with every |y₀ᵢ| > 0.25 the prediction is
asserted exactly. BVFSM does not follow the basin: its relaxed level set {g ≤ φ_μ + ε_k} contains
the barrier while ε_k exceeds its height (¼ per coordinate; ε₀ = 1), so f picks the well before
ε_k shrinks. Every run ends at one of the 2ⁿ branch minima of φ (asserted).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from blobench.bases.algorithm import cell_theta0

SEEDS = range(10)


def brute_force_value(problem, lam: torch.Tensor) -> float:
    """min of f over S(λ) = Π{λᵢ ± 1}, enumerated (2ⁿ points), and checked to be minimizers."""
    best = float("inf")
    for signs in itertools.product((-1.0, 1.0), repeat=problem.dim_outer):
        theta = lam + torch.tensor(signs)
        assert float(problem.inner_loss(theta, lam)) < 1e-30  # g ≥ 0, so these are global
        best = min(best, float(problem.outer_loss(theta, lam)))
    return best


def test_ground_truth_by_enumeration(registry):
    problem = registry.problem("nonconvex_doublewell")(seed=0)
    for lam in (torch.tensor([0.1, -0.4]), torch.tensor([0.8, 0.2]), torch.tensor([1.3, -1.0])):
        assert abs(problem.value(lam) - brute_force_value(problem, lam)) < 1e-12
        exact, eps = problem.exact_hypergradient(lam), 1e-6
        fd = torch.tensor([(brute_force_value(problem, lam + eps * e)
                            - brute_force_value(problem, lam - eps * e)) / (2 * eps)
                           for e in torch.eye(2)])
        assert float((fd - exact).norm()) < 1e-6
    # the global bilevel optimum by a grid search of the enumerated φ (separable: 1-D grid)
    grid = torch.linspace(-2, 2, 4001)
    one = [brute_force_value(problem, torch.tensor([x, 0.0])) for x in grid]
    x_best = float(grid[min(range(len(one)), key=one.__getitem__)])
    assert abs(x_best - problem.x_plus) < 1e-3  # x⁺ = −¼ at quick
    assert abs(brute_force_value(problem, problem.lam_star) - problem.optimal_value()) < 1e-12
    # the spurious branch minimum x⁻ = ¾ is a local minimum of φ
    near = [brute_force_value(problem, torch.tensor([problem.x_minus + d, problem.x_plus]))
            for d in (-1e-3, 0.0, 1e-3)]
    assert near[1] < near[0] and near[1] < near[2]


def fraction_reached(registry, algorithm: str, steps: int = 100, **params):
    """Per seed: (reached the global optimum, the basin prediction, final λ)."""
    out = []
    for seed in SEEDS:
        problem = registry.problem("nonconvex_doublewell")(seed=seed)
        alg = registry.algorithm(algorithm)(**params)
        gen = torch.Generator().manual_seed(seed)
        lam0 = problem.init_outer(gen)
        state = alg.init(problem, cell_theta0(problem, lam0), lam0, gen)
        for _ in range(steps):
            state = alg.step(problem, state)
        out.append((problem.reached(state.lam), problem.predicted_global, state.lam, problem))
    return out


@pytest.mark.parametrize(("algorithm", "measured", "follows_basin"), [
    ("unrolled", 4, True), ("iaptt_gm", 4, True), ("bamm", 4, True),
    pytest.param("bvfsm", 10, False, marks=pytest.mark.slow)])  # bvfsm: 35 s at load 18
def test_fraction_of_seeds_reaching_the_global_optimum(registry, algorithm, measured,
                                                       follows_basin):
    runs = fraction_reached(registry, algorithm)
    reached = sum(r for r, *_ in runs)
    print(f"\n{algorithm}: {reached}/{len(runs)} seeds reach the global bilevel optimum "
          f"(basin prediction {sum(p for _, p, *_ in runs)}/{len(runs)})")
    assert reached == measured  # deterministic on CPU; the figure the docs report
    for ok, predicted, lam, problem in runs:
        # every run ends at a branch minimum: each coordinate at x⁺ or x⁻
        at_branch = torch.minimum((lam - problem.x_plus).abs(), (lam - problem.x_minus).abs())
        assert float(at_branch.max()) < 0.05, lam
        far_from_barrier = bool((problem.theta0.abs() > 0.25).all())
        if follows_basin and far_from_barrier:  # the basin argument decides
            assert ok == predicted, (lam, problem.theta0)
