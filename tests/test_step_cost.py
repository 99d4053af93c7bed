"""The single-loop step-cost measurement (issue 15) runs on the quick size and returns its
fields; the oracle calls it counts per step are the algorithms' documented costs. No timing
assertions: speed is measured by ``blobench bench``, not by timed tests."""

from __future__ import annotations

import pytest

from blobench.execution.registry import get_registry
from blobench.workflows.bench import step_cost


@pytest.fixture(scope="module")
def result():
    return step_cost.measure_step_cost(get_registry([]), size="quick", k=2, rounds=1)


def test_fields_and_rows(result):
    assert result["problem"] == "finite_sum_quadratic" and result["size"] == "quick"
    assert [r["algorithm"] for r in result["rows"]] == list(step_cost.METHODS)
    assert set(result["oracle_ms"]) >= {"grad_inner", "grad_outer", "hvp", "mixed",
                                        "per_sample_inner", "per_sample_outer"}
    for r in result["rows"]:
        assert r["step_ms"] > 0 and r["oracle_sum_ms"] > 0 and r["ratio"] > 0
        assert r["target"] == 2.0 and r["met"] == (r["ratio"] <= 2.0)
    rows = step_cost.goal_rows(result)
    assert len(rows) == len(step_cost.METHODS) + 1
    assert all(row.startswith("| ") and row.endswith(" |") for row in rows)
    from blobench.workflows.speed import goal_rows  # the report's goal table shows them

    assert goal_rows({"step_cost": result})[2:] == rows


def test_calls_counted_per_step(result):
    calls = {r["algorithm"]: r["calls_per_step"] for r in result["rows"]}
    assert calls["soba"] == {"grad_inner": 1, "grad_outer": 1, "hvp": 1, "mixed": 1}
    # SABA: one vectorized per-sample call per level, no batch oracle, no loop over samples
    assert calls["saba"] == {"per_sample_inner": 1, "per_sample_outer": 1}
    assert calls["stocbio"] == {"grad_inner": 10, "grad_outer": 1, "hvp": 10, "mixed": 1}
    assert calls["amigo"] == {"grad_inner": 10, "grad_outer": 1, "hvp": 10, "mixed": 1}
    assert calls["f2sa"] == {"grad_inner": 20, "grad_outer": 11, "inner_grads_autodiff": 2}
    assert calls["ttsa"]["grad_inner"] == 1 and calls["ttsa"]["mixed"] == 1
    # what the engine's counter records beside them: b oracles per per-sample call
    recorded = {r["algorithm"]: r["oracle_counts_per_step"] for r in result["rows"]}
    assert recorded["saba"]["grad_inner"] == 16  # quick: batches of 16


def test_counting_restores_the_problem():
    problem = get_registry([]).problem("finite_sum_quadratic")(size="quick", seed=0)
    with step_cost.counting(problem) as calls:
        problem.inner_grad_oracle(problem.init_inner(None, None), problem.init_outer(None))
    assert calls == {"grad_inner": 1}
    assert not any(hook in vars(problem) for hook in step_cost.HOOKS)


def test_a_python_loop_over_the_samples_is_seen(monkeypatch):
    """Mutant: SABA's per-sample values by the reference loop (batched = False) are counted as
    b oracles of each kind per step; the ratio alone would not show it (each loop call is then
    priced as a b-sample oracle), the counts above do."""
    registry = get_registry([])
    monkeypatch.setattr(registry.algorithm("saba"), "batched", False)
    row = step_cost.measure_step_cost(registry, size="quick", k=2, rounds=1,
                                      methods=("saba",))["rows"][0]
    assert row["calls_per_step"] == {"grad_inner": 16, "grad_outer": 16, "hvp": 16, "mixed": 16}
