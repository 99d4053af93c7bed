"""The benchmark's own speed (issue 15), measured by ``blobench bench`` as ratios in one run.

Each measurement returns a dict with its ``target`` and ``met``; :func:`goal_rows` turns them
into the report's table (goal, target, measured, met, the command that measured it):

- :func:`measure_startup`: CPU seconds (user + system, of the child process) of
  ``blobench --help`` and ``blobench list`` (with an empty cache — a new install —, then
  cached, then after an edit of an entry: the listing is rebuilt, the problems' quick facts
  are read back, :mod:`blobench.bases.quick_facts`), and which heavy modules
  ``import blobench.cli`` loads (none allowed); target < 1 s CPU (cached: the listing of a
  new install or of edited entries must import torch and every entry).
- :func:`measure_fixed_cost`: the fixed cost of one isolated cell = hand-over to a worker
  process and record transfer (the supervisor's wall time minus the worker's time on the
  cell; median over cells, so a worker's own start, once per
  :data:`~blobench.execution.isolation.CELLS_PER_WORKER` cells, is reported beside it) +
  set-up and bookkeeping inside the worker (problem build, checks, record;
  :func:`blobench.workflows.bench.measure_harness`), on a 1-step cell; target ≤ 50 ms.
- :func:`measure_evaluation`: evaluation (metrics against ground truth, the replayed-step
  memory probe) as a share of solver time, one cell per problem at its default budget and
  evaluation schedule, after the problem instance's once-per-instance references are stored
  (as for every cell of a suite but the first on an instance); target ≤ 25 %.
- :func:`measure_parallel`: the same sample of cells at ``--n-jobs 1`` and ``--n-jobs 2``
  (fresh stores, isolated cells): speed-up (target ≥ 1.8) and efficiency Σ solver time /
  (wall × n_jobs) (target ≥ 0.8).
- :func:`blobench.workflows.bench.step_cost.measure_step_cost`: one step of each single-loop
  stochastic method on ``finite_sum_quadratic`` full over the sum of its oracle calls, each
  timed alone; target ≤ 2.
- :func:`summarize_run`: a finished ``blobench run`` read from its store (the records carry
  ``cell_seconds`` and the run's spec): its cells, wall time and efficiency, and how far the
  progress bar's ETA was from the truth at 10/25/50/75 % of the cells (replayed with the
  same estimator, :class:`blobench.execution.progress.Progress`, and the timing table the
  run read, kept in its store); targets: the default run < 10 min on 2 cores, ETA within
  30 %. :func:`suite_speedup`: two such runs of the same cells at ``--n-jobs`` 1 and 2 give
  the speed-up on the whole suite (the sample of :func:`measure_parallel` takes seconds;
  the suite, minutes).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from blobench.execution.registry import Registry

HEAVY = ("torch", "pandas", "matplotlib", "seaborn", "scipy", "sklearn")
#: the algorithm measured per problem: the first of these that applies
EVAL_ALGORITHMS = ("implicit_cg", "soba", "maml", "unrolled", "penalty")
TARGETS = {"startup_cpu_s": 1.0, "fixed_cost_ms": 50.0, "evaluation_share": 0.25,
           "speedup": 1.8, "efficiency": 0.8, "default_run_min": 10.0, "eta_error": 0.30}


def _child_cpu(argv: list[str], env: dict[str, str] | None = None) -> float:
    """CPU seconds (user + system) of running ``argv`` to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, capture_output=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure_startup(repeats: int = 3) -> dict[str, Any]:
    """CPU of ``--help`` and ``list`` (median of ``repeats``), heavy modules of the CLI."""
    cli = [sys.executable, "-m", "blobench"]
    help_cpu = statistics.median(_child_cpu([*cli, "--help"]) for _ in range(repeats))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        list_cold = _child_cpu([*cli, "list"], env)
        # min: another process editing a source file meanwhile invalidates the cache
        list_cached = min(_child_cpu([*cli, "list"], env) for _ in range(repeats))
        # after an edit of an entry: the listing is rebuilt (torch and every entry imported),
        # the problems' quick-instance facts are read back (blobench/bases/quick_facts.py)
        for stale in Path(cache, "blobench").glob("list-*.json"):
            stale.unlink()
        list_edited = _child_cpu([*cli, "list"], env)
    code = f"import sys, blobench.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    target = TARGETS["startup_cpu_s"]
    return {"help_cpu_s": help_cpu, "list_cold_cpu_s": list_cold,
            "list_cached_cpu_s": list_cached, "list_edited_cpu_s": list_edited,
            "cli_heavy_imports": heavy, "target": target,
            "met": help_cpu < target and list_cached < target and heavy == "[]"}


