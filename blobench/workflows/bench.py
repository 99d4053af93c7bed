"""``blobench bench``: what a hypergradient costs, in inner-gradient evaluations.

A benchmark of algorithms is only fair if its implementations are fast, so this measures the
engine's autodiff paths (blobench.autodiff) as *ratios* to one inner gradient of the same
problem, timed in the same run (absolute times depend on the machine, ratios much less):

- ``cg``: a k-step CG hypergradient (:func:`~blobench.autodiff.implicit_hypergradient` with
  :func:`~blobench.autodiff.cg`: one outer gradient, k HVPs, one mixed product);
  target ≤ 1.5 (k + 2) inner gradients.
- ``neumann``: the same with a k-term Neumann series; target ≤ 1.5 (k + 2).
- ``unroll``: T differentiable inner steps and the reverse pass
  (:func:`~blobench.autodiff.unroll` + :func:`~blobench.autodiff.outer_hypergradient`);
  target ≤ 3 T.

The reference "inner gradient" is :func:`~blobench.autodiff.inner_grad`, the path every
algorithm uses (the problem's analytic oracle where it has one, else autodiff), so an oracle
makes the reference faster too: the ratios are never flattered by a slow reference. The
autodiff-only gradient time is reported beside it.

Harness overhead: cells are run in-process with :func:`blobench.execution.harness.run_cell` while
the
evaluation (``evaluate_state``, the replayed-step memory probe), the process-memory probe and
problem construction are timed separately; *overhead* is the cell's wall time outside the
solver's timed steps, the evaluation and the set-up, as a share of solver time (the median of
three runs of each cell, after one warm-up cell: a forked cell starts with the engine loaded).

The benchmark's own speed (startup, per-cell fixed cost, evaluation share, ``--n-jobs``
speed-up and efficiency, the default run and its ETA) is measured by :mod:`blobench.workflows.speed`
in the same run and shown first in the report, each goal with its target, met or not, and
the command that measured it.

Each case runs in this process with ``torch.set_num_threads(1)`` (as cells do). The report
(JSON + Markdown) records the command, the machine, the load average and every measurement.
The same measurements run under pytest-benchmark: ``pytest tests/benchmarks --benchmark-only``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from blobench import autodiff
from blobench.contracts.errors import UserError
from blobench.execution.registry import Registry, get_registry

DEFAULT_REPORT = "leaderboards/benchmarks/REPORT"
#: (problem, overrides) measured at every size; fewshot_digits is the neural-network problem
#: (an MLP per task), with the proximal term of iMAML so that its inner Hessian is definite
CASES: list[tuple[str, dict[str, Any]]] = [
    ("ridge_ho", {}), ("logreg_ho", {}), ("fewshot_digits", {"proximal": 1.0})]
HARNESS_CELLS: list[tuple[str, str]] = [
    ("ridge_ho", "implicit_cg"), ("logreg_ho", "unrolled"), ("quadratic", "neumann")]


# ------------------------------------------------------------------------------- timing
def time_calls(fns: dict[str, Callable[[], Any]], rounds: int = 7, min_block: float = 0.02
               ) -> dict[str, float]:
    """Median seconds per call of each function, interleaved over ``rounds`` blocks (each
    block repeats a call until ``min_block`` seconds), so that drifting machine load hits
    every function alike."""
    reps: dict[str, int] = {}
    for name, fn in fns.items():  # warm-up and block size
        fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        reps[name] = max(1, int(min_block / one))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / reps[name])
    return {name: statistics.median(v) for name, v in samples.items()}


@contextlib.contextmanager
def autodiff_only(problem_cls: type) -> Iterator[None]:
    """Hide a problem class's analytic oracles (the engine then uses autodiff)."""
    from blobench.contracts.problem import Problem

    hooks = [h for h in autodiff._ORACLES if h in vars(problem_cls)]
    saved = {h: vars(problem_cls)[h] for h in hooks}
    for h in hooks:
        setattr(problem_cls, h, getattr(Problem, h))
    autodiff._oracle_cache.pop(problem_cls, None)
    try:
        yield
    finally:
        for h, fn in saved.items():
            setattr(problem_cls, h, fn)
        autodiff._oracle_cache.pop(problem_cls, None)


def cost_functions(problem: Any, k: int, unroll_steps: int) -> dict[str, Callable[[], Any]]:
    """The timed computations at a point θ (a few inner steps from θ₀) and λ₀."""
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen).detach()
    lr = problem.inner_step_size(lam)
    theta0 = problem.init_inner(lam, gen).detach()
    theta = autodiff.gradient_descent(problem, theta0, lam, 5, lr)
    ops = autodiff.InnerDerivatives(problem, theta, lam)
    alpha = 1.0 / max(float(torch.linalg.vector_norm(ops.hvp(torch.ones_like(theta)))
                            / theta.numel() ** 0.5), 1e-12) * 0.5

    def unrolled() -> torch.Tensor:
        lam_ = lam.clone().requires_grad_(True)
        start = problem.init_inner(lam_, torch.Generator().manual_seed(0))
        return autodiff.outer_hypergradient(
            problem, autodiff.unroll(problem, start, lam_, unroll_steps, lr), lam_)

    return {
        "grad": lambda: autodiff.inner_grad(problem, theta, lam),
        "cg": lambda: autodiff.implicit_hypergradient(
            problem, theta, lam, lambda o, b: autodiff.cg(o.hvp, b, k)),
        "neumann": lambda: autodiff.implicit_hypergradient(
            problem, theta, lam, lambda o, b: autodiff.neumann(o.hvp, b, k, alpha)),
        "unroll": unrolled,
    }


