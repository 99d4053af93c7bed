"""The paper-scale problems on real data (hyperclean, large_n_ho, sparse_ho) at quick size,
float64: analytic oracles against autodiff of the problem's own losses, the CG ground truth
against finite differences of F(λ) = f(θ*(λ), λ), the implicit estimators against that
ground truth, and the size/dtype conventions."""

from __future__ import annotations

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error

from blobench.contracts.errors import NotApplicable
from blobench.toolkit.data import load

FASHION = load.status("fashion_mnist") is not None
needs_fashion = pytest.mark.skipif(
    not FASHION, reason="Fashion-MNIST missing (apt-get install dataset-fashion-mnist, or "
                        "blobench data fetch fashion_mnist)")

CASES = [pytest.param("hyperclean", {}, marks=needs_fashion),
         pytest.param("large_n_ho", {"penalty": "per_class"}, marks=needs_fashion),
         pytest.param("large_n_ho", {"penalty": "per_feature"}, marks=needs_fashion),
         ("sparse_ho", {})]
IDS = ["hyperclean", "large_n_ho-class", "large_n_ho-feature", "sparse_ho"]


def _point(registry, name, overrides, seed=0):
    prob = registry.problem(name)(size="quick", seed=seed, **overrides)
    g = torch.Generator().manual_seed(seed + 1)
    lam = prob.init_outer(g) + 0.5 * torch.randn(prob.dim_outer, generator=g,
                                                 dtype=torch.float64)
    theta = 0.1 * torch.randn(prob.dim_inner, generator=g, dtype=torch.float64)
    v = torch.randn(prob.dim_inner, generator=g, dtype=torch.float64)
    return prob, theta, lam, v


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=IDS)
@pytest.mark.parametrize("batched", [False, True])
def test_oracles_equal_autodiff(registry, name, overrides, batched):
    prob, theta, lam, v = _point(registry, name, overrides)
    batch = torch.tensor([0, 3, 3, 7, 11]) if batched else None
    t, lm = theta.clone().requires_grad_(True), lam.clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(prob.inner_loss(t, lm, batch), t, create_graph=True)
    hv, jv = torch.autograd.grad(gt, (t, lm), v)
    (ft,) = torch.autograd.grad(prob.outer_loss(t, lm, batch), t)
    f_theta, f_lam = prob.outer_grads_oracle(theta, lam, batch)
    for got, want in ((prob.inner_grad_oracle(theta, lam, batch), gt.detach()),
                      (prob.inner_hessian_operator(theta, lam, batch)(v), hv),
                      (prob.mixed_oracle(theta, lam, v, batch), jv), (f_theta, ft)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-13)
    assert float(f_lam.abs().max()) == 0.0
    assert torch.linalg.vector_norm(jv) > 0


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=IDS)
def test_ground_truth_equals_finite_differences_of_F(registry, name, overrides):
    prob, _, lam, _ = _point(registry, name, overrides)
    exact = prob.exact_hypergradient(lam)
    assert prob.gt_cg_residual <= 1e-10
    theta = prob.inner_solution(lam).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(prob.inner_loss(theta, lam), theta)  # θ* by autodiff's ∇g
    assert float(torch.linalg.vector_norm(g)) < 1e-9

    def value(at):
        with torch.no_grad():
            return float(prob.outer_loss(prob.inner_solution(at), at))

    gen = torch.Generator().manual_seed(7)
    eps = 1e-3  # truncation O(ε²) vs the noise of θ* (‖∇g‖ ≤ 1e-10) divided by ε
    for _ in range(2):
        d = torch.randn(prob.dim_outer, generator=gen, dtype=torch.float64)
        d /= torch.linalg.vector_norm(d)
        fd = (value(lam + eps * d) - value(lam - eps * d)) / (2 * eps)
        assert abs(float(exact @ d) - fd) <= 1e-6 * float(torch.linalg.vector_norm(exact))