def measure_fixed_cost(registry: Registry, n: int = 10, problem: str = "quadratic",
                       algorithm: str = "implicit_cg") -> dict[str, Any]:
    """Median fixed cost of a 1-step isolated cell (see the module docstring)."""
    from blobench.execution.harness import plan
    from blobench.execution.isolation import (
        CELLS_PER_WORKER,
        run_cell_isolated,
        shutdown_workers,
        start_server,
        worker_start_seconds,
    )
    from blobench.workflows.bench.overhead import measure_harness

    cells, _ = plan(registry, [problem], [algorithm], list(range(n)), steps=1)
    start_server()
    process = []
    worker_start_ms = 1e3 * statistics.median(worker_start_seconds() for _ in range(3))
    for cell in cells:
        t0 = time.perf_counter()
        record = run_cell_isolated(cell)
        wall = time.perf_counter() - t0
        process.append(wall - (record["finished"] - record["started"]))
    shutdown_workers()
    inside = sorted((measure_harness(registry, problem, algorithm, steps=1) for _ in range(3)),
                    key=lambda h: h["setup_s"] + h["overhead_s"])[1]
    process_ms = 1e3 * statistics.median(process)
    inside_ms = 1e3 * (inside["setup_s"] + inside["overhead_s"])
    total = process_ms + inside_ms
    return {"cell": f"{problem} × {algorithm}, 1 step", "process_ms": process_ms,
            "worker_start_ms": worker_start_ms, "cells_per_worker": CELLS_PER_WORKER,
            "setup_record_ms": inside_ms, "fixed_ms": total,
            "target": TARGETS["fixed_cost_ms"], "met": total <= TARGETS["fixed_cost_ms"]}


def _first_applicable(registry: Registry, problem: str) -> str | None:
    for name in EVAL_ALGORITHMS:
        cls = registry.algorithms.get(name)
        if cls is not None and not cls().skip_reason(registry.problem(problem)):
            return name
    return None


def measure_evaluation(registry: Registry, problems: list[str] | None = None
                       ) -> list[dict[str, Any]]:
    """Evaluation / solver time of one in-process cell per problem (default schedule), as a
    cell of a suite run pays it: the instance's reference λ's of hypergradient quality are
    computed once per problem instance and shared by all its cells
    (:func:`blobench.execution.metrics.shared_references`), so the cell is run twice and the
    second is measured; ``instance_once_s`` is what the first paid more (once per instance)."""
    from blobench.workflows.bench.overhead import measure_harness

    rows = []
    for problem in problems or sorted(registry.problems):
        algorithm = _first_applicable(registry, problem)
        if algorithm is None:
            continue
        first = measure_harness(registry, problem, algorithm)
        h = measure_harness(registry, problem, algorithm)
        share = h["evaluation_s"] / h["solver_s"] if h["solver_s"] else None
        rows.append({**h, "evaluation_share": share, "target": TARGETS["evaluation_share"],
                     "instance_once_s": max(0.0, first["wall_s"] - h["wall_s"]),
                     "met": share is not None and share <= TARGETS["evaluation_share"]})
    return rows


#: the sample of the quick suite timed at 1 and 2 jobs
PARALLEL_SAMPLE = (["ridge_ho", "logreg_ho", "quadratic", "distill_linear",
                    "datacleaning_logreg", "poison_logreg"],
                   ["implicit_cg", "unrolled", "soba", "penalty"])


