"""Faults are recorded, the run goes on, nothing is lost; parallel runs match serial ones."""

from __future__ import annotations

import json
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
    assert recs["ridge_ho:fault_hang:0"]["status"] == "timeout"
    died = recs["ridge_ho:fault_die:0"]
    assert died["status"] == "crashed" and "signal 9" in died["message"]
    assert recs["ridge_ho:implicit_cg:0"]["status"] == "ok"
    for status in ("error", "diverged", "timeout", "crashed"):
        assert f"  {status}: " in out
    # failures are final results: a rerun does not redo them, --strict reports them
    assert main([*argv, "--strict"]) == 0  # nothing ran, so nothing failed in this run
    assert "nothing to do" in capsys.readouterr().out
    assert main([*argv[:-2], "--results", str(tmp_path / "strict"), "--strict"]) == 1


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
