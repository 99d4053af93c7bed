"""Harness overhead: one in-process cell's wall time split into solver, evaluation, set-up
and the rest (the overhead), by timing the harness's own functions while the cell runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from blobench.execution.registry import Registry

HARNESS_CELLS: list[tuple[str, str]] = [
    ("ridge_ho", "implicit_cg"), ("logreg_ho", "unrolled"), ("quadratic", "neumann")]



def measure_harness(registry: Registry, problem: str, algorithm: str, steps: int | None = None
                    ) -> dict[str, Any]:
    """Split one in-process cell's wall time into solver / evaluation / set-up / overhead."""
    from blobench.execution import harness, memory
    cells, _ = harness.plan(registry, [problem], [algorithm], [0], steps=steps)
    cell = cells[0]
    spent = {"evaluation": 0.0, "memory_probe": 0.0, "setup": 0.0}

    def timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    originals = {"evaluate_state": harness.evaluate_state,
                 "step_tensor_peak": harness.step_tensor_peak, "new_record": harness.new_record}
    pm = memory.PeakMemory
    pm_orig = {"enter": pm.enter, "exit": pm.exit, "start": pm.start}
    pcls = registry.problem(problem)
    build_orig = pcls.build
    memory.warm_up("cpu")
    try:
        harness.evaluate_state = timed("evaluation", originals["evaluate_state"])
        harness.step_tensor_peak = timed("evaluation", originals["step_tensor_peak"])
        for key, fn in pm_orig.items():
            setattr(pm, key, timed("memory_probe", fn))
        pcls.build = timed("setup", build_orig)
        harness.new_record = timed("setup", originals["new_record"])  # code hash, git describe
        t0 = time.perf_counter()
        record = harness.run_cell(registry, cell)
        wall = time.perf_counter() - t0
    finally:
        harness.evaluate_state = originals["evaluate_state"]
        harness.step_tensor_peak = originals["step_tensor_peak"]
        harness.new_record = originals["new_record"]
        for key, fn in pm_orig.items():
            setattr(pm, key, fn)
        pcls.build = build_orig
    solver = record["solver_seconds"]
    overhead = wall - solver - spent["evaluation"] - spent["setup"]
    return {"problem": problem, "algorithm": algorithm, "status": record["status"],
            "steps": record["steps_done"], "evaluations": len(record["trace"]),
            "wall_s": wall, "solver_s": solver, "evaluation_s": spent["evaluation"],
            "setup_s": spent["setup"], "memory_probe_s": spent["memory_probe"],
            "overhead_s": overhead, "overhead_share": overhead / solver if solver else None,
            "memory_probe_share": spent["memory_probe"] / solver if solver else None,
            "evaluation_share_of_wall": spent["evaluation"] / wall}
