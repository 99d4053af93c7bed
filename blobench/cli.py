"""The ``blobench`` command line: thin — it parses options and calls the Python API.

``blobench run`` turns its options (and a ``--config`` TOML file) into one
:class:`blobench.workflows.api.RunSpec` and runs it through :func:`blobench.workflows.api.prepare`;
the other
subcommands call their module's function. This module imports nothing heavy at import time
(no torch, pandas or plotting): each subcommand imports what it needs when it runs, and a
subcommand implemented in its own module (``EXTENSIONS``) is imported only when it is the one
given, so ``blobench --help`` and ``blobench list`` start fast and a cell process that
re-imports the launching script pays nothing.

Conventions: ``--version``; ``-q/--quiet``, ``-v/--verbose`` and ``--debug`` before or after
the subcommand; ``-p/--problem`` and ``-a/--algorithm`` name entries in every subcommand;
``--n-jobs`` defaults to the available cores in run, tune and reproduce. Bad input is one
line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from blobench import __version__
from blobench.contracts.errors import UserError
from blobench.execution.validate import check_args, corrupt_report
from blobench.workflows.api import DEFAULT_RESULTS, DEFAULT_SUITE, SUITES, RunSpec, cores

DEFAULT_LEADERBOARD = "leaderboards"
#: subcommands implemented in their own modules: ``add_arguments(parser)`` and
#: ``command(args) -> exit code``; imported only when given. ``--results``, ``--plugins`` and
#: the verbosity options are added here.
EXTENSIONS = {
    "reproduce": ("blobench.workflows.reproduce.cli",
                  "reproduce a seed paper's claims, with a verdict each"),
    "tune": ("blobench.workflows.tuning", "tune hyperparameters on the validation objective"),
    "bench": ("blobench.workflows.bench", "measure the benchmark's own speed against its goals"),
    "data": ("blobench.toolkit.data.cli",
             "datasets: list (license, present or not, where), fetch NAME"),
}


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


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--debug``, ``-q``, ``-v``: on the main parser (``default`` False/0) and on every
    subcommand (``default`` SUPPRESS, so a flag given before the subcommand is kept)."""
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="less output: no progress, no notes (warnings and errors stay)")
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more output: one line per cell, skipped pairs, timings")


def add_common(p: argparse.ArgumentParser, results: bool = True) -> None:
    """``--plugins`` (and ``--results``) as every subcommand spells them."""
    p.add_argument("--plugins", action="append", default=[], metavar="DIR",
                   help="extra folder of problem/algorithm files (repeatable); "
                        "EXECUTES the code it loads: only folders you trust")
    if results:
        p.add_argument("--results", default=DEFAULT_RESULTS, metavar="DIR",
                       help=f"results store (default: {DEFAULT_RESULTS}/)")


