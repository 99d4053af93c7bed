"""The whole benchmark (goals, cost ratios, harness overhead) and its JSON / Markdown report."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from blobench.execution.registry import Registry
from blobench.workflows.bench.costs import CASES, measure_case
from blobench.workflows.bench.overhead import HARNESS_CELLS, measure_harness

DEFAULT_REPORT = "leaderboards/benchmarks/REPORT"


def _markdown(report: dict[str, Any]) -> str:
    from blobench.workflows.speed import goal_rows

    lines = ["# Benchmark report: the suite's own speed and the hypergradient costs", "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}  ",
             f"Machine: {report['machine']}, torch {report['torch']}, 1 thread per case; "
             f"load average at start {report['load_start']}, at end {report['load_end']}  ",
             f"GPU: {report['gpu']}", ""]
    if report.get("goals"):
        lines += ["## Goals of the suite's own speed (issue 15)", "",
                  "All measured in this run (ratios of times taken under the same load); "
                  "see blobench/workflows/speed.py for how each is measured.", "",
                  *goal_rows(report["goals"]), ""]
    if not report["cases"] and not report["harness"]:  # --no-kernels
        return "\n".join(lines) + "\n"
    lines += ["## Hypergradient cost", "",
             "Ratios are times divided by one inner gradient (`autodiff.inner_grad`, the "
             "problem's analytic oracle where it has one) of the same problem, measured "
             "interleaved in the same run (median of 7 blocks). k = "
             f"{report['k']} CG / Neumann steps, T = {report['unroll_steps']} unrolled steps.",
             "", "| problem | size | dim θ | oracles | inner grad µs (autodiff µs) | "
             "CG k ratio (target) | Neumann k ratio (target) | unroll T ratio (target) | "
             "CG µs (autodiff-only µs) |", "|---|---|---|---|---|---|---|---|---|"]

    def cell(row: dict[str, Any]) -> str:
        return f"{row['ratio']:.1f} (≤ {row['target']:g}) {'met' if row['met'] else 'NOT met'}"

    for c in report["cases"]:
        lines.append(
            f"| {c['problem']} | {c['size']} | {c['dim_inner']} | "
            f"{'yes' if c['oracles'] else 'no'} | {c['grad_us']:.1f} "
            f"({c['autodiff_grad_us']:.1f}) | {cell(c['cg'])} | {cell(c['neumann'])} | "
            f"{cell(c['unroll'])} | {c['cg']['us']:.0f} ({c['autodiff_cg_us']:.0f}) |")
    lines += ["", "## Harness overhead (in-process cells, default budgets)", "",
              "overhead = wall − solver − evaluation − set-up (problem data, the record's "
              "code hash); the overhead includes the process-memory probe around each step, "
              "trace rows and timing; target < 2 % of solver time. Evaluation (metrics, "
              "exact hypergradient, cold-restart gap, "
              "replayed-step memory probe) is outside the timed region by design; its share "
              "of the cell's wall time is shown for information.", "",
              "| cell | steps | solver s | overhead s | overhead / solver | of which memory "
              "probe | evaluation s | evaluation share of wall |",
              "|---|---|---|---|---|---|---|---|"]
    for h in report["harness"]:
        share = h["overhead_share"]
        lines.append(
            f"| {h['problem']} × {h['algorithm']} | {h['steps']} | {h['solver_s']:.3f} | "
            f"{h['overhead_s']:.4f} | "
            f"{'n/a' if share is None else f'{100 * share:.1f} %'} "
            f"({'met' if share is not None and share < 0.02 else 'NOT met'}) | "
            f"{100 * (h['memory_probe_share'] or 0):.1f} % | {h['evaluation_s']:.3f} | "
            f"{100 * h['evaluation_share_of_wall']:.0f} % |")
    return "\n".join(lines) + "\n"


def measure_goals(registry: Registry, log: Callable[[str], None] = print,
                  suite: str = "quick") -> dict[str, Any]:
    """The measurements of :mod:`blobench.workflows.speed`, logged as they finish."""
    from blobench.workflows import speed
    goals: dict[str, Any] = {"startup": speed.measure_startup()}
    log(f"startup: --help {goals['startup']['help_cpu_s']:.2f} s CPU, list "
        f"{goals['startup']['list_cold_cpu_s']:.2f} s (cached "
        f"{goals['startup']['list_cached_cpu_s']:.2f} s, after an edit "
        f"{goals['startup']['list_edited_cpu_s']:.2f} s)")
    goals["fixed_cost"] = speed.measure_fixed_cost(registry)
    log(f"per-cell fixed cost: {goals['fixed_cost']['fixed_ms']:.0f} ms")
    from blobench.workflows.api import RunSpec

    goals["suite"] = suite
    goals["evaluation"] = speed.measure_evaluation(
        registry, RunSpec(suite=suite).problem_list(registry.problems))
    for e in goals["evaluation"]:
        log(f"evaluation {e['problem']} × {e['algorithm']}: "
            f"{100 * (e['evaluation_share'] or 0):.0f} % of solver time")
    from blobench.workflows.bench.step_cost import measure_step_cost

    goals["step_cost"] = measure_step_cost(registry)
    log("step / Σ oracle calls: " + ", ".join(
        f"{r['algorithm']} {r['ratio'] or float('nan'):.2f}" for r in goals["step_cost"]["rows"]))
    goals["parallel"] = speed.measure_parallel(registry)
    log(f"--n-jobs 2 vs 1: {goals['parallel']['speedup']:.2f}x, efficiency "
        f"{goals['parallel']['efficiency_2']:.2f}")
    return goals


def run_benchmark(registry: Registry, sizes: list[str], problems: list[str] | None = None,
                  k: int = 10, unroll_steps: int = 10, harness: bool = True,
                  rounds: int = 7, log: Callable[[str], None] = print, goals: bool = True,
                  kernels: bool = True, run_results: list[str] | None = None,
                  suite: str = "quick") -> dict[str, Any]:
    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "command": "blobench " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("blobench")
        else " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
                   f"({os.cpu_count()} cores)".replace("  ", " "),
        "torch": torch.__version__, "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "gpu": ("available: not measured by this run" if torch.cuda.is_available()
                else "none available (the GPU goal is not measured)"),
        "k": k, "unroll_steps": unroll_steps, "cases": [], "harness": []}
    if goals:
        report["goals"] = measure_goals(registry, log, suite)
    for name, overrides in CASES if kernels else []:
        if problems and name not in problems:
            continue
        for size in sizes:
            case = measure_case(registry, name, size, overrides, k, unroll_steps, rounds)
            report["cases"].append(case)
            log(f"{name:15s} {size:5s} grad {case['grad_us']:9.1f} µs   "
                + "   ".join(f"{key} {case[key]['ratio']:5.1f} (≤ {case[key]['target']:g})"
                           for key in ("cg", "neumann", "unroll")))
    if harness and kernels:
        measure_harness(registry, *HARNESS_CELLS[0])  # warm-up (a forked cell starts warm)
        for problem, algorithm in HARNESS_CELLS:
            runs = sorted((measure_harness(registry, problem, algorithm) for _ in range(3)),
                          key=lambda h: h["overhead_share"] or 0.0)
            h = runs[1]  # the median of three runs
            report["harness"].append(h)
            log(f"harness {problem} × {algorithm}: overhead "
                f"{100 * (h['overhead_share'] or 0):.2f} % of solver time, evaluation "
                f"{100 * h['evaluation_share_of_wall']:.0f} % of wall")
    if goals and run_results:  # last: the run may still be finishing while the rest measures
        from blobench.workflows.speed import suite_speedup, summarize_run

        report["goals"]["runs"] = [summarize_run(d) for d in run_results]
        report["goals"]["suite_speedup"] = suite_speedup(report["goals"]["runs"])
    report["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return report


def write_report(report: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    base = Path(path)
    if base.suffix in (".md", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    js, md = base.with_suffix(".json"), base.with_suffix(".md")
    js.write_text(json.dumps(report, indent=1, default=str) + "\n")
    md.write_text(_markdown(report))
    return js, md
