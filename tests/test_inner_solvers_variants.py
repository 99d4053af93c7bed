"""Issue 21, the variant count: ``blobench list --variants`` counts a discrete configuration
only if it passes the structural check of :mod:`blobench.workflows.variants` (finite direction
with positive cosine with the exact dF/dλ on its first check problem). Measured on the whole
registry (``python -m blobench.workflows.variants``, 55 CPU-s): 275 of 317 pass, 39 run only
(biased approximations, meta-learning, black-box), 3 fail or apply to no check problem."""

from __future__ import annotations

import torch

from blobench.workflows import variants


def test_every_variant_of_the_unrolled_estimators_passes(registry):
    report = variants.check_variants(registry, ["unrolled", "truncated", "bda"])
    assert report.per_entry() == {"unrolled": (12, 12), "truncated": (16, 16), "bda": (4, 4)}, [
        (r.label, r.detail) for r in report.failures()]
    assert {r.params["inner_solver"] for r in report.results if r.entry == "truncated"} == {
        "gd", "momentum", "adam", "bda"}


def test_variants_enumerate_accepted_combinations_only(registry):
    sama = variants.enumerate_variants(registry.algorithm("sama"))
    assert sama and all(v["warm_start"] for v in sama)  # sama rejects cold starts
    assert len(variants.enumerate_variants(registry.algorithm("unrolled"))) == 2 * 2 * 3


def test_biased_approximation_is_run_only_not_counted(registry):
    result = variants.check_variant(registry, "one_step", {})
    assert not result.passed and result.detail.startswith("run only")


def test_mutant_ascending_variant_is_not_counted(registry, monkeypatch):
    """A variant whose direction points away from dF/dλ (sign flip) fails the check."""
    cls = registry.algorithm("unrolled")
    good = cls.hypergradient

    def flipped(self, problem, state):
        theta, h = good(self, problem, state)
        return theta, -h if self.inner_solver == "momentum" else h

    monkeypatch.setattr(cls, "hypergradient", flipped)
    report = variants.check_variants(registry, ["unrolled"])
    failed = {r.params["inner_solver"] for r in report.failures()}
    assert failed == {"momentum"} and report.checked == 8


def test_a_crashing_variant_is_a_failure_not_a_crash(registry, monkeypatch):
    cls = registry.algorithm("bda")
    monkeypatch.setattr(cls, "hypergradient",
                        lambda self, p, s: (s.theta, torch.full_like(s.lam, float("nan"))))
    result = variants.check_variant(registry, "bda", {})
    assert not result.passed and "non-finite" in result.detail
