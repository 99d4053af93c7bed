"""Analytic oracles (Problem.inner_grad_oracle / inner_hessian_operator / mixed_oracle /
outer_grads_oracle) against autodiff of the problem's own losses, and the engine's fast paths
(in-place CG / Neumann / fixed point, oracle-backed InnerDerivatives, unroll through oracle
gradients) against the autodiff paths they replace."""

from __future__ import annotations

import pytest
import torch

from blobench import autodiff
from blobench.contracts.problem import Problem
from blobench.execution.registry import get_registry

REG = get_registry()
CASES = [("ridge_ho", {}), ("ridge_ho", {"per_feature": False}), ("logreg_ho", {})]


def _point(name: str, overrides: dict, seed: int = 0):
    prob = REG.problem(name)(size="quick", seed=seed, **overrides)
    g = torch.Generator().manual_seed(seed + 1)
    lam = 0.5 * torch.randn(prob.dim_outer, generator=g, dtype=torch.float64) - 1.0
    theta = torch.randn(prob.dim_inner, generator=g, dtype=torch.float64)
    v = torch.randn(prob.dim_inner, generator=g, dtype=torch.float64)
    return prob, theta, lam, v


def _autodiff(prob, theta, lam, v, batch=None):
    theta, lam = theta.clone().requires_grad_(True), lam.clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(prob.inner_loss(theta, lam, batch), theta, create_graph=True)
    hv, jv = torch.autograd.grad(gt, (theta, lam), v)
    ft, fl = torch.autograd.grad(prob.outer_loss(theta, lam, batch), (theta, lam),
                                 allow_unused=True)
    fl = torch.zeros_like(lam) if fl is None else fl
    return gt.detach(), hv, jv, ft, fl


