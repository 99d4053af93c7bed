"""Meta-learning problems (sinusoid, fewshot_digits) and algorithms (maml, fomaml, reptile, imaml).

The algorithms are checked against closed forms on a linear meta-learning problem with
quadratic task losses, where every meta-gradient can be written by hand:

    support loss  L_i(w) = ½ wᵀA_i w − b_iᵀw,    query loss  Q_i(w) = ½ wᵀC_i w − d_iᵀw
    g(θ, λ) = Σ_i L_i(θ_i) + (ρ/2) Σ_i ‖θ_i − λ‖²,   f(θ, λ) = (1/n) Σ_i Q_i(θ_i)

T gradient steps of size α from θ₀ = λ (ρ = 0) give θ_i = M_iᵀ... with M_i = I − αA_i:
θ_i = M_i^T λ + Σ_{t<T} M_i^t α b_i, so dF/dλ = (1/n) Σ_i (M_i^T)ᵀ ∇Q_i(θ_i) (MAML) while
first-order MAML keeps (1/n) Σ_i ∇Q_i(θ_i). With ρ > 0 the inner minimizer is
θ_i* = (A_i + ρI)⁻¹(b_i + ρλ) and the implicit meta-gradient is
(1/n) Σ_i ρ (A_i + ρI)⁻¹ ∇Q_i(θ_i*) (iMAML).
"""

from __future__ import annotations

import pytest
import torch

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Problem
from blobench.execution.registry import get_registry

N_TASKS, DIM = 3, 4
META = ("maml", "fomaml", "reptile", "imaml")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def reg():
    return get_registry()


class LinearMeta(Problem):
    """The closed-form test problem of the module docstring (not a registered entry)."""

    name = "linear_meta_test"
    params = {"proximal": Param(float, 0.0, "ρ", low=0.0)}
    inner_init_is_outer = True

    def build(self, generator):
        def spd(scale):
            q, _ = torch.linalg.qr(torch.randn(DIM, DIM, generator=generator,
                                               dtype=torch.float64))
            eig = 0.5 + scale * torch.rand(DIM, generator=generator, dtype=torch.float64)
            return (q * eig) @ q.T

        def vec():
            return torch.randn(DIM, generator=generator, dtype=torch.float64)

        self.a = torch.stack([spd(1.5) for _ in range(N_TASKS)])
        self.b = torch.stack([vec() for _ in range(N_TASKS)])
        self.c = torch.stack([spd(1.0) for _ in range(N_TASKS)])
        self.d = torch.stack([vec() for _ in range(N_TASKS)])

    dim_inner = N_TASKS * DIM
    dim_outer = DIM

    def inner_loss(self, theta, lam, batch=None):
        w = theta.view(N_TASKS, DIM)
        loss = 0.5 * torch.einsum("ti,tij,tj->", w, self.a, w) - (self.b * w).sum()
        return loss + 0.5 * self.config["proximal"] * ((w - lam) ** 2).sum()

    def outer_loss(self, theta, lam, batch=None):
        w = theta.view(N_TASKS, DIM)
        return (0.5 * torch.einsum("ti,tij,tj->", w, self.c, w) - (self.d * w).sum()) / N_TASKS

    def init_outer(self, generator):
        return torch.randn(DIM, generator=generator, dtype=torch.float64)

    def init_inner(self, lam, generator):
        return lam.repeat(N_TASKS)

    def evaluate(self, theta, lam):
        return {"test_loss": 0.0}

    # ---- closed forms
    def query_grad(self, w):
        return torch.einsum("tij,tj->ti", self.c, w) - self.d

    def gd_path(self, lam, steps, lr):
        """θ_i after T steps from λ and the Jacobians M_i^T (ρ = 0)."""
        eye = torch.eye(DIM, dtype=torch.float64)
        m = eye - lr * self.a
        w = lam.expand(N_TASKS, DIM).clone()
        jac = eye.expand(N_TASKS, DIM, DIM).clone()
        for _ in range(steps):
            w = torch.einsum("tij,tj->ti", m, w) + lr * self.b
            jac = m @ jac
        return w, jac


def _one_step(alg, prob, lam):
    g = torch.Generator().manual_seed(0)
    st = alg.init(prob, prob.init_inner(lam, g), lam, g)
    return alg.step(prob, st)


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_and_fomaml_match_closed_form(reg, steps):
    prob = LinearMeta(seed=0)
    lam = prob.init_outer(torch.Generator().manual_seed(1))
    lr = 0.1
    w, jac = prob.gd_path(lam, steps, lr)
    gq = prob.query_grad(w)
    exact = torch.einsum("tji,tj->i", jac, gq) / N_TASKS  # (1/n) Σ (M_i^T)ᵀ ∇Q_i
    first = gq.sum(0) / N_TASKS
    maml = _one_step(reg.algorithm("maml")(inner_steps=steps, inner_lr=lr), prob, lam)
    fo = _one_step(reg.algorithm("fomaml")(inner_steps=steps, inner_lr=lr), prob, lam)
    assert torch.allclose(maml.hypergrad_at, lam)
    assert torch.allclose(maml.hypergrad, exact, rtol=0, atol=1e-10)
    assert torch.allclose(fo.hypergrad, first, rtol=0, atol=1e-10)
    # the second-order term is not negligible here: a first-order maml would fail above
    assert torch.linalg.vector_norm(exact - first) > 0.05 * torch.linalg.vector_norm(exact)
    assert torch.allclose(maml.theta.view(N_TASKS, DIM), w, atol=1e-12)


