"""The ``blobench`` command line: list, run, leaderboard, results.

Bad input is one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

from blobench.check import check_algorithm, check_problem, format_report
from blobench.errors import UserError
from blobench.harness import plan
from blobench.leaderboard import write_compare, write_leaderboard
from blobench.registry import Registry, get_registry
from blobench.results import results_frame
from blobench.runner import run_cells
from blobench.scaffold import new_entry
from blobench.store import ResultsStore

DEFAULT_RESULTS = "results"
#: subcommands implemented in their own modules: ``add_arguments(parser)`` and
#: ``command(args) -> exit code``; the ``--results`` and ``--plugins`` options are added here
EXTENSIONS = {
    "reproduce": ("blobench.reproduce", "reproduce a seed paper's claims, with a verdict each"),
    "tune": ("blobench.tuning", "tune hyperparameters on the validation objective"),
    "bench": ("blobench.bench", "measure hypergradient cost ratios (pytest-benchmark)"),
    "data": ("blobench.data.cli", "datasets: list (license, present or not, where), fetch NAME"),
}
DEFAULT_LEADERBOARD = "leaderboards"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blobench", description=(
        "Benchmark of gradient-based bilevel optimization algorithms."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, results: bool = True) -> None:
        p.add_argument("--plugins", action="append", default=[], metavar="DIR",
                       help="extra folder of problem/algorithm files (repeatable)")
        if results:
            p.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR",
                           help=f"results store (default: {DEFAULT_RESULTS}/)")

    p_list = sub.add_parser("list", help="problems and algorithms with their hyperparameters")
    p_list.add_argument("what", nargs="?", choices=("problems", "algorithms"))
    common(p_list, results=False)

    p_run = sub.add_parser("run", help="run cells (problem × algorithm × seed)")
    p_run.add_argument("-p", "--problem", action="append", default=[], metavar="ENTRY",
                       help='problem, with bracket grid: "ridge_ho[per_feature=[true,false]]"'
                            " (default: all)")
    p_run.add_argument("-a", "--algorithm", action="append", default=[], metavar="ENTRY",
                       help='algorithm, with bracket grid: "implicit_cg[cg_steps=[5,20]]"'
                            " (default: all)")
    p_run.add_argument("--seeds", type=_positive_int, default=3, metavar="N",
                       help="seeds 0..N-1 (default 3)")
    p_run.add_argument("--size", default="quick", help="problem size: quick (default) or full")
    p_run.add_argument("--steps", type=_positive_int, help="outer steps (default: problem's)")
    p_run.add_argument("--max-seconds", type=_positive_float, metavar="S",
                       help="solver-time budget per cell")
    p_run.add_argument("--eval-every", type=_positive_int, metavar="N",
                       help="evaluate every N outer steps (default: problem's)")
    p_run.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p_run.add_argument("--threads", type=_positive_int, default=1,
                       help="torch threads per cell (default 1, for comparable timings)")
    p_run.add_argument("--n-jobs", type=_positive_int, metavar="N",
                       help=f"cells run at once, each in its own process with --threads "
                            f"threads (default: the {_cores()} available core(s))")
    p_run.add_argument("--backend", choices=("local", "dask"), default="local",
                       help="local processes (default) or an existing Dask cluster")
    p_run.add_argument("--scheduler", metavar="ADDRESS",
                       help="Dask scheduler address for --backend dask (tcp://host:8786)")
    p_run.add_argument("--cell-timeout", type=_positive_float, metavar="S",
                       help="stop a cell after S seconds of wall-clock and record 'timeout'")
    p_run.add_argument("--in-process", action="store_true",
                       help="run cells in this process (debugging/profiling; no isolation)")
    p_run.add_argument("--force", action="store_true", help="rerun cells already stored")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_run.add_argument("--strict", action="store_true",
                       help="exit 1 if any cell failed (default: record it and exit 0)")
    p_run.add_argument("--settings", default="leaderboards/tuned_settings.json", metavar="FILE",
                       help="tuned settings used for parameters not given in brackets "
                            "(default: leaderboards/tuned_settings.json; see blobench tune)")
    p_run.add_argument("--no-tuned", action="store_true",
                       help="ignore tuned settings: every unset parameter at its default")
    p_run.add_argument("--data-dir", metavar="DIR",
                       help="data root of the datasets (default: $BLOBENCH_DATA, else "
                            "~/.cache/blobench/data; see `blobench data list`)")
    common(p_run)

    p_new = sub.add_parser("new", help="write a new algorithm or problem file from a template")
    p_new.add_argument("kind", choices=("algorithm", "problem"))
    p_new.add_argument("name", help="entry name, lower_snake_case")
    p_new.add_argument("--dir", metavar="DIR",
                       help="folder to write to (default: algorithms/ or problems/)")
    common(p_new, results=False)

    p_check = sub.add_parser("check", help="validate an algorithm (or --problem) entry")
    p_check.add_argument("name", nargs="?", help="algorithm to check")
    p_check.add_argument("--problem", metavar="NAME", help="check this problem instead")
    p_check.add_argument("-p", "--on", action="append", default=[], metavar="PROBLEM",
                         help="run the algorithm only on these problems (default: all)")
    common(p_check, results=False)

    p_lb = sub.add_parser("leaderboard", help="write leaderboard pages from the results")
    p_lb.add_argument("--out", default=DEFAULT_LEADERBOARD, metavar="DIR",
                      help=f"output folder (default: {DEFAULT_LEADERBOARD}/)")
    p_lb.add_argument("--compare", nargs=2, metavar=("A", "B"),
                      help="side by side: two results folders, or two algorithm "
                           "configurations (labels as on the pages) of --results")
    p_lb.add_argument("--no-figures", action="store_true", help="tables only, no PNG")
    p_lb.add_argument("--all-versions", action="store_true",
                      help="also use records made by older code of an entry or the engine "
                           "(default: current code only)")
    common(p_lb)

    for name, (module, help_text) in EXTENSIONS.items():
        if importlib.util.find_spec(module) is None:
            continue
        ext = sub.add_parser(name, help=help_text)
        importlib.import_module(module).add_arguments(ext)
        common(ext)

    p_res = sub.add_parser("results", help="every finished cell as one flat table")
    p_res.add_argument("--format", choices=("csv", "json"), default="csv")
    p_res.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p_res.add_argument("--all-versions", action="store_true",
                       help="keep records of older code versions too")
    common(p_res)
    return parser


def _registry(args: argparse.Namespace) -> Registry:
    registry = get_registry(args.plugins)
    for where, message in registry.errors:
        print(f"blobench: warning: plugin {where} not loaded: {message}", file=sys.stderr)
    return registry


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.what in (None, "problems"):
        print("Problems:")
        for name, cls in sorted(registry.problems.items()):
            print(f"  {name}  [{cls.family}]  sizes: {', '.join(cls.sizes)}  "
                  f"primary: {cls.primary_metric} ({'↑' if cls.higher_is_better else '↓'})")
            if cls.reference:
                print(f"      ref: {cls.reference}")
            for pname, param in cls.params.items():
                print(f"      {pname}: {param.describe()}  {param.help}")
    if args.what in (None, "algorithms"):
        print("Algorithms:")
        for name, cls in sorted(registry.algorithms.items()):
            print(f"  {name}  [{cls.family}]")
            if cls.reference:
                print(f"      ref: {cls.reference}")
            for pname, param in cls.params.items():
                print(f"      {pname}: {param.describe()}  {param.help}")
            skips = [p for p, pc in sorted(registry.problems.items())
                     if cls().skip_reason(pc)]
            if skips:
                print(f"      does not apply to: {', '.join(skips)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.data_dir:  # read by blobench.data in every cell's process
        os.environ["BLOBENCH_DATA"] = str(Path(args.data_dir).resolve())
    store = ResultsStore(args.results)
    tuned = None
    if not args.no_tuned:
        from blobench.tuning import load_settings

        tuned = load_settings(args.settings)
    cells, skipped = plan(
        registry, args.problem or sorted(registry.problems),
        args.algorithm or sorted(registry.algorithms), list(range(args.seeds)),
        size=args.size, device=args.device, steps=args.steps, seconds=args.max_seconds,
        eval_every=args.eval_every, threads=args.threads, plugins=tuple(args.plugins),
        tuned=tuned)
    for problem, label, reason in skipped:
        print(f"skipped {problem} × {label}: {reason}", file=sys.stderr)
    if tuned is not None:
        from blobench.tuning import stale_files

        by_file: dict[str, set[str]] = {}
        for cell in cells:
            if cell.tuned:
                changed = stale_files(registry, cell.problem, cell.algorithm,
                                      cell.tuned.get("code", {}))
                if changed:
                    by_file.setdefault(", ".join(changed), set()).add(cell.tuned["key"])
        for changed, keys in sorted(by_file.items()):
            names = sorted(keys)
            print(f"blobench: warning: {len(names)} tuned setting(s) stale, {changed} changed "
                  f"since tuning: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''} "
                  "(rerun blobench tune --missing)", file=sys.stderr)
    # default: all cores locally, all workers on a Dask cluster (-1), one cell in-process
    n_jobs = args.n_jobs or (1 if args.in_process else -1 if args.backend == "dask"
                             else _cores())
    summary = run_cells(registry, cells, store, force=args.force, n_jobs=n_jobs,
                        backend=args.backend, scheduler=args.scheduler,
                        cell_timeout=args.cell_timeout, isolate=not args.in_process,
                        progress=not args.no_progress)
    for path, reason in store.corrupt:
        print(f"blobench: warning: corrupt record {path} ({reason}); its cell was rerun",
              file=sys.stderr)
    if summary.ran == 0 and summary.cached:
        print(f"nothing to do: all {summary.cached} cell(s) are already in {args.results}/ "
              "(use --force to rerun)")
    else:
        print(summary.text())
    return 1 if args.strict and summary.failures else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    registry = _registry(args)
    command = "blobench " + " ".join(args.argv)
    if args.compare:
        path = write_compare(registry, args.compare[0], args.compare[1], args.results,
                             Path(args.out), command=command)
        sys.stdout.write(path.read_text())
        print(f"wrote {path}")
        return 0
    written = write_leaderboard(registry, ResultsStore(args.results), Path(args.out),
                                command=command, figures=not args.no_figures,
                                all_versions=args.all_versions)
    print(f"wrote {len(written)} file(s) to {args.out}/")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    frame = results_frame(ResultsStore(args.results), all_versions=args.all_versions)
    if args.format == "csv":
        text = frame.to_csv(index=False)
    else:
        text = frame.to_json(orient="records", indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    registry = _registry(args)
    path = new_entry(registry, args.kind, args.name, Path(args.dir) if args.dir else None)
    how = f"blobench check {args.name}" if args.kind == "algorithm" else (
        f"blobench check --problem {args.name}")
    extra = f" --plugins {path.parent}" if args.dir else ""
    print(f"wrote {path}\nnext: edit it, then `{how}{extra}`")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.problem:
        findings = check_problem(registry, args.problem)
        title = f"problem {args.problem} ({registry.source_file('problem', args.problem)})"
    elif args.name:
        findings = check_algorithm(registry, args.name, problems=args.on or None)
        title = f"algorithm {args.name} ({registry.source_file('algorithm', args.name)})"
    else:
        raise UserError("name an algorithm to check, or a problem with --problem NAME")
    print(format_report(title, findings))
    return 0 if all(f.passed for f in findings) else 1


COMMANDS = {"list": cmd_list, "new": cmd_new, "check": cmd_check, "run": cmd_run,
            "leaderboard": cmd_leaderboard, "results": cmd_results}


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _extension_command(args: argparse.Namespace) -> int:
    return importlib.import_module(EXTENSIONS[args.command][0]).command(args)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return COMMANDS.get(args.command, _extension_command)(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"blobench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blobench: interrupted; finished cells are saved, rerun to finish the rest",
              file=sys.stderr)
        return 130
