"""exact, implicit_cg and unrolled against the exact hypergradient, and end to end."""

from __future__ import annotations

import pytest
import torch
from conftest import hypergrad_after_one_step, rel_error

from blobench.contracts.errors import UserError
from blobench.execution.harness import plan, run_cell


def _problems(registry):
    return [registry.problem("quadratic")(seed=1), registry.problem("ridge_ho")(seed=2)]


def _lam(problem, seed=0):
    return 0.5 * torch.randn(problem.dim_outer, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("algorithm, knob, values, extra", [
    ("implicit_cg", "cg_steps", [2, 5, 40], {"cg_warm_start": False}),
    ("unrolled", "inner_steps", [10, 50, 1500], {}),
    ("exact", "inner_steps", [10, 50, 1500], {}),
])
def test_hypergradient_converges_to_exact(registry, algorithm, knob, values, extra):
    for problem in _problems(registry):
        lam = _lam(problem)
        errors = []
        for value in values:
            params = {"warm_start": False, "inner_steps": 1500, **extra, knob: value}
            est, exact = hypergrad_after_one_step(registry, problem, algorithm, lam, **params)
            errors.append(rel_error(est, exact))
        assert errors[0] > errors[-1], (problem.name, errors)
        assert errors[-1] < 1e-6, (problem.name, errors)


def test_unrolled_cold_start_reaches_the_same_lambda_as_exact(registry):
    problem = registry.problem("quadratic")(seed=0)
    lams = {}
    for name in ("exact", "unrolled"):
        alg = registry.algorithm(name)(inner_steps=300, warm_start=False, outer_lr=1.0)
        gen = torch.Generator().manual_seed(0)
        lam0 = problem.init_outer(gen)
        state = alg.init(problem, problem.init_inner(lam0, gen), lam0, gen)
        for _ in range(150):
            state = alg.step(problem, state)
        lams[name] = state.lam
    assert float((lams["exact"] - problem.lam_star).norm()) < 1e-3 * float(problem.lam_star.norm())
    assert float((lams["unrolled"] - lams["exact"]).norm()) < 1e-3 * float(lams["exact"].norm())


def test_warm_and_cold_start_differ_only_in_the_inner_start(registry):
    problem = registry.problem("ridge_ho")(seed=0)
    lam = _lam(problem)
    warm = registry.algorithm("implicit_cg")(inner_steps=1, warm_start=True)
    cold = registry.algorithm("implicit_cg")(inner_steps=1, warm_start=False)
    gen = torch.Generator().manual_seed(0)
    theta_prev = torch.ones(problem.dim_inner)
    s_warm = warm.init(problem, theta_prev, lam, gen)
    s_cold = cold.init(problem, theta_prev, lam, torch.Generator().manual_seed(0))
    assert torch.equal(warm.start_theta(problem, s_warm, lam), theta_prev)
    assert torch.equal(cold.start_theta(problem, s_cold, lam), problem.init_inner(lam, gen))


def test_bad_hyperparameters_are_one_line_user_errors(registry):
    with pytest.raises(UserError, match=r"cg_steps=0 must be >= 1"):
        registry.algorithm("implicit_cg")(cg_steps=0)
    with pytest.raises(UserError, match=r"inner_lr=-0\.1 must be > 0"):
        plan(registry, ["ridge_ho"], ["unrolled[inner_lr=-0.1]"], [0])
    with pytest.raises(UserError, match=r"unknown algorithm .implicit_gc.*implicit_cg"):
        plan(registry, ["ridge_ho"], ["implicit_gc"], [0])
    with pytest.raises(UserError, match="unknown problem"):
        plan(registry, ["ridge"], ["exact"], [0])
    with pytest.raises(UserError, match="n_features=0"):
        plan(registry, ["ridge_ho[n_features=0]"], ["exact"], [0])


def test_run_cell_is_deterministic_and_records_everything(registry):
    cells, _ = plan(registry, ["ridge_ho"], ["implicit_cg"], [0], steps=4, eval_every=2)
    first, second = run_cell(registry, cells[0]), run_cell(registry, cells[0])
    assert first["status"] == "ok", first["message"]
    assert [r["step"] for r in first["trace"]] == [0, 2, 4]
    for a, b in zip(first["trace"], second["trace"], strict=True):
        for key in ("outer_loss", "test_mse", "hypergrad_rel_error", "inner_grad_norm"):
            assert a.get(key) == b.get(key)
    assert first["steps_done"] == 4 and first["solver_seconds"] > 0
    # 10 CG steps per outer step, plus the residual b − H x₀ of the 3 warm-started solves
    assert first["oracle_calls"]["hvp"] == 4 * 10 + 3
    assert first["final"]["hypergrad_rel_error"] < 1.0