def add_n_jobs(p: argparse.ArgumentParser, what: str = "cells", default: Any = None) -> None:
    """``--n-jobs``, with the same default (every available core) wherever cells run."""
    p.add_argument("--n-jobs", type=_positive_int, metavar="N", default=default,
                   help=f"{what} run at once, each in its own process (default: the "
                        f"{cores()} available core(s))")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of ``blobench run``: each is a :class:`~blobench.workflows.api.RunSpec` field
    and a
    key of ``--config`` files. Defaults are SUPPRESSed here (the spec holds them), so that
    what the command line gives explicitly overrides the config file and nothing else does."""
    s = argparse.SUPPRESS
    p.add_argument("-p", "--problem", action="append", metavar="ENTRY", default=s,
                   help='problem, with bracket grid: "ridge_ho[per_feature=[true,false]]"'
                        " (default: the suite's)")
    p.add_argument("-a", "--algorithm", action="append", metavar="ENTRY", default=s,
                   help='algorithm, with bracket grid: "implicit_cg[cg_steps=[5,20]]"'
                        " (default: all)")
    p.add_argument("--suite", choices=sorted(SUITES), default=s,
                   help=f"named selection of problems and seeds (default {DEFAULT_SUITE}): "
                        + "; ".join(f"{k}: {v.about}" for k, v in SUITES.items()))
    p.add_argument("--seeds", type=_positive_int, metavar="N", default=s,
                   help="seeds 0..N-1 (default: the suite's; the leaderboard's is 3)")
    p.add_argument("--size", default=s, help="problem size: quick (default) or full")
    p.add_argument("--steps", type=_positive_int, default=s,
                   help="outer steps (default: problem's)")
    p.add_argument("--max-seconds", type=_positive_float, metavar="S", default=s,
                   help="solver-time budget per cell")
    p.add_argument("--eval-every", type=_positive_int, metavar="N", default=s,
                   help="evaluate every N outer steps (default: problem's)")
    p.add_argument("--device", default=s, help="cpu (default) or cuda[:i]")
    p.add_argument("--data-dir", metavar="DIR", default=s,
                   help="data root of the datasets the problems read (default: $BLOBENCH_DATA, "
                        "else ~/.cache/blobench/data; see blobench data list)")
    p.add_argument("--threads", type=_positive_int, default=s,
                   help="torch threads per cell (default 1, for comparable timings)")
    add_n_jobs(p, default=s)
    p.add_argument("--backend", choices=("local", "dask"), default=s,
                   help="local processes (default) or an existing Dask cluster")
    p.add_argument("--scheduler", metavar="ADDRESS", default=s,
                   help="Dask scheduler address for --backend dask (tcp://host:8786)")
    p.add_argument("--cell-timeout", type=_positive_float, metavar="S", default=s,
                   help="stop a cell after S seconds of wall-clock and record 'timeout'")
    p.add_argument("--in-process", action="store_true", default=s,
                   help="run cells in this process (debugging/profiling; no isolation)")
    p.add_argument("--force", action="store_true", default=s, help="rerun cells already stored")
    p.add_argument("--retry-failed", action="store_true", default=s,
                   help="rerun stored cells that failed (error, diverged, timeout, crashed), "
                        "e.g. with a larger --cell-timeout; reuse the others")
    p.add_argument("--no-progress", action="store_true", default=s, help="no progress output")
    p.add_argument("--strict", action="store_true", default=s,
                   help="exit 1 if any cell failed, in this run or cached from an earlier one "
                        "(default: record it and exit 0)")
    p.add_argument("--settings", metavar="FILE", default=s,
                   help="tuned settings for parameters not given in brackets (default: the "
                        "project's leaderboards/tuned_settings.json; see blobench tune)")
    p.add_argument("--no-tuned", action="store_true", default=s,
                   help="ignore tuned settings: every unset parameter at its default")
    p.add_argument("--plugins", action="append", metavar="DIR", default=s,
                   help="extra folder of problem/algorithm files (repeatable); "
                        "EXECUTES the code it loads: only folders you trust")
    p.add_argument("--results", metavar="DIR", default=s,
                   help=f"results store (default: {DEFAULT_RESULTS}/)")
    p.add_argument("--config", metavar="FILE",
                   help="read options from a TOML file (keys = option names; options given "
                        "on the command line override it)")
    p.add_argument("--save-config", metavar="FILE",
                   help="write this run's options to a TOML file (for --config) and run")
    p.add_argument("--dry-run", action="store_true",
                   help="plan and report the cells, run nothing (with --save-config: save)")


def _selected_command(argv: list[str]) -> str | None:
    """The subcommand of ``argv`` (its first word not starting with '-'), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``blobench run: error: ...``), exit code 2, like UserError."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; an extension subcommand's options are loaded only when ``argv`` names it
    (its module may import torch)."""
    parser = _OneLineParser(prog="blobench", description=(
        "Benchmark of gradient-based bilevel optimization algorithms."))
    parser.add_argument("--version", action="version", version=f"blobench {__version__}")
    _global_options(parser, default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = argparse.ArgumentParser(add_help=False)
    _global_options(parent, default=argparse.SUPPRESS)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[parent], description=help_text)

    p_list = add("list", "problems and algorithms with their hyperparameters")
    p_list.add_argument("what", nargs="?", choices=("problems", "algorithms"))
    p_list.add_argument("--variants", action="store_true",
                        help="count each algorithm's discrete configurations (bool and "
                        "choice hyperparameters: warm/cold, inner solver, switches)")
    add_common(p_list, results=False)

    _add_run_options(add("run", "run cells (problem × algorithm × seed)"))

    p_new = add("new", "write a new algorithm or problem file from a template")
    p_new.add_argument("kind", choices=("algorithm", "problem"))
    p_new.add_argument("name", help="entry name, lower_snake_case")
    p_new.add_argument("--dir", metavar="DIR",
                       help="folder to write to (default: algorithms/ or problems/)")
    add_common(p_new, results=False)

    p_check = add("check", "validate an algorithm entry (or problem entries with -p)")
    p_check.add_argument("name", nargs="?", help="algorithm to check")
    p_check.add_argument("-p", "--problem", "--on", action="append", default=[],
                         metavar="PROBLEM", dest="problem",
                         help="with an algorithm: run it only on these problems (default: "
                              "all); without: check these problem entries")
    add_common(p_check, results=False)

    p_lb = add("leaderboard", "write leaderboard pages from the results")
    p_lb.add_argument("--out", default=DEFAULT_LEADERBOARD, metavar="DIR",
                      help=f"output folder (default: {DEFAULT_LEADERBOARD}/)")
    p_lb.add_argument("--compare", nargs=2, metavar=("A", "B"),
                      help="side by side: two results folders, or two algorithm "
                           "configurations (labels as on the pages) of --results")
    p_lb.add_argument("--no-figures", action="store_true", help="tables only, no PNG")
    p_lb.add_argument("--all-versions", action="store_true",
                      help="also use records made by older code of an entry or the engine "
                           "(default: current code only)")
    p_lb.add_argument("--baseline", metavar="DIR",
                      help="merge the records shipped with a leaderboard (DIR/records/*.parquet,"
                           " e.g. leaderboards/) under the results: your cells replace the "
                           "same cells, the others are ranked beside yours without rerunning")
    p_lb.add_argument("--no-site", action="store_true",
                      help="no interactive HTML site (OUT/site/)")
    add_common(p_lb)

    selected = _selected_command(sys.argv[1:] if argv is None else argv)
    for name, (module, help_text) in EXTENSIONS.items():
        ext = add(name, help_text)
        if name == selected:
            importlib.import_module(module).add_arguments(ext)
            add_common(ext)

    p_res = add("results", "every finished cell as one flat table")
    p_res.add_argument("--format", choices=("csv", "json", "parquet"), default="csv",
                       help="csv (default), json, or parquet (needs --out)")
    p_res.add_argument("--traces", action="store_true",
                       help="the long table: one row per (cell, evaluation) instead of one "
                            "per cell")
    p_res.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p_res.add_argument("--all-versions", action="store_true",
                       help="keep records of older code versions too")
    add_common(p_res)
    return parser


# --------------------------------------------------------------------------- commands
def _note(args: argparse.Namespace, message: str, level: int = 1) -> None:
    """A message on stderr shown at verbosity >= ``level`` (1 = default, 2 = -v)."""
    if args.verbosity >= level:
        print(message, file=sys.stderr)


def _warn(message: str) -> None:
    print(f"blobench: warning: {message}", file=sys.stderr)


def _registry(args: argparse.Namespace) -> Any:
    from blobench.execution.registry import get_registry

    registry = get_registry(args.plugins)
    for where, message in registry.errors:
        _warn(f"plugin {where} not loaded: {message}")
    return registry


def _listing(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The text of ``blobench list`` and the registry's warnings (imports every entry)."""
    from blobench.execution.registry import get_registry

    registry = get_registry(args.plugins)
    lines = []
    if args.what in (None, "problems"):
        lines.append("Problems:")
        for name, cls in sorted(registry.problems.items()):
            lines.append(f"  {name}  [{cls.family}]  sizes: {', '.join(cls.sizes)}  primary: "
                         f"{cls.primary_metric} ({'↑' if cls.higher_is_better else '↓'})")
            if cls.reference:
                lines.append(f"      ref: {cls.reference}")
            for pname, param in cls.params.items():
                lines.append(f"      {pname}: {param.describe()}  {param.help}")
    if args.what in (None, "algorithms"):
        lines.append("Algorithms:")
        total = 0
        for name, cls in sorted(registry.algorithms.items()):
            lines.append(f"  {name}  [{cls.family}]")
            if cls.reference:
                lines.append(f"      ref: {cls.reference}")
            for pname, param in cls.params.items():
                lines.append(f"      {pname}: {param.describe()}  {param.help}")
            skips = [p for p, pc in sorted(registry.problems.items())
                     if cls().skip_reason(pc)]
            if skips:
                lines.append(f"      does not apply to: {', '.join(skips)}")
            if getattr(args, "variants", False):
                count, axes = _variants(cls)
                total += count
                lines.append(f"      variants: {count} ({' × '.join(axes) or 'one'})")
        if getattr(args, "variants", False):
            lines.append(f"{total} discrete algorithm configurations (entry × the accepted "
                         "combinations of its bool / choice hyperparameters; continuous ones "
                         "count once); "
                         "`blobench check NAME` checks the defaults of one entry, not every "
                         "variant")
    warnings = [f"plugin {where} not loaded: {message}" for where, message in registry.errors]
    return "\n".join(lines) + "\n", warnings


