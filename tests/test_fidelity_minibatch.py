"""Stochastic methods reach λ* under mini-batches on a finite-sum problem with a closed form.

``finite_sum_quadratic`` (quick: n = m = 128 sample quadratics, d = p = 10, batches of 16,
epochs of shuffled blocks; λ* = −Q⁻¹∇h(0) in closed form). Stated rates (measured with these
seeds): SABA's variance-reduced estimator converges linearly at constant steps (relative error
0.057 after 1,000 steps, 1.9e-3 after 2,000); SOBA at constant steps stalls at its noise floor
(0.06 after 2,000), which SABA must beat by 10×. The other first-order / penalty entries do not
reach λ* here at their defaults (issue 14's report: f2sa 3.3, bome diverging, penalty unbounded
at γ₀ = 1e-2) — measured, not asserted.
"""

from __future__ import annotations

import pytest
from fidelity_closed_forms import run_from_init


@pytest.fixture(scope="module")
def fsq(registry):
    return registry.problem("finite_sum_quadratic")(seed=0)


def _error(registry, prob, name, steps, **params):
    state = run_from_init(registry, prob, name, steps, **params)
    star = prob.truth.lam_star
    return float((state.lam - star).norm() / star.norm())


def test_saba_converges_under_minibatches(registry, fsq):
    """Relative error < 0.1 after 1,000 steps at the defaults (measured 0.057; start ≈ 5)."""
    assert _error(registry, fsq, "saba", 1000) < 0.1


@pytest.mark.slow
def test_saba_linear_rate_beats_soba_noise_floor(registry, fsq):
    """SABA: < 1e-2 after 2,000 steps (measured 1.9e-3: linear); SOBA with the same constant
    steps stays at its noise floor (measured 0.06), ≥ 10× above."""
    saba = _error(registry, fsq, "saba", 2000)
    soba = _error(registry, fsq, "soba", 2000, decay=False)
    assert saba < 1e-2 and soba > 10 * saba, (saba, soba)