def test_imaml_matches_implicit_closed_form(reg):
    rho = 2.0
    prob = LinearMeta(seed=0, proximal=rho)
    lam = prob.init_outer(torch.Generator().manual_seed(1))
    eye = torch.eye(DIM, dtype=torch.float64)
    h = prob.a + rho * eye
    w_star = torch.linalg.solve(h, (prob.b + rho * lam).unsqueeze(-1)).squeeze(-1)
    exact = rho * torch.linalg.solve(h, prob.query_grad(w_star).unsqueeze(-1)).squeeze(-1)
    exact = exact.sum(0) / N_TASKS
    lr = 1.0 / float(torch.linalg.eigvalsh(h).max())
    alg = reg.algorithm("imaml")(inner_steps=400, inner_lr=lr, cg_steps=N_TASKS * DIM)
    st = _one_step(alg, prob, lam)
    assert torch.allclose(st.theta.view(N_TASKS, DIM), w_star, atol=1e-10)
    assert torch.allclose(st.hypergrad, exact, rtol=0, atol=1e-10)
    # not the first-order value, and 5 CG steps (the default) is not exact on 12 dimensions
    assert torch.linalg.vector_norm(prob.query_grad(w_star).mean(0) - exact) > 1e-2
    short = _one_step(reg.algorithm("imaml")(inner_steps=400, inner_lr=lr), prob, lam)
    assert torch.linalg.vector_norm(short.hypergrad - exact) > 1e-8


def test_imaml_needs_proximal_term(reg):
    prob = LinearMeta(seed=0)
    with pytest.raises(UserError, match="proximal"):
        _one_step(reg.algorithm("imaml")(), prob, prob.init_outer(torch.Generator()))