def measure_case(registry: Registry, name: str, size: str, overrides: dict[str, Any],
                 k: int = 10, unroll_steps: int = 10, rounds: int = 7) -> dict[str, Any]:
    """Ratios (and µs) of one (problem, size) case; see the module docstring."""
    cls = registry.problem(name)
    problem = cls(size=size, seed=0, **overrides)
    fns = cost_functions(problem, k, unroll_steps)
    autodiff.oracle_counts.clear()
    fns["cg"]()
    hvps = autodiff.oracle_counts["hvp"]
    times = time_calls(fns, rounds=rounds)
    with autodiff_only(cls):
        plain = cost_functions(problem, k, unroll_steps)
        plain_times = time_calls({"grad": plain["grad"], "cg": plain["cg"]}, rounds=rounds)
    grad = times["grad"]
    targets = {"cg": 1.5 * (k + 2), "neumann": 1.5 * (k + 2), "unroll": 3.0 * unroll_steps}
    rows = {key: {"ratio": times[key] / grad, "target": targets[key],
                  "met": times[key] / grad <= targets[key], "us": times[key] * 1e6}
            for key in targets}
    return {"problem": name, "size": size, "overrides": overrides, "k": k,
            "unroll_steps": unroll_steps, "dim_inner": problem.dim_inner,
            "dim_outer": problem.dim_outer, "cg_hvps": hvps,
            "oracles": sorted(autodiff._oracles(problem)), "grad_us": grad * 1e6,
            "autodiff_grad_us": plain_times["grad"] * 1e6,
            "autodiff_cg_us": plain_times["cg"] * 1e6, **rows}


# ----------------------------------------------------------------------- harness overhead
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


# ------------------------------------------------------------------------------- report
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
        f"{goals['startup']['list_cached_cpu_s']:.2f} s)")
    goals["fixed_cost"] = speed.measure_fixed_cost(registry)
    log(f"per-cell fixed cost: {goals['fixed_cost']['fixed_ms']:.0f} ms")
    from blobench.workflows.api import RunSpec

    goals["suite"] = suite
    goals["evaluation"] = speed.measure_evaluation(
        registry, RunSpec(suite=suite).problem_list(registry.problems))
    for e in goals["evaluation"]:
        log(f"evaluation {e['problem']} × {e['algorithm']}: "
            f"{100 * (e['evaluation_share'] or 0):.0f} % of solver time")
    goals["parallel"] = speed.measure_parallel(registry)
    log(f"--n-jobs 2 vs 1: {goals['parallel']['speedup']:.2f}x, efficiency "
        f"{goals['parallel']['efficiency_2']:.2f}")
    return goals


def run_benchmark(registry: Registry, sizes: list[str], problems: list[str] | None = None,
                  k: int = 10, unroll_steps: int = 10, harness: bool = True,
                  rounds: int = 7, log: Callable[[str], None] = print, goals: bool = True,
                  kernels: bool = True, run_results: str | None = None,
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
        from blobench.workflows.speed import summarize_run

        report["goals"]["run"] = summarize_run(run_results)
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

# ------------------------------------------------------------- paper-scale problems (issue 16)
#: measured by ``blobench bench --full-scale``: full size, float32, this process's CPU thread
FULL_SCALE = ("hyperclean", "large_n_ho", "sparse_ho")
FULL_SCALE_REPORT = "leaderboards/full/BENCH"


def measure_full_scale(registry: Registry, name: str, k: int = 10, rounds: int = 5
                       ) -> dict[str, Any]:
    """One full-batch inner gradient vs one HVP vs one CG-k hypergradient at ``full`` size in
    float32 (µs, and ratios to the gradient). The HVP is timed at a fresh point, i.e. with the
    cost of building the problem's Hessian operator (softmax probabilities, σ'), as a CG
    solve pays it once and a stochastic method once per step."""
    problem = registry.problem(name)(size="full", seed=0, dtype="float32")
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen).detach()
    theta = autodiff.gradient_descent(problem, problem.init_inner(lam, gen).detach(), lam, 5,
                                      problem.inner_step_size(lam))
    v = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
    times = time_calls({
        "grad": lambda: autodiff.inner_grad(problem, theta, lam),
        "hvp": lambda: autodiff.InnerDerivatives(problem, theta, lam).hvp(v),
        "cg": lambda: autodiff.implicit_hypergradient(
            problem, theta, lam, lambda o, b: autodiff.cg(o.hvp, b, k)),
    }, rounds=rounds)
    return {"problem": name, "dim_inner": problem.dim_inner, "dim_outer": problem.dim_outer,
            "n_train": problem.n_inner_samples, "dtype": "float32", "k": k,
            **{f"{key}_us": t * 1e6 for key, t in times.items()},
            "hvp_ratio": times["hvp"] / times["grad"], "cg_ratio": times["cg"] / times["grad"]}


