"""Applicability facts of a problem's quick instance, remembered across processes (issue 15:
building the instances was ~4.7 of the ~5.5 CPU-s of an uncached ``blobench list`` and of
every run's planning): blobench/bases/quick_facts.py."""

from __future__ import annotations

import pytest

from blobench.bases import quick_facts as qf
from blobench.contracts.errors import DataMissing
from blobench.execution.registry import get_registry

REG = get_registry()


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    qf.quick_facts.cache_clear()
    yield tmp_path
    qf.quick_facts.cache_clear()


def test_facts_are_the_quick_instances_for_every_problem(fresh_cache):
    """For every registered problem the stored facts are what its quick instance says (dim λ,
    the finite-sum attributes) — the applicability the plan and the listing show is the one
    building the instance gave."""
    checked = 0
    for name, cls in sorted(REG.problems.items()):
        try:
            instance = cls(size="quick", seed=0)
        except DataMissing:
            assert qf.quick_facts(cls) is None, name
            continue
        facts = qf.quick_facts(cls)
        assert facts == {"dim_outer": instance.dim_outer,
                         "has": {a: hasattr(instance, a) for a in qf.FACT_ATTRIBUTES}}, name
        checked += 1
    assert checked >= 20
    assert len(list((fresh_cache / "blobench" / "quick_facts").glob("*.json"))) == checked


def test_a_later_process_reads_them_back_without_building(fresh_cache, monkeypatch):
    cls = REG.problems["logreg_ho"]
    first = qf.quick_facts(cls)
    qf.quick_facts.cache_clear()  # as a new process

    def refuse(self, *args, **kwargs):
        raise AssertionError("built")
    monkeypatch.setattr(cls, "__init__", refuse)
    assert qf.quick_facts(cls) == first
    # another class (another file / qualname): its own facts, so it is built
    qf.quick_facts.cache_clear()
    other = REG.problems["ridge_ho"]
    monkeypatch.setattr(other, "__init__", refuse)
    assert qf.quick_facts(other) is None  # the build raised: unknown, the cell decides


def test_black_box_and_finite_sum_applicability_from_the_facts(fresh_cache):
    """dim λ > max_dim refuses black-box search (logreg_ho: 31 > 10; quadratic: 10 applies);
    a problem whose quick instance has no n_inner_samples refuses soba's finite-sum check."""
    random_search = REG.algorithm("random_search")()
    assert "dim λ = 31" in (random_search.applies_to(REG.problems["logreg_ho"]) or "")
    assert random_search.applies_to(REG.problems["quadratic"]) is None
    from blobench.bases.single_loop import finite_sum_reason
    assert finite_sum_reason(REG.problems["logreg_ho"]) is None
    assert "n_inner_samples" in (finite_sum_reason(REG.problems["quadratic"]) or "")