def measure_parallel(registry: Registry, seeds: int = 1) -> dict[str, Any]:
    """Wall time of the same cells at ``n_jobs`` 1 and 2, fresh stores, isolated cells."""
    from blobench.workflows.api import RunSpec, prepare

    out: dict[str, Any] = {}
    problems, algorithms = PARALLEL_SAMPLE
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as store:
            spec = RunSpec(problems=[p for p in problems if p in registry.problems],
                           algorithms=[a for a in algorithms if a in registry.algorithms],
                           seeds=seeds, n_jobs=jobs, results=store, progress=False)
            pipeline = prepare(spec)
            summary = pipeline.execute(progress="off")
            out[f"wall_{jobs}"] = summary.wall_seconds
            out[f"solver_{jobs}"] = summary.solver_seconds
            out[f"efficiency_{jobs}"] = summary.efficiency
            out["cells"] = len(pipeline.cells)
    speedup = out["wall_1"] / out["wall_2"]
    out.update(speedup=speedup, speedup_target=TARGETS["speedup"],
               speedup_met=speedup >= TARGETS["speedup"],
               efficiency_target=TARGETS["efficiency"],
               efficiency_met=(out["efficiency_2"] or 0) >= TARGETS["efficiency"])
    return out


def summarize_run(results: str | Path) -> dict[str, Any]:
    """The latest run recorded in a store: cells, wall, efficiency, ETA error (replayed)."""
    from blobench.execution.harness import Cell
    from blobench.execution.progress import Progress, record_seconds
    from blobench.execution.store import ResultsStore

    records = [r for r in ResultsStore(results).records() if r.get("run")]
    if not records:
        return {"results": str(results), "cells": 0}
    last = max(records, key=lambda r: r["finished"])["run"]
    records = sorted((r for r in records if r["run"] == last), key=lambda r: r["finished"])
    starts = [r["finished"] - record_seconds(r) for r in records]
    t0, t_end = min(starts), records[-1]["finished"]
    from blobench.workflows.api import RunSpec

    spec = RunSpec.from_mapping(last["spec"])  # resolves the defaults: cores, the suite's seeds
    jobs = last.get("n_jobs") or spec.jobs
    solver = sum(r["solver_seconds"] or 0 for r in records)
    cells = [Cell(**{k: v for k, v in r["config"].items()}, label=r["label"]) for r in records]
    now = [t0]
    table, table_source = _timings_read_by(results, last)
    progress = Progress(cells, {}, jobs, "off", clock=lambda: now[0], shipped=table)
    errors = {}
    marks = {max(1, round(f * len(records))): f for f in (0.1, 0.25, 0.5, 0.75)}
    for i, (record, cell) in enumerate(zip(records, cells, strict=True), start=1):
        now[0] = record["finished"]
        progress.running = {c.config_id(): s for c, s, r in zip(cells, starts, records,
                                                                 strict=True)
                            if s <= now[0] < r["finished"]}
        progress.finished(cell, record)
        if i in marks:
            eta, actual = progress.eta(), t_end - record["finished"]
            errors[f"{marks[i]:.0%}"] = (None if eta is None or actual <= 0
                                         else abs(eta - actual) / actual)
    wall = t_end - t0
    cpu = sum(r.get("cpu_seconds") or 0.0 for r in records)
    known = [e for e in errors.values() if e is not None]
    return {"results": str(results), "cells": len(records), "n_jobs": jobs,
            "planned": last.get("cells"), "suite": spec.suite,
            "seeds": len(spec.seed_list), "config_file": last.get("config_file"),
            "wall_s": wall, "solver_s": solver, "efficiency": solver / (wall * jobs),
            # CPU of the cell processes (isolated cells): what the run needs of idle cores
            "cpu_s": cpu, "idle_estimate_s": cpu / max(jobs, 1),
            "load": last.get("load"),
            "default": _is_default(spec, jobs), "cells_digest": _digest(sorted(
                r["config_id"] for r in records)),
            "eta_errors": errors, "eta_table": table_source, "eta_target": TARGETS["eta_error"],
            "eta_met": bool(known) and max(known) <= TARGETS["eta_error"],
            "minutes_target": TARGETS["default_run_min"],
            "minutes_met": wall / 60 < TARGETS["default_run_min"]}


