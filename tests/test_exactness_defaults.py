"""Every default and schedule of the explicit, implicit, approximation and meta-learning
entries, against a hand-written computation (issue 26).

One outer step of each entry at its defaults (and with the user knobs the defaults replace:
``alpha`` of neumann / fixed_point, ``fd_radius`` of darts_fd) on the tiny ``coupled_quadratic``
(g = ½θᵀAθ − θᵀBλ − aᵀθ: H = A, J = −Bᵀ; f with the θ–λ cross term), compared with the same
step computed in this file from the problem's matrices: inner iterates θ ← θ − η(Aθ − Bλ − a),
the tangent Z = dθ/dλ carried forward by hand, CG / Neumann / fixed-point / least-squares
iterations written out. Nothing here calls ``blobench.autodiff``. A changed default (exact's
100 inner steps, implicit_cg's 10 CG steps, iMAML's 5, Reptile's 5 adaptation steps and ε), an
ignored user α, an FD radius not divided by ‖v‖ each change these numbers far beyond the
tolerances.
"""

from __future__ import annotations

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error
from test_algorithms_explicit_implicit import _Curved

from blobench.contracts.params import Param
from blobench.contracts.problem import Problem

TINY = {"dim_theta": 8, "dim_lambda": 3, "n_outer": 10}


@pytest.fixture(scope="module")
def tiny(registry):
    return registry.problem("coupled_quadratic")(seed=2, **TINY)


@pytest.fixture(scope="module")
def lam(tiny):
    return 0.5 * torch.randn(tiny.dim_outer, generator=torch.Generator().manual_seed(11))


# ------------------------------------------------------------------ by-hand helpers
def _grads_f(p, theta, lam):
    m = p.c_mat.shape[0]
    return (p.c_mat.T @ (p.c_mat @ theta - p.c_vec) / m + p.d_mat @ lam,
            p.d_mat.T @ theta + p.rho * lam + p.e_vec)


def _inner(p, lam, steps, theta=None):
    theta = torch.zeros(p.dim_inner) if theta is None else theta
    eta = p.inner_step_size(lam)
    for _ in range(steps):
        theta = theta - eta * (p.a_mat @ theta - p.b_mat @ lam - p.a_vec)
    return theta


def _implicit(p, lam, theta, v):
    """∇_λ f − J v with J = −Bᵀ."""
    return _grads_f(p, theta, lam)[1] + p.b_mat.T @ v


def _cg(a, b, steps):
    x, r = torch.zeros_like(b), b.clone()
    d, rr = r.clone(), r @ r
    for _ in range(steps):
        ad = a @ d
        alpha = rr / (d @ ad)
        x, r = x + alpha * d, r - alpha * ad
        rr, rr_old = r @ r, rr
        d = r + (rr / rr_old) * d
    return x


def _unrolled(p, lam, steps, differentiated, alphas=None, upper=None):
    """(θ_T, dF_T/dλ) of T steps from θ₀ = 0; the tangent Z = dθ/dλ only over the last
    ``differentiated`` steps (truncation); ``alphas``: BDA's aggregation weights."""
    eta = p.inner_step_size(lam)
    m = p.c_mat.shape[0]
    theta, z = torch.zeros(p.dim_inner), torch.zeros(p.dim_inner, p.dim_outer)
    for t in range(steps):
        a_t = 0.0 if alphas is None else alphas[t]
        s_u = eta if upper is None else upper
        g = p.a_mat @ theta - p.b_mat @ lam - p.a_vec
        fg = _grads_f(p, theta, lam)[0]
        if t >= steps - differentiated:
            z = z - ((1 - a_t) * eta * (p.a_mat @ z - p.b_mat)
                     + a_t * s_u * (p.c_mat.T @ p.c_mat @ z / m + p.d_mat))
        theta = theta - ((1 - a_t) * eta * g + a_t * s_u * fg)
    f_theta, f_lam = _grads_f(p, theta, lam)
    return theta, f_lam + z.T @ f_theta


def _first_step(registry, p, name, lam, **params):
    """(direction, state) after one outer step from λ on a problem without ground truth."""
    alg = registry.algorithm(name)(**params)
    state = alg.init(p, p.init_inner(lam, None), lam.clone(), torch.Generator().manual_seed(0))
    state = alg.step(p, state)
    return state.hypergrad, state


