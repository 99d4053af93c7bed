"""``blobench check`` claims of ma_soba, nystrom, pzobo, sama (issue 21 entries).

Expected values by hand on the tiny ``coupled_quadratic`` (``check_claims._Tiny``: closed-form
∇f, ∇_θ g, J = −Bᵀ), never by the entry under test; each claim also fails for a mutant."""

from __future__ import annotations

import sys

import pytest
import torch

from blobench.workflows import check, check_claims


@pytest.fixture(scope="module")
def tiny(registry):
    return check_claims._Tiny(registry)


def test_ma_soba_records_the_estimate_at_the_current_point(registry, tiny):
    """state.hypergrad = D_λ = ∇_λ f + J v_k at (θ_k, v_k, λ_k), not the lagged average."""
    gamma = 0.05
    alg = registry.algorithm("ma_soba")(outer_lr=gamma)  # constant steps (the default)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(tiny.p, tiny.p.init_inner(tiny.lam, gen), tiny.lam.clone(), gen)
    for k in range(4):
        theta, v, lam = state.theta.clone(), state.extra["v"].clone(), state.lam.clone()
        h = state.extra["h"].clone()
        state = alg.step(tiny.p, state)
        _, f_lam = tiny.grad_f(theta, lam)
        expected = f_lam - tiny.p.b_mat.T @ v
        assert torch.allclose(state.hypergrad, expected, rtol=1e-12, atol=1e-12), k
        assert torch.allclose(state.hypergrad_at, lam)
        assert torch.allclose(state.lam, lam - gamma * h, rtol=1e-12, atol=1e-12), k
    assert not torch.allclose(state.extra["h"], state.hypergrad)  # the average lags


def test_sama_direction_by_hand_and_mutant(registry, monkeypatch):
    cls = registry.algorithm("sama")
    assert check_claims.entry_kind(cls, "sama") == "approximation"
    ok, detail = check_claims.check_approximation(cls, registry, cls.approximation)
    assert ok, detail
    module = sys.modules[cls.__module__]
    monkeypatch.setattr(module, "preconditioner",  # Adam's state ignored: P = η
                        lambda opt, leaf, lr: torch.full_like(leaf, lr))
    ok, detail = check_claims.check_approximation(cls, registry, cls.approximation)
    assert not ok, detail


def test_sama_adam_preconditioner_guarded_where_no_gradient(registry):
    """A coordinate whose gradient was always 0 (v̂ = 0) gets η, not η/ε; others η/(√v̂+ε)."""
    module = sys.modules[registry.algorithm("sama").__module__]
    leaf = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([leaf], lr=1.0)
    for _ in range(3):
        leaf.grad = torch.tensor([0.5, 0.0], dtype=torch.float64)
        opt.step()
    p = module.preconditioner(opt, leaf, 0.1)
    # v̂ of a constant gradient 0.5 is 0.25 exactly (bias correction)
    assert float(p[0]) == pytest.approx(0.1 / (0.5 + 1e-8), rel=1e-12)
    assert float(p[1]) == pytest.approx(0.1)


def _flip_nystrom(registry, monkeypatch):
    module = sys.modules[registry.algorithm("nystrom").__module__]
    solve = module.nystrom_solve
    monkeypatch.setattr(module, "nystrom_solve", lambda *a: -solve(*a))


def test_cosine_at_the_converged_knob_and_descent_at_defaults(registry, monkeypatch):
    cls = registry.algorithm("nystrom")
    findings = check._hypergradient_findings(registry, cls, "coupled_quadratic", 20)
    assert [f.check for f in findings] == [
        "hypergradient vs exact (coupled_quadratic, rank=1000, damping=0.001)",
        "F decreases at defaults (coupled_quadratic)"]
    assert all(f.passed for f in findings), findings
    _flip_nystrom(registry, monkeypatch)  # −H⁻¹: the implicit term with the wrong sign
    findings = check._hypergradient_findings(registry, cls, "coupled_quadratic", 20)
    assert not findings[0].passed, findings


@pytest.mark.slow
def test_pzobo_converges_in_its_directions(registry, monkeypatch):
    cls = registry.algorithm("pzobo")
    ok, detail = check_claims.check_knob(cls, registry, cls.check_knob)
    assert ok, detail
    module = sys.modules[cls.__module__]
    smoothed = module.smoothed_vjp
    monkeypatch.setattr(module, "smoothed_vjp", lambda *a: -smoothed(*a))
    ok, detail = check_claims.check_knob(cls, registry, cls.check_knob)
    assert not ok, detail


def test_list_variants_counts_only_accepted_combinations(registry):
    from blobench.cli import _variants

    count, axes = _variants(registry.algorithm("sama"))
    # warm_start × outer_optimizer × base_optimizer = 8, less the 4 cold starts sama rejects
    assert axes == ["warm_start(2)", "outer_optimizer(2)", "base_optimizer(2)"]
    assert count == 4