def test_reptile_update_is_its_definition(reg):
    prob = LinearMeta(seed=0)
    lam = prob.init_outer(torch.Generator().manual_seed(1))
    steps, lr, eps = 4, 0.1, 0.3
    w, _ = prob.gd_path(lam, steps, lr)
    alg = reg.algorithm("reptile")(inner_steps=steps, inner_lr=lr, outer_lr=eps)
    st = _one_step(alg, prob, lam)
    assert torch.allclose(st.hypergrad, lam - w.mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(st.lam, lam + eps * (w.mean(0) - lam), rtol=0, atol=1e-12)


def test_not_applicable_and_cold_start_only(reg):
    for alg_name in META:
        alg = reg.algorithm(alg_name)()
        for prob_name in ("ridge_ho", "quadratic"):
            reason = alg.applies_to(reg.problem(prob_name))
            assert reason and "does not depend on λ" in reason
        for prob_name in ("sinusoid", "fewshot_digits"):
            assert alg.applies_to(reg.problem(prob_name)) is None
    for alg_name in ("maml", "fomaml", "reptile"):
        with pytest.raises(UserError, match="cold start"):
            reg.algorithm(alg_name)(warm_start=True)


@pytest.mark.parametrize("name", ["sinusoid", "fewshot_digits"])
def test_problem_deterministic_scalar_and_vmap(reg, name):
    cls = reg.problem(name)
    p1, p2, p3 = cls(seed=3, n_tasks=4), cls(seed=3, n_tasks=4), cls(seed=4, n_tasks=4)
    assert all(torch.equal(a, b) for a, b in zip(p1.support, p2.support, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(p1.test_query, p2.test_query, strict=True))
    assert not torch.equal(p1.query[0], p3.query[0])
    lam = p1.init_outer(torch.Generator().manual_seed(0))
    assert torch.equal(lam, p2.init_outer(torch.Generator().manual_seed(0)))
    assert lam.shape == (p1.dim_outer,)
    theta = p1.init_inner(lam, torch.Generator())
    assert theta.shape == (p1.dim_inner,)
    theta = theta + 0.1 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=theta.dtype)
    g, f = p1.inner_loss(theta, lam), p1.outer_loss(theta, lam)
    assert g.shape == () and f.shape == ()
    per_task = theta.view(4, -1)
    loop_g = sum(p1.task_loss(per_task[i], p1.support[0][i], p1.support[1][i]) for i in range(4))
    loop_f = sum(p1.task_loss(per_task[i], p1.query[0][i], p1.query[1][i])
                 for i in range(4)) / 4
    assert torch.allclose(g, loop_g, rtol=1e-12) and torch.allclose(f, loop_f, rtol=1e-12)
    # the proximal term is (ρ/2) Σ ‖θ_i − λ‖²
    prox = cls(seed=3, n_tasks=4, proximal=2.0)
    extra = ((per_task - lam) ** 2).sum()
    assert torch.allclose(prox.inner_loss(theta, lam), g + extra, rtol=1e-12)
    metrics = p1.evaluate(theta, lam)
    assert p1.primary_metric in metrics and p1.evaluate(theta, lam) == metrics


def test_digits_rejects_impossible_way():
    reg = get_registry()
    with pytest.raises(UserError, match="n_way"):
        reg.problem("fewshot_digits")(n_way=5, n_test_classes=4)


def test_maml_reduces_sinusoid_meta_test_mse(reg):
    prob = reg.problem("sinusoid")(seed=0, n_test_tasks=50)
    g = torch.Generator().manual_seed(0)
    lam0 = prob.init_outer(g)
    before = prob.evaluate(prob.init_inner(lam0, g), lam0)["test_mse"]
    alg = reg.algorithm("maml")()
    st = alg.init(prob, prob.init_inner(lam0, g), lam0, g)
    for _ in range(30):
        st = alg.step(prob, st)
    after = prob.evaluate(st.theta, st.lam)["test_mse"]
    assert after < 0.97 * before


def test_imaml_applies_to_with_cell_params(reg):
    alg, cls = reg.algorithm("imaml")(), reg.problem("sinusoid")
    assert "proximal" in alg.applies_to(cls, {"proximal": 0.0})
    assert alg.applies_to(cls, {"proximal": 2.0}) is None


def test_flatmodel_roundtrip_and_init():
    from torch import nn

    from blobench.toolkit.flatmodel import FlatModel, mlp

    net = mlp([3, 5, 2], nn.Tanh).double()
    model = FlatModel(net)
    assert model.numel == 3 * 5 + 5 + 5 * 2 + 2
    flat = model.flatten()
    x = torch.randn(7, 3, dtype=torch.float64)
    assert torch.allclose(model(flat, x), net(x))
    w1 = model.init(torch.Generator().manual_seed(0))
    assert torch.equal(w1, model.init(torch.Generator().manual_seed(0)))
    parts = model.unflatten(w1)
    assert parts["0.weight"].abs().max() <= 3 ** -0.5 and parts["2.bias"].abs().max() <= 5 ** -0.5
    assert parts["2.weight"].abs().max() > 0.5 * 5 ** -0.5  # not a degenerate init


def test_init_only_problems_skip_algorithms_whose_hypergradient_is_zero(reg):
    """On sinusoid without a proximal term λ only sets θ₀: methods that do not differentiate
    through θ₀ would compute exactly zero (checked), so planning skips them with the reason;
    with ρ > 0 they run (darts_fd used to crash there: ∇_λ g of a λ-free loss)."""
    cls = reg.problem("sinusoid")
    zero = {"proximal": 0.0}
    for name in ("implicit_cg", "darts_fd", "penalty", "neumann"):
        assert "θ's initialization" in reg.algorithm(name)().skip_reason(cls, zero)
        assert reg.algorithm(name)().skip_reason(cls, {"proximal": 2.0}) is None
    assert "θ's initialization" in reg.algorithm("unrolled")(warm_start=True).skip_reason(
        cls, zero)
    assert "θ's initialization" in reg.algorithm("truncated")(
        inner_steps=5, truncation=2).skip_reason(cls, zero)
    for alg in (reg.algorithm("unrolled")(), reg.algorithm("bda")(),
                reg.algorithm("truncated")(inner_steps=5, truncation=5),
                reg.algorithm("maml")(), reg.algorithm("reptile")()):
        assert alg.skip_reason(cls, zero) is None, alg.name
    # the rule is true: the skipped hypergradients are zero, the kept one is not
    prob = cls(seed=0, n_tasks=3)
    lam = prob.init_outer(torch.Generator().manual_seed(0))
    for name, params in (("implicit_cg", {}), ("darts_fd", {}), ("unrolled", {})):
        st = _one_step(reg.algorithm(name)(inner_steps=3, **params), prob, lam)
        norm = float(torch.linalg.vector_norm(st.hypergrad))
        assert (norm > 1e-6) == (name == "unrolled"), (name, norm)
    # with a proximal term darts_fd's finite-difference mixed product is the real one
    prox = cls(seed=0, n_tasks=3, proximal=2.0)
    st = _one_step(reg.algorithm("darts_fd")(), prox, lam)
    assert float(torch.linalg.vector_norm(st.hypergrad)) > 1e-6
    # planning reports the skip with its reason
    from blobench.execution.harness import plan

    cells, skipped = plan(reg, ["sinusoid"], ["implicit_cg", "maml"], [0])
    assert [c.algorithm for c in cells] == ["maml"]
    assert any("θ's initialization" in reason for _, _, reason in skipped)