# ------------------------------------------------------------------------ implicit
def test_exact_defaults_are_100_inner_steps_then_the_dense_solve(registry, tiny, lam):
    est, _ = hypergrad_after_one_step(registry, tiny, "exact", lam)
    theta = _inner(tiny, lam, 100)
    expected = _implicit(tiny, lam, theta, torch.linalg.solve(tiny.a_mat,
                                                               _grads_f(tiny, theta, lam)[0]))
    assert rel_error(est, expected) < 1e-10
    theta5 = _inner(tiny, lam, 5)
    five = _implicit(tiny, lam, theta5, torch.linalg.solve(tiny.a_mat,
                                                            _grads_f(tiny, theta5, lam)[0]))
    assert rel_error(five, expected) > 1e-3  # 5 steps would be far off


def test_implicit_cg_defaults_are_20_inner_and_10_cg_steps(registry, lam):
    # dim θ = 30 > 10 and κ = 100: ten CG steps do not solve the system exactly
    big = registry.problem("coupled_quadratic")(seed=2, dim_theta=30, dim_lambda=3,
                                                 n_outer=10, condition=100.0)
    est, _ = hypergrad_after_one_step(registry, big, "implicit_cg", lam)
    theta = _inner(big, lam, 20)
    b = _grads_f(big, theta, lam)[0]
    assert rel_error(est, _implicit(big, lam, theta, _cg(big.a_mat, b, 10))) < 1e-10
    assert rel_error(_cg(big.a_mat, b, 9), _cg(big.a_mat, b, 10)) > 1e-4  # k matters


@pytest.mark.parametrize("alpha", [None, 0.05])
def test_neumann_series_with_default_and_user_alpha(registry, tiny, lam, alpha):
    """v = α Σ_{j=0..K} (I − αH)^j ∇_θ f, K = 20, α = η by default (Lorraine et al. eq. 8)."""
    est, _ = hypergrad_after_one_step(registry, tiny, "neumann", lam, alpha=alpha)
    theta = _inner(tiny, lam, 20)
    b = _grads_f(tiny, theta, lam)[0]
    a = tiny.inner_step_size(lam) if alpha is None else alpha
    term, total = b.clone(), b.clone()
    for _ in range(20):
        term = term - a * tiny.a_mat @ term
        total = total + term
    assert rel_error(est, _implicit(tiny, lam, theta, a * total)) < 1e-10
    if alpha is not None:  # ignoring the user's α would give the default's numbers
        other, _ = hypergrad_after_one_step(registry, tiny, "neumann", lam)
        assert rel_error(other, est) > 1e-3


@pytest.mark.parametrize("alpha", [None, 0.05])
def test_fixed_point_with_default_and_user_alpha(registry, tiny, lam, alpha):
    """v_{k+1} = v_k − α(H v_k − ∇_θ f), K = 20 from v₀ = 0 (Grazzi et al. 2020)."""
    est, _ = hypergrad_after_one_step(registry, tiny, "fixed_point", lam, alpha=alpha)
    theta = _inner(tiny, lam, 20)
    b = _grads_f(tiny, theta, lam)[0]
    a = tiny.inner_step_size(lam) if alpha is None else alpha
    v = torch.zeros_like(b)
    for _ in range(20):
        v = v - a * (tiny.a_mat @ v - b)
    assert rel_error(est, _implicit(tiny, lam, theta, v)) < 1e-10
    if alpha is not None:
        other, _ = hypergrad_after_one_step(registry, tiny, "fixed_point", lam)
        assert rel_error(other, est) > 1e-3


def test_approxgrad_defaults_are_damped_least_squares_steps(registry, tiny, lam):
    """p ← p − lr (H + σI)((H + σI)p − ∇_θ f), 20 steps, σ = 1e-4, lr = (η/(1 + ησ))²."""
    est, _ = hypergrad_after_one_step(registry, tiny, "approxgrad", lam)
    theta = _inner(tiny, lam, 20)
    b = _grads_f(tiny, theta, lam)[0]
    eta, sigma = tiny.inner_step_size(lam), 1e-4
    damped = tiny.a_mat + sigma * torch.eye(tiny.dim_inner)
    lr = (eta / (1 + eta * sigma)) ** 2
    p = torch.zeros_like(b)
    for _ in range(20):
        p = p - lr * damped @ (damped @ p - b)
    assert rel_error(est, _implicit(tiny, lam, theta, p)) < 1e-10


# ------------------------------------------------------------------------ explicit
@pytest.mark.parametrize("algorithm, differentiated", [
    ("unrolled", 20), ("forward_mode", 20), ("truncated", 5)])