@pytest.mark.parametrize(("name", "overrides"), CASES)
@pytest.mark.parametrize("batched", [False, True])
def test_oracles_equal_autodiff(name, overrides, batched):
    prob, theta, lam, v = _point(name, overrides)
    batch = torch.tensor([0, 3, 3, 7, 11]) if batched else None
    gt, hv, jv, ft, fl = _autodiff(prob, theta, lam, v, batch)
    o_theta, o_lam = prob.outer_grads_oracle(theta, lam, batch)
    for got, want in ((prob.inner_grad_oracle(theta, lam, batch), gt),
                      (prob.inner_hessian_operator(theta, lam, batch)(v), hv),
                      (prob.mixed_oracle(theta, lam, v, batch), jv),
                      (o_theta, ft), (o_lam, fl)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert torch.linalg.vector_norm(hv) > 0 and torch.linalg.vector_norm(jv) > 0


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_engine_uses_oracles_and_matches_autodiff_path(name, overrides, monkeypatch):
    prob, theta, lam, v = _point(name, overrides)
    gt, hv, jv, _, _ = _autodiff(prob, theta, lam, v)
    ops = autodiff.InnerDerivatives(prob, theta, lam)
    assert ops._grad is None  # every product has an oracle: no double-backward graph built
    torch.testing.assert_close(ops.hvp(v), hv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ops.mixed(v), jv, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ops.grad, gt, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(autodiff.inner_grad(prob, theta, lam), gt, rtol=1e-10,
                               atol=1e-12)
    # the hypergradient (CG) and the unrolled hypergradient with and without oracles
    lr = prob.inner_step_size(lam)
    theta_t = autodiff.gradient_descent(prob, theta, lam, 30, lr)

    def both():
        hg, _ = autodiff.implicit_hypergradient(
            prob, theta_t, lam, lambda o, b: autodiff.cg(o.hvp, b, 15))
        lam_ = lam.clone().requires_grad_(True)
        unrolled = autodiff.outer_hypergradient(
            prob, autodiff.unroll(prob, theta, lam_, 20, lr), lam_)
        return hg, unrolled

    fast = both()
    for hook in autodiff._ORACLES:
        monkeypatch.setattr(type(prob), hook, lambda *a, **k: NotImplemented)
    slow = both()
    for a, b in zip(fast, slow, strict=True):
        assert torch.linalg.vector_norm(b) > 1e-6
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_cg_hypergradient_with_oracles_matches_exact():
    prob, _, lam, _ = _point("logreg_ho", {})
    theta = prob.inner_solution(lam)
    hg, _ = autodiff.implicit_hypergradient(prob, theta, lam,
                                            lambda o, b: autodiff.cg(o.hvp, b, 200, tol=1e-14))
    exact = prob.exact_hypergradient(lam)
    assert float(torch.linalg.vector_norm(hg - exact) / torch.linalg.vector_norm(exact)) < 1e-8


def test_in_place_solvers_equal_reference_and_stay_differentiable():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = m @ m.T / 12 + torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x = autodiff.cg(lambda u: a @ u, b, 40, tol=1e-14)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-11)
    alpha = 1.0 / float(torch.linalg.eigvalsh(a)[-1])
    ref, term = b.clone(), b.clone()
    for _ in range(25):
        term = term - alpha * (a @ term)
        ref = ref + term
    torch.testing.assert_close(autodiff.neumann(lambda u: a @ u, b, 25, alpha), alpha * ref)
    # K fixed-point steps from 0 = the series with K terms, i.e. K − 1 Neumann terms after b
    torch.testing.assert_close(autodiff.fixed_point(lambda u: a @ u, b, 26, alpha), alpha * ref)
    # a graph through the matrix: the out-of-place path keeps d x / d A
    a_ = a.clone().requires_grad_(True)
    for solver in (lambda: autodiff.cg(lambda u: a_ @ u, b, 40, tol=1e-14),
                   lambda: autodiff.neumann(lambda u: a_ @ u, b, 400, alpha),
                   lambda: autodiff.fixed_point(lambda u: a_ @ u, b, 400, alpha)):
        (grad_a,) = torch.autograd.grad(solver().sum(), a_)
        xs = torch.linalg.solve(a, b)
        w = torch.linalg.solve(a, torch.ones(12, dtype=torch.float64))
        # CG assumes A symmetric: compare derivatives along symmetric perturbations of A
        want = -torch.outer(w, xs)
        torch.testing.assert_close(grad_a + grad_a.T, want + want.T, rtol=1e-6, atol=1e-8)
    # CG's inputs are not modified
    b0 = b.clone()
    x0 = torch.ones(12, dtype=torch.float64)
    autodiff.cg(lambda u: a @ u, b, 5, x0=x0)
    assert torch.equal(b, b0) and torch.equal(x0, torch.ones(12, dtype=torch.float64))


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_reverse_unroll_equals_autograd_through_every_step(name, overrides, monkeypatch):
    """The adjoint recursion of _ReverseUnroll gives autograd's numbers, also with mini-batches
    and a θ₀ that depends on λ (the gradient reaches θ₀'s own graph), and counts the same
    oracle calls."""
    prob, theta, lam, _ = _point(name, {**overrides, "batch_size": 7})
    lr = prob.inner_step_size(lam)
    scale = torch.linspace(0.5, 1.5, prob.dim_inner, dtype=torch.float64)

    def hypergradient():
        autodiff.oracle_counts.clear()
        gen = torch.Generator().manual_seed(3)
        lam_ = lam.clone().requires_grad_(True)
        theta0 = theta + scale * lam_.sum()  # θ₀(λ): exercises the gradient w.r.t. θ₀
        theta_t = autodiff.unroll(prob, theta0, lam_, 12, lr,
                                  sample=lambda: prob.sample_inner_batch(gen))
        hg = autodiff.outer_hypergradient(prob, theta_t, lam_)
        return theta_t, hg, dict(autodiff.oracle_counts)

    theta_fast, hg_fast, counts_fast = hypergradient()
    assert type(theta_fast.grad_fn).__name__ == "_ReverseUnrollBackward"
    monkeypatch.setattr(autodiff.derivatives, "_oracle_cache", {})
    monkeypatch.setattr(type(prob), "inner_hessian_operator", Problem.inner_hessian_operator)
    theta_slow, hg_slow, counts_slow = hypergradient()
    assert type(theta_slow.grad_fn).__name__ != "_ReverseUnrollBackward"
    torch.testing.assert_close(theta_fast, theta_slow, rtol=1e-12, atol=1e-14)
    assert torch.linalg.vector_norm(hg_slow) > 1e-6
    torch.testing.assert_close(hg_fast, hg_slow, rtol=1e-9, atol=1e-13)
    assert counts_fast == counts_slow


def test_reverse_unroll_catches_a_wrong_adjoint(monkeypatch):
    """Guard on the guard: a reverse pass with +η H (a sign error) or without the mixed term
    gives a different hypergradient, so the comparison above would catch either."""
    prob, theta, lam, _ = _point("logreg_ho", {})
    lr = prob.inner_step_size(lam)

    def hypergradient():
        lam_ = lam.clone().requires_grad_(True)
        return autodiff.outer_hypergradient(prob, autodiff.unroll(prob, theta, lam_, 12, lr),
                                            lam_)

    good = hypergradient()
    original = type(prob).inner_hessian_operator

    def flipped(self, theta, lam, batch=None):
        op = original(self, theta, lam, batch)
        return lambda v: -op(v)

    monkeypatch.setattr(type(prob), "inner_hessian_operator", flipped)
    bad_hessian = hypergradient()
    monkeypatch.setattr(type(prob), "inner_hessian_operator", original)
    monkeypatch.setattr(type(prob), "mixed_oracle", lambda self, theta, lam, v, batch=None:
                        torch.zeros_like(lam))
    bad_mixed = hypergradient()
    for bad in (bad_hessian, bad_mixed):
        assert float(torch.linalg.vector_norm(bad - good) / torch.linalg.vector_norm(good)) > 1e-3
