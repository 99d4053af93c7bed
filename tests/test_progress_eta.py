"""The progress ETA and cell order with shipped timings (issue 15): a fresh clone's run is
weighted by the committed leaderboard's cell timings, scaled by this machine's speed."""

from __future__ import annotations

import json

from blobench.execution.harness import plan
from blobench.execution.progress import (
    Progress,
    cell_seconds_table,
    cell_time_key,
    load_cell_seconds,
    order_cells,
    shipped_seconds,
)
from blobench.execution.registry import get_registry

REG = get_registry()


def _cells():
    cells, _ = plan(REG, ["ridge_ho", "quadratic"], ["implicit_cg", "unrolled", "soba"], [0])
    return cells


def test_eta_scales_shipped_timings_by_the_machine_speed():
    """Shipped: each cell's time on the reference machine; this machine is 3× slower. After
    one finished cell the ETA is the rest's shipped seconds × 3 / jobs, exactly."""
    cells = _cells()
    shipped = {cell_time_key(c): float(i + 1) for i, c in enumerate(cells)}
    now = [0.0]
    bar = Progress(cells, {}, 2, "off", clock=lambda: now[0], shipped=shipped)
    first = cells[0]
    now[0] = 3.0
    bar.finished(first, {"cell_seconds": 3.0 * shipped[cell_time_key(first)], "status": "ok",
                         "label": first.label})
    assert bar.speed() == 3.0
    rest = sum(shipped[cell_time_key(c)] for c in cells[1:])
    assert abs(bar.eta() - 3.0 * rest / 2) < 1e-9
    # a cell that now ends at once (its cost changed since the table): the median ignores it
    now[0] = 3.1
    for odd in cells[1:3]:
        bar.finished(odd, {"cell_seconds": 3.0 * shipped[cell_time_key(odd)]
                           if odd is cells[2] else 0.001, "status": "ok", "label": odd.label})
    assert bar.speed() == 3.0
    # without shipped timings the ETA is the mean of the finished cells (a different number)
    plain = Progress(cells, {}, 2, "off", clock=lambda: now[0])
    plain.finished(first, {"cell_seconds": 3.0, "status": "ok", "label": first.label})
    assert abs(plain.eta() - 3.0 * (len(cells) - 1) / 2) < 1e-9


def test_cells_with_timings_run_longest_first_and_an_own_record_wins():
    cells = _cells()
    shipped = {cell_time_key(c): float(i) for i, c in enumerate(cells)}
    ordered = order_cells(cells, {}, shipped)
    assert ordered == cells[::-1]
    prior = {cells[0].config_id(): 100.0}  # this machine's own earlier record
    assert order_cells(cells, prior, shipped)[0] == cells[0]
    # a cell without any timing: the fair shuffle (every cell, in another order)
    partial = {cell_time_key(c): 1.0 for c in cells[1:]}
    shuffled = order_cells(cells, {}, partial)
    assert sorted(c.config_id() for c in shuffled) == sorted(c.config_id() for c in cells)


def test_the_table_is_the_median_per_problem_size_label_and_survives_a_bad_file(tmp_path):
    def record(problem, label, seed, seconds, status="ok"):
        return {"config": {"problem": problem, "size": "quick", "seed": seed}, "label": label,
                "status": status, "cell_seconds": seconds}
    table = cell_seconds_table([record("ridge_ho", "soba", 0, 1.0),
                                record("ridge_ho", "soba", 1, 5.0),
                                record("ridge_ho", "soba", 2, 2.0),
                                record("ridge_ho", "exact", 0, 9.0, "not_applicable"),
                                {"config": {"problem": "quadratic", "size": "quick"},
                                 "label": "x", "status": "ok"}])  # a baseline: no timing
    # a refusal is timed too: its cell costs its process and set-up, and without it the
    # ETA guesses the refused cell from its problem's and algorithm's means
    assert table == {"ridge_ho|quick|soba": 2.0, "ridge_ho|quick|exact": 9.0}
    path = tmp_path / "cell_seconds.json"
    path.write_text(json.dumps(table))
    assert load_cell_seconds(path) == table
    path.write_text("{not json")
    assert load_cell_seconds(path) == {}
    assert load_cell_seconds(tmp_path / "absent.json") == {}


