"""The ``blobench`` argument parser: every subcommand's options, nothing run.

Options are declared here and nowhere else (the workflows' own subcommands add theirs through
``add_arguments``, see :data:`EXTENSIONS`). Importing this module imports nothing heavy: the
defaults it shows come from :mod:`blobench.workflows.api`, which imports torch and pandas only
inside its functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NoReturn

from blobench import __version__
from blobench.workflows.api import DEFAULT_RESULTS, DEFAULT_SUITE, SUITES, cores

DEFAULT_LEADERBOARD = "leaderboards"
#: subcommands implemented in their own modules: ``add_arguments(parser)`` and
#: ``command(args) -> exit code``; imported only when given. ``--results``, ``--plugins`` and
#: the verbosity options are added here.
EXTENSIONS = {
    "reproduce": ("blobench.workflows.reproduce.cli",
                  "reproduce a seed paper's claims, with a verdict each"),
    "tune": ("blobench.workflows.tuning.cli", "tune hyperparameters on the validation objective"),
    "bench": ("blobench.workflows.bench.cli",
              "measure the benchmark's own speed against its goals"),
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
                        "choice hyperparameters: warm/cold, inner solver, switches) that pass "
                        "a structural check (one run: a minute; then cached)")
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