def _timings_read_by(results: str | Path, run: dict[str, Any]
                     ) -> tuple[dict[str, float], str]:
    """The timing table a run's ETA read, and where it came from: the copy the run kept in
    its store (``run.timings``), else — a run from before that was kept — the working tree's
    ``leaderboards/cell_seconds.json``, which may differ from the one the run read."""
    from blobench.execution.progress import load_cell_seconds, load_run_timings
    from blobench.workflows.runspec import SHIPPED_TIMINGS

    digest = run.get("timings")
    table = load_run_timings(Path(results), digest) if digest else None
    if table is not None:
        return table, f"the table the run read (timings/{digest}.json)"
    return (load_cell_seconds(SHIPPED_TIMINGS),
            f"{SHIPPED_TIMINGS.name} of the working tree (the run kept no copy of the table "
            "it read: it may have changed since)")


def _digest(items: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def _is_default(spec: Any, jobs: int) -> bool:
    """Whether a run is the README's first command: the quick suite, its seeds, every problem
    and algorithm, one job per core."""
    from blobench.workflows.runspec import RunSpec

    default = RunSpec()
    return (spec.suite == default.suite and spec.seed_list == default.seed_list
            and not spec.problems and not spec.algorithms and jobs == default.jobs)


def suite_speedup(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``--n-jobs 2`` vs ``--n-jobs 1`` on a whole suite: the wall times of two recorded runs
    of the same cells (same configurations; ``blobench bench --run-results A --run-results
    B``), None unless such a pair was given."""
    by_jobs = {r.get("n_jobs"): r for r in runs if r.get("cells")}
    one, two = by_jobs.get(1), by_jobs.get(2)
    if one is None or two is None or one["cells_digest"] != two["cells_digest"]:
        return None
    speedup = one["wall_s"] / two["wall_s"]
    return {"cells": one["cells"], "suite": one["suite"], "seeds": one["seeds"],
            "wall_1": one["wall_s"], "wall_2": two["wall_s"], "speedup": speedup,
            "target": TARGETS["speedup"], "met": speedup >= TARGETS["speedup"],
            "results": [one["results"], two["results"]]}


def _met(flag: bool | None) -> str:
    return "**met**" if flag else "**NOT met**"


def goal_rows(report: dict[str, Any]) -> list[str]:
    """Markdown rows: goal | target | measured | met | command (see ``blobench bench``)."""
    rows = ["| goal | target | measured | met | measured by |", "|---|---|---|---|---|"]
    s = report.get("startup")
    if s:
        rows.append(f"| `blobench --help` CPU | < {s['target']:g} s | {s['help_cpu_s']:.2f} s | "
                    f"{_met(s['help_cpu_s'] < s['target'])} | `blobench bench` (startup) |")
        rows.append(f"| `blobench list` CPU (cached; after an edit of an entry "
                    f"{s.get('list_edited_cpu_s', float('nan')):.2f} s; first call on a new "
                    f"install {s['list_cold_cpu_s']:.2f} s) | "
                    f"< {s['target']:g} s | {s['list_cached_cpu_s']:.2f} s | "
                    f"{_met(s['list_cached_cpu_s'] < s['target'])} | `blobench bench` |")
        rows.append(f"| heavy modules imported by `import blobench.cli` | none | "
                    f"{s['cli_heavy_imports']} | {_met(s['cli_heavy_imports'] == '[]')} | "
                    "`blobench bench`, tests/test_cli.py |")
    f = report.get("fixed_cost")
    if f:
        rows.append(f"| per-cell fixed cost ({f['cell']}) | ≤ {f['target']:g} ms | "
                    f"{f['fixed_ms']:.0f} ms (process {f['process_ms']:.0f} + set-up/record "
                    f"{f['setup_record_ms']:.0f}; a worker's start, once per "
                    f"{f.get('cells_per_worker', '?')} cells: {f.get('worker_start_ms', 0):.0f}) | "
                    f"{_met(f['met'])} | `blobench bench` |")
    for e in report.get("evaluation", []):
        share = e["evaluation_share"]
        rows.append(f"| evaluation / solver time, {e['problem']} × {e['algorithm']} "
                    f"({e['evaluations']} evaluations / {e['steps']} steps) | "
                    f"≤ {100 * e['target']:.0f} % | "
                    f"{'n/a' if share is None else f'{100 * share:.0f} %'} | {_met(e['met'])} | "
                    "`blobench bench` |")
    p = report.get("parallel")
    if p:
        rows.append(f"| `--n-jobs 2` vs `--n-jobs 1` ({p['cells']} cells) | "
                    f"≥ {p['speedup_target']:g}× | {p['speedup']:.2f}× ({p['wall_1']:.1f} s → "
                    f"{p['wall_2']:.1f} s) | {_met(p['speedup_met'])} | `blobench bench` |")
        rows.append(f"| efficiency Σ solver / (wall × n_jobs) at `--n-jobs 2` | "
                    f"≥ {p['efficiency_target']:g} | {p['efficiency_2']:.2f} "
                    f"(at 1 job: {p['efficiency_1']:.2f}) | {_met(p['efficiency_met'])} | "
                    "`blobench bench` |")
    if report.get("step_cost"):
        from blobench.workflows.bench.step_cost import goal_rows as step_cost_rows

        rows += step_cost_rows(report["step_cost"])
    runs = report.get("runs") or ([report["run"]] if report.get("run") else [])
    for r in runs:
        rows += _run_rows(r)
    both = report.get("suite_speedup")
    if both:
        rows.append(f"| `--n-jobs 2` vs `--n-jobs 1` on the whole suite {both['suite']} "
                    f"({both['cells']} cells, {both['seeds']} seed(s)) | ≥ {both['target']:g}× "
                    f"| {both['speedup']:.2f}× ({both['wall_1'] / 60:.1f} min → "
                    f"{both['wall_2'] / 60:.1f} min) | {_met(both['met'])} | `blobench bench "
                    + " ".join(f"--run-results {d}" for d in both["results"]) + "` |")
    return rows


def _run_rows(r: dict[str, Any]) -> list[str]:
    """The rows of one recorded run: its wall time (against the 10-minute goal when it is the
    default run; for the README otherwise) and its progress ETA's error."""
    if not r.get("cells"):
        return []
    idle = (f"; its cells used {r['cpu_s'] / 60:.1f} CPU-min, i.e. "
            f"{r['idle_estimate_s'] / 60:.1f} min on {r['n_jobs']} idle cores"
            if r.get("cpu_s") else "")
    done = (f"{r['cells']} of {r['planned']} cells: stopped" if r.get("planned")
            and r["planned"] > r["cells"] else f"{r['cells']} cells")
    default = r.get("default", True)
    name = "default run" if default else "run"
    command = f"`blobench bench --run-results {r['results']}`"
    target, met = ((f"< {r['minutes_target']:g} min on 2 cores", _met(r["minutes_met"]))
                   if default else ("stated in the README", "—"))
    rows = [f"| {name} (suite {r['suite']}, {done}, {r['seeds']} seed(s), "
            f"--n-jobs {r['n_jobs']}, load {r.get('load')}) | {target} | "
            f"{r['wall_s'] / 60:.1f} min wall (efficiency {r['efficiency']:.2f}){idle} | "
            f"{met} | {command} |"]
    errs = ", ".join(f"{k}: {'?' if v is None else f'{100 * v:.0f} %'}"
                     for k, v in r["eta_errors"].items())
    table = f"; replayed with {r['eta_table']}" if r.get("eta_table") else ""
    rows.append(f"| progress ETA error at 10/25/50/75 % of the cells of that run{table} | ≤ "
                f"{100 * r['eta_target']:.0f} % | {errs} | {_met(r['eta_met'])} | same |")
    return rows