def test_explicit_defaults_are_the_hand_unrolled_derivative(registry, tiny, lam, algorithm,
                                                            differentiated):
    """T = 20 cold-started steps; truncated back-propagates through the last K = 5."""
    est, _ = hypergrad_after_one_step(registry, tiny, algorithm, lam)
    _, expected = _unrolled(tiny, lam, 20, differentiated)
    assert rel_error(est, expected) < 1e-10


def test_bda_defaults_aggregate_with_alpha_t_over_t_plus_one(registry, tiny, lam):
    """α_t = α₀/(t + 1), α₀ = 0.5, s_u = s_l = η, T = 20 (Liu et al. 2020, Alg. 1)."""
    est, _ = hypergrad_after_one_step(registry, tiny, "bda", lam)
    _, expected = _unrolled(tiny, lam, 20, 20, alphas=[0.5 / (t + 1) for t in range(20)])
    assert rel_error(est, expected) < 1e-10
    up, _ = hypergrad_after_one_step(registry, tiny, "bda", lam, upper_lr=0.02)
    _, expected = _unrolled(tiny, lam, 20, 20, alphas=[0.5 / (t + 1) for t in range(20)],
                            upper=0.02)
    assert rel_error(up, expected) < 1e-10


# ------------------------------------------------------------------- approximations
def test_one_step_alternating_and_darts_defaults_take_one_inner_step(registry, tiny, lam):
    theta = _inner(tiny, lam, 1)
    eta = tiny.inner_step_size(lam)
    f_theta, f_lam = _grads_f(tiny, theta, lam)
    one, _ = hypergrad_after_one_step(registry, tiny, "one_step", lam)
    assert rel_error(one, f_lam + eta * tiny.b_mat.T @ f_theta) < 1e-12
    alt, _ = hypergrad_after_one_step(registry, tiny, "alternating", lam)
    assert rel_error(alt, f_lam) < 1e-12
    darts, _ = hypergrad_after_one_step(registry, tiny, "darts_fd", lam)
    virtual = theta - eta * (tiny.a_mat @ theta - tiny.b_mat @ lam - tiny.a_vec)
    v, f_lam_v = _grads_f(tiny, virtual, lam)
    assert rel_error(darts, f_lam_v + eta * tiny.b_mat.T @ v) < 1e-9


class _FarTarget(_Curved):
    """_Curved (∇_λ g = e^λ ⊙ cosh θ, not polynomial in θ) with a distant target c, so that
    ‖v‖ = ‖θ' − c‖ > 1 and the FD radius ε₀/‖v‖ differs from ε₀."""

    def build(self, generator):
        super().build(generator)
        self.c = 3.0 * self.c

    def inner_step_size(self, lam):
        return 0.1


def test_darts_fd_radius_is_divided_by_the_norm_of_v(registry):
    """ε = ε₀/‖v‖ with v = ∇_θ' f(θ'), ε₀ = ``fd_radius`` (Liu et al. 2019, §2.3)."""
    p = _FarTarget(seed=0, d=4)
    lam = 0.3 * torch.randn(4, generator=torch.Generator().manual_seed(1))
    eps0, xi = 0.5, 0.1
    est, _ = _first_step(registry, p, "darts_fd", lam, fd_radius=eps0)
    theta = torch.zeros(4) - xi * (lam.exp() * torch.sinh(torch.zeros(4)) - p.a)  # T = 1
    virtual = theta - xi * (lam.exp() * torch.sinh(theta) - p.a)
    v = virtual - p.c
    assert float(v.norm()) > 2.0  # so that ε₀ and ε₀/‖v‖ differ

    def central(eps):
        return lam.exp() * (torch.cosh(theta + eps * v) - torch.cosh(theta - eps * v)) / (2 * eps)

    assert rel_error(est, -xi * central(eps0 / float(v.norm()))) < 1e-10
    assert rel_error(-xi * central(eps0), est) > 1e-2


