"""Cost of hypergradients in inner-gradient evaluations (pytest-benchmark).

Run: ``pytest tests/benchmarks --benchmark-only`` (skipped in the default run by
``--benchmark-skip``); add ``--benchmark-json=FILE`` for pytest-benchmark's JSON, which holds
each ratio and its target under ``extra_info``. ``blobench bench`` runs the same measurements
(blobench/workflows/bench/) and writes the committed report. Only correctness is asserted here
(the solve does k products, the ratios are finite); the speed targets are reported, not
enforced.
"""

from __future__ import annotations

import math

import pytest

from blobench import autodiff
from blobench.execution.registry import get_registry
from blobench.workflows.bench import CASES, cost_functions, measure_case, measure_harness

REG = get_registry()
SIZES = ("quick", "full")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("name", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_cg_hypergradient_cost(benchmark, name, overrides, size):
    case = measure_case(REG, name, size, overrides, rounds=3)
    # k products; or 3k where H is indefinite (fewshot_digits' MLP): CG detects the breakdown
    # and re-solves by CG on the normal equations H²v = Hb, two products per iteration
    # (blobench/autodiff/linear.py, issue 23)
    assert case["cg_hvps"] in (case["k"], 3 * case["k"])
    for key in ("cg", "neumann", "unroll"):
        assert math.isfinite(case[key]["ratio"]) and case[key]["ratio"] > 0
        benchmark.extra_info[f"{key}_ratio"] = case[key]["ratio"]
        benchmark.extra_info[f"{key}_target"] = case[key]["target"]
        benchmark.extra_info[f"{key}_met"] = case[key]["met"]
    benchmark.extra_info["inner_grad_us"] = case["grad_us"]
    problem = REG.problem(name)(size=size, seed=0, **overrides)
    fns = cost_functions(problem, case["k"], case["unroll_steps"])
    benchmark(fns["cg"])


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_inner_gradient(benchmark, name, overrides):
    problem = REG.problem(name)(size="quick", seed=0, **overrides)
    fns = cost_functions(problem, 10, 10)
    autodiff.oracle_counts.clear()
    benchmark(fns["grad"])
    assert autodiff.oracle_counts["grad_inner"] > 0


@pytest.mark.parametrize(("problem", "algorithm"), [("ridge_ho", "implicit_cg")])
def test_harness_overhead(benchmark, problem, algorithm):
    result = benchmark.pedantic(measure_harness, args=(REG, problem, algorithm),
                                rounds=1, iterations=1)
    assert result["status"] == "ok" and result["solver_s"] > 0
    benchmark.extra_info.update({k: v for k, v in result.items()
                                 if isinstance(v, (int, float, str))})
