"""Cells run in reused worker processes (issue 15): the numbers of a cell do not depend on the
cells its worker ran before, a crash or a timeout costs only that worker, and the run's end
leaves no worker behind."""

from __future__ import annotations

from pathlib import Path

from blobench.execution import isolation
from blobench.execution.harness import plan
from blobench.execution.registry import get_registry

REG = get_registry()
FAULTS = str(Path(__file__).parent / "fault_plugins")
TIMING = {"seconds", "started", "finished", "solver_seconds", "seconds_per_step",
          "cpu_seconds", "peak_memory_mib", "cell_seconds"}


def _numbers(record: dict) -> tuple:
    def strip(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in TIMING}
    return record["status"], [strip(r) for r in record["trace"]], strip(record["final"])


def test_a_reused_worker_gives_each_cell_the_numbers_of_a_fresh_process():
    cells, _ = plan(REG, ["ridge_ho", "logreg_ho"], ["implicit_cg", "unrolled", "soba"], [0, 1],
                    steps=4, eval_every=2)
    isolation.start_server()
    fresh = []
    for cell in cells:
        fresh.append(_numbers(isolation.run_cell_isolated(cell)))
        isolation.shutdown_workers()
    reused, pids = [], set()
    for cell in reversed(cells):  # another order: every cell follows different ones
        reused.append(_numbers(isolation.run_cell_isolated(cell)))
        pids.update(w.proc.pid for w in isolation._IDLE)
    isolation.shutdown_workers()
    assert len(pids) == 1  # one worker ran all twelve
    assert [n[0] for n in fresh] == ["ok"] * len(cells)
    assert reused[::-1] == fresh
    assert not isolation._IDLE


def test_a_crashed_or_timed_out_worker_is_replaced_and_the_next_cell_runs():
    reg = get_registry([FAULTS])
    (die,), _ = plan(reg, ["ridge_ho"], ["fault_die"], [0], steps=4, eval_every=1,
                     plugins=(FAULTS,))
    (hang,), _ = plan(reg, ["ridge_ho"], ["fault_hang"], [0], steps=4, eval_every=1,
                      plugins=(FAULTS,))
    (ok,), _ = plan(reg, ["ridge_ho"], ["implicit_cg"], [0], steps=4, eval_every=1,
                    plugins=(FAULTS,))
    isolation.start_server()
    first = isolation.run_cell_isolated(ok)
    worker = isolation._IDLE[0].proc
    assert isolation.run_cell_isolated(die)["status"] == "crashed"
    assert not worker.is_alive() and not isolation._IDLE
    assert isolation.run_cell_isolated(ok)["status"] == "ok"
    timed_out = isolation.run_cell_isolated(hang, cell_timeout=3)
    assert timed_out["status"] == "timeout" and not isolation._IDLE
    again = isolation.run_cell_isolated(ok)
    assert _numbers(again) == _numbers(first)
    isolation.shutdown_workers()


def test_a_worker_is_replaced_after_its_quota_of_cells(monkeypatch):
    monkeypatch.setattr(isolation, "CELLS_PER_WORKER", 2)
    cells, _ = plan(REG, ["ridge_ho"], ["implicit_cg"], [0, 1, 2], steps=2, eval_every=1)
    isolation.start_server()
    isolation.run_cell_isolated(cells[0])
    worker = isolation._IDLE[0].proc
    isolation.run_cell_isolated(cells[1])  # its second cell: it is stopped
    assert not isolation._IDLE and not worker.is_alive()
    assert isolation.run_cell_isolated(cells[2])["status"] == "ok"
    isolation.shutdown_workers()