@needs_fashion
@pytest.mark.parametrize("algorithm, params, tol", [
    ("implicit_cg", {"cg_steps": 200}, 1e-6),
    ("neumann", {"terms": 2000}, 1e-4),
])
def test_implicit_estimators_match_ground_truth_on_quick_cleaning(registry, algorithm, params,
                                                                   tol):
    prob = registry.problem("hyperclean")(size="quick", seed=1)
    lam = 0.5 * torch.randn(prob.dim_outer, generator=torch.Generator().manual_seed(3),
                            dtype=torch.float64)
    est, exact = hypergrad_after_one_step(registry, prob, algorithm, lam, warm_start=False,
                                          inner_steps=4000, **params)
    assert rel_error(est, exact) < tol
    assert rel_error(-est, exact) > 1.0  # a sign error is far outside
    assert rel_error(torch.zeros_like(exact), exact) == 1.0


@pytest.mark.parametrize(("name", "overrides"), CASES[:2], ids=IDS[:2])
def test_float32_ground_truth_is_solved_on_the_float64_twin(registry, name, overrides):
    """A float32 instance's θ*(λ) and dF/dλ come from its float64 twin (hyperclean /
    large_n_ho docstrings): float32 answers, a ‖∇_θ g‖ float32 Newton cannot reach (its
    rounding floor is ~1e-6 here, ~3e-4 at full size), and the float64 instance's values."""
    wide, _, lam, _ = _point(registry, name, overrides)
    narrow = registry.problem(name)(size="quick", seed=0, dtype="float32", **overrides)
    lam32 = lam.float()
    theta, exact = narrow.inner_solution(lam32), narrow.exact_hypergradient(lam32)
    assert theta.dtype == exact.dtype == torch.float32
    assert narrow.gt_inner_grad_norm <= 1e-8 and narrow.gt_cg_residual <= 1e-6
    # same answer as the float64 instance up to the float32 rounding of the data and of λ
    torch.testing.assert_close(theta.double(), wide.inner_solution(lam32.double()),
                               rtol=1e-4, atol=1e-6)
    want = wide.exact_hypergradient(lam32.double())
    assert rel_error(exact.double(), want) < 1e-4
    assert rel_error(-exact.double(), want) > 1.0
    # the twin is built once and shares nothing mutable with the instance's tensors
    assert narrow.float64_twin() is narrow.float64_twin() and narrow.x.dtype == torch.float32
    assert wide.float64_twin() is wide


@needs_fashion
def test_corruption_and_detection(registry):
    prob = registry.problem("hyperclean")(size="quick", seed=0, corruption=0.7)
    assert int(prob.corrupted.sum()) == round(0.7 * prob.n_inner_samples)
    clean = registry.problem("hyperclean")(size="quick", seed=0, corruption=0.0)
    # same seed, same split: the corrupted labels are exactly the changed ones
    changed = prob.y != clean.y
    assert torch.equal(changed, prob.corrupted)
    lam = torch.where(prob.corrupted, -5.0, 5.0).double()
    metrics = prob.evaluate(prob.init_inner(lam, None), lam)
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0


def test_float32_everywhere_and_exact_declines_large_sizes(registry):
    prob = registry.problem("sparse_ho")(size="quick", dtype="float32", n_features=6000)
    lam = prob.init_outer(None)
    theta = prob.init_inner(lam, None)
    assert lam.dtype == theta.dtype == prob.x.dtype == torch.float32
    assert prob.inner_loss(theta, lam).dtype == torch.float32
    assert prob.exact_hypergradient(lam).dtype == torch.float32
    assert prob.gt_cg_residual <= 1e-4
    exact = registry.algorithm("exact")()
    with pytest.raises(NotApplicable, match="6000"):
        exact.init(prob, theta, lam, torch.Generator())


def test_sparse_synthetic_is_seeded_and_20news_shaped(registry):
    cls = registry.problem("sparse_ho")
    assert cls.sizes["full"]["n_features"] == 130107
    a, b = cls(size="quick", seed=4), cls(size="quick", seed=4)
    assert a.x.layout == torch.sparse_csr
    assert torch.equal(a.x.values(), b.x.values()) and torch.equal(a.y, b.y)
    assert not torch.equal(cls(size="quick", seed=5).y, a.y)
    norms = torch.zeros(a.x.shape[0], dtype=torch.float64).index_add_(
        0, torch.repeat_interleave(torch.arange(a.x.shape[0]), a.x.crow_indices().diff()),
        a.x.values() ** 2)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # tf-idf rows, ℓ2-normalized
