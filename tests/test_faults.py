"""Faults are recorded, the run goes on, nothing is lost; parallel runs match serial ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from blobench.cli import main

PLUGINS = str(Path(__file__).parent / "fault_plugins")


def _records(res: Path) -> dict[str, dict]:
    out = {}
    for path in res.glob("*.json"):
        rec = json.loads(path.read_text())
        out[f"{rec['config']['problem']}:{rec['label']}:{rec['config']['seed']}"] = rec
    return out


def test_each_fault_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    res = tmp_path / "res"
    argv = ["run", "--plugins", PLUGINS, "-p", "ridge_ho",
            "-a", "fault_raise", "-a", "fault_nan", "-a", "fault_hang", "-a", "fault_die",
            "-a", "implicit_cg", "--seeds", "1", "--steps", "4", "--eval-every", "1",
            "--cell-timeout", "20", "--n-jobs", "2", "--no-progress", "--results", str(res)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "5 cell(s) run" in out and "1 ok" in out
    recs = _records(res)
    raised = recs["ridge_ho:fault_raise:0"]
    assert raised["status"] == "error" and "injected failure" in raised["message"]
    assert raised["failed_step"] == 1  # raised inside step 2, after step 1 completed
    nan = recs["ridge_ho:fault_nan:0"]
    assert nan["status"] == "diverged" and nan["failed_step"] == 2
    hung = recs["ridge_ho:fault_hang:0"]
    assert hung["status"] == "timeout"
    # the last step reached and the trace so far survive the kill (issue 18 item 4)
    assert hung["failed_step"] == 1 and [r["step"] for r in hung["trace"]] == [0, 1]
    died = recs["ridge_ho:fault_die:0"]
    assert died["status"] == "crashed" and "signal 9" in died["message"]
    assert died["failed_step"] == 1 and [r["step"] for r in died["trace"]] == [0, 1]
    assert recs["ridge_ho:implicit_cg:0"]["status"] == "ok"
    for status in ("error", "diverged", "timeout", "crashed"):
        assert f"  {status}: " in out
    # failures are results: a rerun reuses them (--retry-failed reruns them), and --strict
    # reports them, cached or new
    assert main([*argv, "--strict"]) == 1
    assert "nothing to do" in capsys.readouterr().out
    assert main(argv) == 0


def test_api_violation_is_a_clear_error(tmp_path):
    res = tmp_path / "res"
    assert main(["run", "--plugins", PLUGINS, "-p", "fault_nonscalar", "-a", "implicit_cg",
                 "--seeds", "1", "--steps", "2", "--no-progress", "--results", str(res)]) == 0
    (rec,) = _records(res).values()
    assert rec["status"] == "error"
    assert "inner_loss returned (3,), expected a scalar tensor" in rec["message"]


METRICS = ("outer_loss", "test_mse", "hypergrad_rel_error", "inner_grad_norm", "lam_displacement")


def _comparable(recs: dict[str, dict]) -> dict[str, list]:
    return {k: [[row.get(m) for m in METRICS] for row in r["trace"]] for k, r in recs.items()}


def test_parallel_and_in_process_runs_give_identical_metrics(tmp_path):
    base = ["run", "-p", "ridge_ho", "-a", "implicit_cg", "-a", "unrolled", "--seeds", "2",
            "--steps", "6", "--eval-every", "3", "--no-progress"]
    assert main([*base, "--in-process", "--results", str(tmp_path / "a")]) == 0
    assert main([*base, "--n-jobs", "2", "--results", str(tmp_path / "b")]) == 0
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert len(a) == 4 and _comparable(a) == _comparable(b)


def test_dask_local_cluster_matches_local_run(tmp_path):
    distributed = pytest.importorskip("distributed")
    base = ["run", "-p", "ridge_ho", "-a", "implicit_cg", "--seeds", "2", "--steps", "4",
            "--eval-every", "2", "--no-progress"]
    assert main([*base, "--results", str(tmp_path / "local")]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main([*base, "--backend", "dask", "--scheduler", cluster.scheduler_address,
                     "--results", str(tmp_path / "dask")]) == 0
    local, dask = _records(tmp_path / "local"), _records(tmp_path / "dask")
    assert len(dask) == 2 and _comparable(local) == _comparable(dask)
    assert {r["key"] for r in local.values()} == {r["key"] for r in dask.values()}


def test_dask_without_scheduler_is_a_user_error(capsys):
    pytest.importorskip("distributed")
    assert main(["run", "-p", "ridge_ho", "-a", "exact", "--seeds", "1", "--backend", "dask",
                 "--no-progress", "--results", "/tmp/blobench-unused"]) == 2
    assert "--scheduler" in capsys.readouterr().err


def test_exits_inside_a_cell_keep_their_cause_and_retry_failed_reruns_them(tmp_path, capsys):
    res = tmp_path / "res"
    argv = ["run", "--plugins", PLUGINS, "-p", "ridge_ho", "-a", "fault_exit",
            "-a", "fault_interrupt", "-a", "fault_explode", "--seeds", "1", "--steps", "4",
            "--eval-every", "1", "--n-jobs", "2", "--no-progress", "--no-tuned",
            "--results", str(res)]
    assert main(argv) == 0
    recs = _records(res)
    exited, interrupted = recs["ridge_ho:fault_exit:0"], recs["ridge_ho:fault_interrupt:0"]
    assert exited["status"] == "error" and exited["failed_step"] == 1
    assert exited["message"].startswith("SystemExit(3) raised inside the cell")
    assert interrupted["status"] == "error" and interrupted["failed_step"] == 1
    assert interrupted["message"].startswith("KeyboardInterrupt raised inside the cell")
    exploded = recs["ridge_ho:fault_explode:0"]  # finite, 1e8 × θ: the growth rule
    assert exploded["status"] == "diverged" and exploded["failed_step"] == 2
    assert "grew over 1e+06 × its initial scale" in exploded["message"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out
    assert "3 cached cell(s) failed in an earlier run, reused (--retry-failed reruns them)" in out
    assert main([*argv, "--retry-failed"]) == 0
    assert "3 cell(s) run, 0 cached" in capsys.readouterr().out


def test_a_run_that_explodes_on_a_singular_hessian_is_diverged_with_its_step(tmp_path):
    from blobench.execution.harness import plan, run_cell
    from blobench.execution.registry import get_registry

    registry = get_registry([PLUGINS])
    cells, _ = plan(registry, ["fault_singular"], ["one_step[outer_lr=5]", "one_step"], [0],
                    steps=40, eval_every=5)
    exploding, calm = (run_cell(registry, cell) for cell in cells)
    # every value stays finite (‖λ‖ ≈ 6e4 at step 10): only the growth rule can see it
    assert exploding["status"] == "diverged" and exploding["failed_step"] == 10
    assert all(math.isfinite(v) for row in exploding["trace"] for v in row.values()
               if isinstance(v, float))
    assert "outer loss = " in exploding["message"] and "grew over" in exploding["message"]
    assert calm["status"] == "ok" and calm["steps_done"] == 40


@pytest.mark.parametrize("flaw, words", [
    ("float16", "inner_loss returned dtype torch.float16: half precision is too coarse"),
    ("int64", "inner_loss returned dtype torch.int64: an integer loss has no gradient"),
    ("detached", "inner_loss returned a tensor detached from θ and λ"),
    ("device", "inner_loss returned a tensor on meta but θ₀ is on cpu"),
    ("nan_metric", "evaluate() returned nan for its primary metric 'test_loss'"),
])
def test_api_flaws_are_errors_that_name_their_cause(flaw, words):
    from blobench.execution.harness import plan, run_cell
    from blobench.execution.registry import get_registry

    registry = get_registry([PLUGINS])
    (cell,), _ = plan(registry, [f"fault_flawed[flaw={flaw}]"], ["implicit_cg"], [0], steps=3)
    record = run_cell(registry, cell)
    assert record["status"] == "error", record["message"]
    assert words in record["message"]
    (sane,), _ = plan(registry, ["fault_flawed"], ["implicit_cg"], [0], steps=3)
    assert run_cell(registry, sane)["status"] == "ok"