def _variants(cls: type) -> tuple[int, list[str]]:
    """(number of valid discrete configurations, the axes ``name(n)``) of an algorithm class:
    the combinations of its bool and ``choices`` hyperparameters (``None`` too when optional)
    that the entry accepts (its constructor validates them, e.g. sama rejects cold starts)."""
    import itertools

    axes = {}
    for pname, param in cls.params.items():
        values = (list(param.choices) if param.choices is not None
                  else [False, True] if param.type is bool else [])
        if values:
            axes[pname] = values + [None] * bool(param.optional)
    count = 0
    for combo in itertools.product(*axes.values()):
        try:
            cls(**dict(zip(axes, combo, strict=True)))
        except Exception:  # a combination the entry rejects is no variant
            continue
        count += 1
    return count, [f"{k}({len(v)})" for k, v in axes.items()]


def _listing_key(args: argparse.Namespace) -> str:
    """Fingerprint of everything ``blobench list`` shows: the path, size and mtime of every
    engine and plugin source file, the installed entry points, the options."""
    import hashlib
    from importlib.metadata import entry_points

    from blobench.workflows.api import PROJECT_ROOT

    h = hashlib.sha256(f"{__version__} {args.what} {getattr(args, 'variants', False)} "
                       f"{sys.version}".encode())
    folders = [Path(__file__).parent, PROJECT_ROOT / "problems", PROJECT_ROOT / "algorithms",
               *(Path(p) for p in args.plugins)]
    for folder in folders:
        for path in sorted(folder.resolve().rglob("*.py")) if folder.is_dir() else []:
            st = path.stat()
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns};".encode())
    for group in ("blobench.problems", "blobench.algorithms"):
        h.update(repr(sorted(ep.value for ep in entry_points(group=group))).encode())
    return h.hexdigest()[:20]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registry. The text is cached (``$XDG_CACHE_HOME/blobench``) under a
    fingerprint of every source file it depends on, so that a repeated ``blobench list``
    imports no torch; any edit, new file or new plugin folder rebuilds it."""
    import json
    import os

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blobench"
    cache = cache_dir / f"list-{_listing_key(args)}.json"
    try:
        text, warnings = json.loads(cache.read_text())
    except (OSError, ValueError):
        text, warnings = _listing(args)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps([text, warnings]))
            tmp.replace(cache)
            for old in sorted(cache_dir.glob("list-*.json"), key=os.path.getmtime)[:-8]:
                old.unlink(missing_ok=True)  # keep the 8 latest listings
        except OSError:  # a read-only home: list without caching
            pass
    for message in warnings:
        _warn(message)
    sys.stdout.write(text)
    return 0


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The :class:`RunSpec` of ``blobench run``'s options: the ``--config`` file's keys, then
    the options given on the command line over them."""
    from blobench.workflows.api import load_config

    given = {k: v for k, v in vars(args).items()
             if k not in ("command", "config", "save_config", "dry_run", "debug", "quiet",
                          "verbose", "verbosity", "argv")}
    data: dict[str, Any] = {}
    if args.config:
        data = dict(load_config(args.config))
        for key in [k for k in data if k.replace("-", "_") in given]:
            del data[key]  # the command line wins, under either spelling
        spec = RunSpec.from_mapping({**data, **given}, where=args.config)
        spec.config_file = str(Path(args.config).resolve())
        return spec
    return RunSpec.from_mapping(given, where="options")