def test_a_configuration_the_table_lacks_takes_its_algorithms_median_on_the_problem():
    """A newly tuned step size changes a cell's label, not the work of its steps: without its
    own entry a cell takes the median of the same algorithm's configurations on the same
    problem and size, so the ETA and the longest-first order survive a re-tuning (with a
    missing timing the order fell back to a shuffle). Another problem's entries do not count."""
    cells = _cells()
    soba = next(c for c in cells if c.algorithm == "soba" and c.problem == "ridge_ho")
    table = {"ridge_ho|quick|soba[outer_lr=1.0]": 2.0, "ridge_ho|quick|soba[outer_lr=9.0]": 6.0,
             "ridge_ho|quick|soba_like": 50.0, "quadratic|quick|soba": 99.0}
    assert cell_time_key(soba) not in table and shipped_seconds(soba, table) == 4.0
    assert shipped_seconds(soba, {"quadratic|quick|soba": 1.0}) is None
    full = {cell_time_key(c): float(i) for i, c in enumerate(cells) if c is not soba}
    full["ridge_ho|quick|soba[outer_lr=3.0]"] = 100.0  # soba retuned: its old label
    assert order_cells(cells, {}, full)[0] is soba  # no shuffle: every cell has a timing
    bar = Progress(cells, {}, 1, "off", clock=lambda: 0.0, shipped=full)
    assert bar.shipped[soba.config_id()] == 100.0


def test_bench_replays_a_run_with_the_table_it_read(tmp_path, monkeypatch):
    """The run keeps the timing table its ETA read in its store; ``blobench bench
    --run-results`` replays with that copy, not with the working tree's table — which
    ``blobench leaderboard`` rewrites from the very run (a replay with it measured nothing)."""
    import blobench.workflows.pipeline as pipeline_module
    from blobench.cli import main
    from blobench.execution.progress import TIMINGS_DIR
    from blobench.workflows.speed import summarize_run

    cells = _cells()
    read = {cell_time_key(c): 0.05 * (1 + i) for i, c in enumerate(cells)}
    shipped = tmp_path / "cell_seconds.json"
    shipped.write_text(json.dumps(read))
    monkeypatch.setattr(pipeline_module, "SHIPPED_TIMINGS", shipped)
    monkeypatch.setattr("blobench.workflows.runspec.SHIPPED_TIMINGS", shipped)
    res = tmp_path / "res"
    assert main(["run", "-p", "ridge_ho", "-p", "quadratic", "-a", "implicit_cg", "-a",
                 "unrolled", "-a", "soba", "--steps", "3", "--in-process", "-q",
                 "--no-tuned", "--results", str(res)]) == 0
    kept = list((res / TIMINGS_DIR).glob("*.json"))
    assert len(kept) == 1 and load_cell_seconds(kept[0]) == read
    before = summarize_run(res)
    assert before["eta_table"].startswith("the table the run read")
    from blobench.workflows.speed import goal_rows

    run_row, eta_row = goal_rows({"runs": [before]})[2:]
    assert not before["default"] and "| run (suite quick, 6 cells" in run_row
    assert "stated in the README" in run_row and "the table the run read" in eta_row
    # the working tree's table changes after the run: cells 100× apart
    shipped.write_text(json.dumps({k: v * (100 if i % 2 else 1)
                                   for i, (k, v) in enumerate(read.items())}))
    after = summarize_run(res)
    assert after["eta_errors"] == before["eta_errors"]
    # without its kept copy the replay falls back to the working tree's table, and says so
    kept[0].unlink()
    fallback = summarize_run(res)
    assert "working tree" in fallback["eta_table"]
    assert fallback["eta_errors"] != before["eta_errors"]


def test_suite_speedup_pairs_two_runs_of_the_same_cells():
    from blobench.workflows.speed import suite_speedup

    one = {"cells": 10, "n_jobs": 1, "wall_s": 100.0, "cells_digest": "a", "suite": "quick",
           "seeds": 1, "results": "r1"}
    two = {**one, "n_jobs": 2, "wall_s": 50.0, "results": "r2"}
    pair = suite_speedup([two, one])
    assert pair["speedup"] == 2.0 and pair["met"] and pair["results"] == ["r1", "r2"]
    assert suite_speedup([one, {**two, "cells_digest": "b"}]) is None  # not the same cells
    assert suite_speedup([one]) is None
    assert not suite_speedup([one, {**two, "wall_s": 60.0}])["met"]  # 1.67×