def write_full_scale(registry: Registry, path: str | Path = FULL_SCALE_REPORT, k: int = 10,
                     rounds: int = 5, log: Callable[[str], None] = print) -> Path:
    """Measure every :data:`FULL_SCALE` problem (one missing its data is noted, not fatal)
    and write ``<path>.json`` and ``<path>.md``."""
    from blobench.contracts.errors import NotApplicable

    torch.set_num_threads(1)
    rows, notes = [], []
    for name in FULL_SCALE:
        try:
            rows.append(measure_full_scale(registry, name, k, rounds))
        except NotApplicable as exc:
            notes.append(f"{name}: {exc}")
            continue
        r = rows[-1]
        log(f"{name:11s} grad {r['grad_us'] / 1e3:8.1f} ms  hvp ×{r['hvp_ratio']:.2f}  "
            f"cg-{k} ×{r['cg_ratio']:.1f}")
    report = {"command": "blobench bench --full-scale", "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()} ({os.cpu_count()} cores), 1 torch thread, "
                         f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
              "torch": torch.__version__, "rows": rows, "notes": notes}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# One inner gradient vs one HVP vs one CG-{k} hypergradient at full size "
             "(float32, CPU)", "", f"Command: `{report['command']}` ({report['date']}); "
             f"machine: {report['machine']}; torch {report['torch']}.", "",
             "| problem | dim θ | dim λ | n | gradient (ms) | HVP (ms) | HVP / grad | "
             f"CG-{k} hypergradient (ms) | CG / grad |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['problem']} | {r['dim_inner']:,} | {r['dim_outer']:,} | {r['n_train']:,} "
              f"| {r['grad_us'] / 1e3:.1f} | {r['hvp_us'] / 1e3:.1f} | {r['hvp_ratio']:.2f} | "
              f"{r['cg_us'] / 1e3:.1f} | {r['cg_ratio']:.1f} |" for r in rows]
    lines += ["", *(f"- not measured: {n}" for n in notes),
              "No GPU was available to this session: CUDA times and peak memory are not "
              "measured."]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return path.with_suffix(".md")



# ---------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="quick,full", help="comma-separated problem sizes")
    parser.add_argument("-p", "--problem", action="append", default=[],
                        help="only these problems (default: ridge_ho, logreg_ho, "
                             "fewshot_digits)")
    parser.add_argument("-k", type=int, default=10, help="CG / Neumann steps (default 10)")
    parser.add_argument("-T", "--unroll-steps", type=int, default=10,
                        help="unrolled steps (default 10)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing blocks")
    parser.add_argument("--no-harness", action="store_true",
                        help="skip the harness-overhead cells")
    parser.add_argument("--no-goals", action="store_true",
                        help="skip the suite-speed goals (startup, per-cell cost, evaluation, "
                             "--n-jobs speed-up)")
    parser.add_argument("--no-kernels", action="store_true",
                        help="skip the hypergradient cost ratios and harness cells")
    parser.add_argument("--suite", default="quick",
                        help="the suite whose problems the evaluation share is measured on "
                             "(default quick, the default run's; all: every problem)")
    parser.add_argument("--run-results", metavar="DIR",
                        help="also report the latest `blobench run` stored in DIR: its wall "
                             "time, efficiency and the progress ETA's error")
    parser.add_argument("--full-scale", action="store_true",
                        help="only: one inner gradient vs one HVP vs one CG-k hypergradient "
                             f"at full size in float32 ({', '.join(FULL_SCALE)}), written to "
                             f"{FULL_SCALE_REPORT}.{{json,md}}")
    parser.add_argument("--report", default=DEFAULT_REPORT,
                        help=f"report path without suffix (default {DEFAULT_REPORT}"
                             ".{json,md})")


def command(args: argparse.Namespace) -> int:
    registry = get_registry(getattr(args, "plugins", None) or [])
    sizes = [s for s in args.sizes.split(",") if s]
    known = {name for name, _ in CASES}
    for name in args.problem:
        if name not in known:
            raise UserError(f"bench: no benchmark case for problem {name!r}; "
                            f"valid: {', '.join(sorted(known))}")
    if args.k < 1 or args.unroll_steps < 1 or args.rounds < 1:
        raise UserError("bench: -k, -T and --rounds must be >= 1")
    if args.full_scale:
        print(f"report: {write_full_scale(registry, k=args.k, rounds=args.rounds)}")
        return 0
    report = run_benchmark(registry, sizes, args.problem or None, args.k, args.unroll_steps,
                           harness=not args.no_harness, rounds=args.rounds,
                           goals=not args.no_goals, kernels=not args.no_kernels,
                           run_results=args.run_results, suite=args.suite)
    js, md = write_report(report, args.report)
    print(f"report: {md} and {js}")
    return 0