def cmd_run(args: argparse.Namespace) -> int:
    from blobench.execution.runner import progress_mode
    from blobench.workflows.api import prepare, save_config

    spec = run_spec(args)
    if args.save_config:
        _note(args, f"wrote {save_config(spec, args.save_config)}")
    pipeline = prepare(spec)
    for message in pipeline.warnings:
        _warn(message)
    if pipeline.skipped:
        _note(args, f"{len(pipeline.skipped)} (problem, algorithm) pair(s) skipped: they do not "
              "apply" + ("" if args.verbosity >= 2 else " (-v lists them)"))
        for problem, label, reason in pipeline.skipped:
            _note(args, f"  skipped {problem} × {label}: {reason}", level=2)
    _note(args, pipeline.settings_message())
    if args.dry_run:
        print(f"{len(pipeline.cells)} cell(s) planned (--dry-run: nothing run)")
        return 0
    mode = progress_mode(spec.progress and args.verbosity >= 1, verbose=args.verbosity >= 2)
    summary = pipeline.execute(progress=mode)
    for path, reason in pipeline.store.corrupt:
        _warn(f"corrupt record {path} ({reason}); its cell was rerun")
    if summary.ran == 0 and summary.cached:
        print(f"nothing to do: all {summary.cached} cell(s) are already in {spec.results}/ "
              "(use --force to rerun)")
        if summary.cached_failures:
            print(summary.text().split("\n", 1)[1])
    else:
        print(summary.text())
    if summary.efficiency is not None:
        _note(args, f"wall {summary.wall_seconds:.1f} s for {summary.solver_seconds:.1f} s of "
              f"solver time at --n-jobs {summary.n_jobs}: efficiency "
              f"{summary.efficiency:.2f}", level=2)
    failed = summary.failures or summary.cached_failures
    return 1 if spec.strict and failed else 0