# --------------------------------------------------------------------- meta-learning
class _MetaQuadratic(Problem):
    """θ₀ = λ per task (2 tasks): g = Σ_i ½θ_iᵀA_iθ_i − a_iᵀθ_i + (ρ/2)‖θ_i − λ‖²,
    f = ½ Σ_i ‖θ_i − c_i‖² / 2. Everything closed form."""

    name = ""  # not registered
    inner_init_is_outer = True
    params = {"proximal": Param(float, 0.0, "ρ", low=0.0)}

    def build(self, generator):
        d = 6
        self.d = d
        q = [torch.linalg.qr(torch.randn(d, d, generator=generator))[0] for _ in range(2)]
        self.a_mats = [qi * torch.logspace(-1, 0.5, d) @ qi.T for qi in q]
        self.a_vecs = [torch.randn(d, generator=generator) for _ in range(2)]
        self.c_vecs = [torch.randn(d, generator=generator) for _ in range(2)]

    dim_inner = property(lambda self: 2 * self.d)
    dim_outer = property(lambda self: self.d)

    def _tasks(self, theta):
        return theta[: self.d], theta[self.d:]

    def inner_loss(self, theta, lam, batch=None):
        rho = self.config["proximal"]
        return sum(0.5 * t @ (a @ t) - av @ t + 0.5 * rho * ((t - lam) ** 2).sum()
                   for t, a, av in zip(self._tasks(theta), self.a_mats, self.a_vecs,
                                       strict=True))

    def outer_loss(self, theta, lam, batch=None):
        return sum(0.5 * ((t - c) ** 2).sum() for t, c in zip(self._tasks(theta), self.c_vecs,
                                                              strict=True)) / 2

    @classmethod
    def lam_in_losses(cls, params=None):
        return (params or {}).get("proximal", 0.0) > 0

    def init_outer(self, generator):
        return torch.zeros(self.d)

    def init_inner(self, lam, generator):
        return torch.cat([lam, lam])

    def inner_step_size(self, lam):
        return 0.2

    def outer_step_size(self):
        return 0.1

    def evaluate(self, theta, lam):
        return {"test_loss": float(self.outer_loss(theta, lam))}

    # by hand
    def adapt(self, lam, steps, rho=0.0):
        out = []
        for a, av in zip(self.a_mats, self.a_vecs, strict=True):
            t = lam.clone()
            for _ in range(steps):
                t = t - 0.2 * (a @ t - av + rho * (t - lam))
            out.append(t)
        return out


def test_reptile_defaults_are_five_steps_and_epsilon_0_1(registry):
    p = _MetaQuadratic(seed=0)
    lam = torch.randn(6, generator=torch.Generator().manual_seed(2))
    alg = registry.algorithm("reptile")()
    state = alg.init(p, p.init_inner(lam, None), lam.clone(), torch.Generator().manual_seed(0))
    state = alg.step(p, state)
    adapted = p.adapt(lam, 5)
    mean = (adapted[0] + adapted[1]) / 2
    assert rel_error(state.hypergrad, lam - mean) < 1e-12
    assert rel_error(state.lam, lam + 0.1 * (mean - lam)) < 1e-12  # λ moves toward θ̃


def test_maml_default_is_one_adaptation_step_differentiated(registry):
    """dF/dλ = Σ_i (I − αA_i)ᵀ ∇_{θ_i} f(θ_i,1) with θ_i,1 = λ − α(A_iλ − a_i)."""
    p = _MetaQuadratic(seed=0)
    lam = torch.randn(6, generator=torch.Generator().manual_seed(2))
    est, _ = _first_step(registry, p, "maml", lam)
    adapted = p.adapt(lam, 1)
    expected = sum((torch.eye(6) - 0.2 * a) @ (t - c) / 2
                   for a, t, c in zip(p.a_mats, adapted, p.c_vecs, strict=True))
    assert rel_error(est, expected) < 1e-12
    first_order, _ = _first_step(registry, p, "fomaml", lam)
    assert rel_error(first_order, sum((t - c) / 2 for t, c in zip(adapted, p.c_vecs,
                                                                  strict=True))) < 1e-12


def test_imaml_defaults_are_16_inner_and_5_cg_steps(registry):
    """dF/dλ = ρ Σ_i v_i, (A_i + ρI) v_i = ∇_{θ_i} f(θ_i,16), v by 5 CG steps on the stacked
    block-diagonal system (Rajeswaran et al. 2019, eq. 7)."""
    rho = 2.0
    p = _MetaQuadratic(seed=0, proximal=rho)
    lam = torch.randn(6, generator=torch.Generator().manual_seed(2))
    est, _ = _first_step(registry, p, "imaml", lam)
    adapted = p.adapt(lam, 16, rho)
    h = torch.block_diag(*(a + rho * torch.eye(6) for a in p.a_mats))
    b = torch.cat([(t - c) / 2 for t, c in zip(adapted, p.c_vecs, strict=True)])
    v = _cg(h, b, 5)
    assert rel_error(est, rho * (v[:6] + v[6:])) < 1e-10
    v4 = _cg(h, b, 4)
    assert rel_error(rho * (v4[:6] + v4[6:]), est) > 1e-6  # one CG step short is visible