def _check_compare(first: str, second: str, results: str) -> None:
    """Two folders, or two labels present in ``results``: anything else is an error."""
    from blobench.contracts.errors import unknown_name
    from blobench.execution.store import ResultsStore

    dirs = [Path(first).is_dir(), Path(second).is_dir()]
    if all(dirs):
        return
    if any(dirs):
        folder, other = (first, second) if dirs[0] else (second, first)
        raise UserError(f"--compare: {folder!r} is a results folder but {other!r} is not; "
                        "give two folders or two algorithm labels")
    labels = {r["label"] for r in ResultsStore(results).records()}
    for label in (first, second):
        if label not in labels:
            raise unknown_name(f"algorithm label in {results}/ (--compare)", label, labels)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from blobench.execution.store import ResultsStore
    from blobench.reporting.leaderboard import write_compare, write_leaderboard

    registry = _registry(args)
    command = "blobench " + " ".join(args.argv)
    if args.compare:
        _check_compare(args.compare[0], args.compare[1], args.results)
        path = write_compare(registry, args.compare[0], args.compare[1], args.results,
                             Path(args.out), command=command)
        sys.stdout.write(path.read_text())
        print(f"wrote {path}")
        return 0
    # read-only: a missing results folder is not created (it may be absent with --baseline)
    store = ResultsStore(args.results) if Path(args.results).is_dir() else None
    if store is None and not args.baseline:
        raise UserError(f"results folder {args.results!r} does not exist: run `blobench run` "
                        "first (nothing was written)")
    written = write_leaderboard(registry, store, Path(args.out),
                                command=command, figures=not args.no_figures,
                                all_versions=args.all_versions,
                                baseline=Path(args.baseline) if args.baseline else None,
                                site=not args.no_site)
    print(f"wrote {len(written)} file(s) to {args.out}/")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from blobench.workflows.api import load_results

    frame = load_results(args.results, all_versions=args.all_versions)
    if frame.empty:
        raise UserError(f"no records in {args.results}/: run `blobench run` first")
    if args.traces:
        from blobench.execution.store import ResultsStore
        from blobench.reporting.results import results_frame

        frame = results_frame(ResultsStore(args.results), all_versions=args.all_versions,
                              traces=True)
    if args.format == "parquet":
        from blobench.reporting.results import write_parquet

        if not args.out:
            raise UserError("--format parquet writes a binary file: give --out FILE")
        write_parquet(frame, args.out)
        return 0
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
    from blobench.workflows.scaffold import new_entry

    registry = _registry(args)
    path = new_entry(registry, args.kind, args.name, Path(args.dir) if args.dir else None)
    how = f"blobench check {args.name}" if args.kind == "algorithm" else (
        f"blobench check -p {args.name}")
    extra = f" --plugins {path.parent}" if args.dir else ""
    print(f"wrote {path}\nnext: edit it, then `{how}{extra}`")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from blobench.workflows.check import check_algorithm, check_problem, format_report

    registry = _registry(args)
    if args.name:
        findings = check_algorithm(registry, args.name, problems=args.problem or None)
        print(format_report(
            f"algorithm {args.name} ({registry.source_file('algorithm', args.name)})",
            findings))
        return 0 if all(f.passed for f in findings) else 1
    if not args.problem:
        raise UserError("name an algorithm to check, or problems with -p NAME")
    passed = True
    for name in args.problem:
        findings = check_problem(registry, name)
        print(format_report(f"problem {name} ({registry.source_file('problem', name)})",
                            findings))
        passed = passed and all(f.passed for f in findings)
    return 0 if passed else 1


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
    args = build_parser(argv).parse_args(argv)
    args.argv = argv
    args.verbosity = 1 + (args.verbose or 0) - (args.quiet or 0)
    try:
        check_args(args)  # files, folders, numbers, device: before any work (issue 18)
        with corrupt_report(args.command != "run"):  # run reports them itself
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
