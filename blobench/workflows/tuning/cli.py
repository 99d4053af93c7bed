"""``blobench tune`` on the command line: its options, and the sweep over (problem, algorithm)
pairs that writes the settings file after each pair (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blobench.contracts.errors import UserError
from blobench.execution.registry import Registry, get_registry
from blobench.execution.spec import expand
from blobench.execution.store import ResultsStore
from blobench.workflows import runspec
from blobench.workflows.tuning.confirm import CONFIRM_SEEDS, confirm_entry, is_confirmed
from blobench.workflows.tuning.search import TUNING_SEED_BASE, tune_pair
from blobench.workflows.tuning.settings import (
    DEFAULT_SETTINGS,
    load_settings,
    prune_inapplicable,
    save_settings,
    settings_key,
    stale_entries,
)
from blobench.workflows.tuning.space import search_space


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--problem", action="append", default=[], metavar="ENTRY",
                        help="problem (bracket grid allowed; default: all)")
    parser.add_argument("-a", "--algorithm", action="append", default=[], metavar="ENTRY",
                        help='algorithm; single bracket values are fixed, lists are searched: '
                             '"soba[decay=false,outer_lr=[0.1,1]]" (default: all)')
    parser.add_argument("--budget", type=int, metavar="STEPS",
                        help="outer steps per trial (default: the problem's budget)")
    parser.add_argument("--budget-seconds", type=float, metavar="S",
                        help="solver seconds per trial instead (then inner_steps is tuned too)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help=f"tuning seeds {TUNING_SEED_BASE}..{TUNING_SEED_BASE}+N-1 "
                             "(default 1; disjoint from the leaderboard's 0..N-1)")
    parser.add_argument("--size", default="quick", help="problem size (default quick)")
    parser.add_argument("--n-jobs", type=int, metavar="N",
                        help="trial cells run at once (default: the available cores, as in "
                             "blobench run)")
    parser.add_argument("--max-trials", type=int, metavar="N",
                        help="at most N grid points per pair (a fixed random subset)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, metavar="FILE",
                        help="tuned-settings file to update (default: the project's "
                             "leaderboards/tuned_settings.json)")
    parser.add_argument("--only", action="append", default=[], metavar="PARAM",
                        help="search only these parameters of the space (repeatable); the "
                             "others stay at their defaults")
    parser.add_argument("--missing", action="store_true",
                        help="only pairs with no fresh entry in the settings file (absent, or "
                             "stale): resume or refresh a sweep")
    parser.add_argument("--confirm-seeds", type=int, default=CONFIRM_SEEDS, metavar="K",
                        help="run each winner on K fresh seeds after the search and fall "
                             "back to the next best trial while it fails on one (default "
                             f"{CONFIRM_SEEDS}; 0: no confirmation)")
    parser.add_argument("--confirm-only", action="store_true",
                        help="no search: confirm the selected entries of the settings file "
                             "on --confirm-seeds seeds (those already confirmed are skipped)")
    parser.add_argument("--in-process", action="store_true",
                        help="run trial cells in this process (no isolation)")
    parser.add_argument("--progress", action="store_true", help="progress bar per pair")


def check_only_names(only: list[str], algorithms: list[str], plugins: list[str]) -> None:
    """``tune --only NAME``: each NAME must be a dimension of the search space of one of the
    selected algorithms (all when none is selected), else nothing would be searched."""
    registry = get_registry(plugins)
    names = [expand(text)[0] for text in algorithms] or sorted(registry.algorithms)
    space: set[str] = set()
    for name in names:
        cls = registry.algorithms.get(name)
        if cls is not None:  # an unknown algorithm is reported by the command itself
            space |= set(search_space(cls, False)) | set(search_space(cls, True))
    unknown = [name for name in only if name not in space]
    if unknown and space:
        raise UserError(f"--only {unknown[0]!r} is not in the search space of "
                        f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}; "
                        f"valid: {', '.join(sorted(space))}")


def command(args: argparse.Namespace) -> int:
    if args.confirm_seeds < 0 or (args.confirm_only and args.confirm_seeds < 1):
        raise UserError(f"--confirm-seeds must be >= {1 if args.confirm_only else 0}, got "
                        f"{args.confirm_seeds}")
    for opt in ("budget", "seeds", "n_jobs", "max_trials"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise UserError(f"--{opt.replace('_', '-')} must be >= 1, got {value}")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        raise UserError(f"--budget-seconds must be > 0, got {args.budget_seconds}")
    if args.budget is not None and args.budget_seconds is not None:
        raise UserError("give --budget (steps) or --budget-seconds, not both")
    if args.only:
        check_only_names(args.only, args.algorithm, args.plugins)
    registry = get_registry(args.plugins)
    for where, message in registry.errors:
        print(f"blobench: warning: plugin {where} not loaded: {message}", file=sys.stderr)
    settings = load_settings(args.settings)
    store = ResultsStore(Path(args.results) / "tuning")
    seeds = [TUNING_SEED_BASE + i for i in range(args.seeds)]
    cmd = "blobench " + " ".join(getattr(args, "argv", None) or ["tune"])
    run = {"n_jobs": args.n_jobs or runspec.default_n_jobs(args.in_process),
           "isolate": not args.in_process, "plugins": tuple(args.plugins),
           "progress": args.progress, "command": cmd}
    if args.confirm_only:
        confirm_settings(registry, settings, args, store, run)
        print(f"wrote {args.settings}")
        return 0
    problems = args.problem or sorted(registry.problems)
    algorithms = args.algorithm or sorted(registry.algorithms)
    failed = 0
    stale = {key for key, _ in stale_entries(registry, settings)}
    for ptext in problems:
        for atext in algorithms:
            if args.missing and "[" not in ptext + atext and any(
                    k.startswith(f"{ptext}/{args.size}/") and k.endswith(f"/{atext}")
                    and k not in stale for k in settings["settings"]):
                continue
            entries = tune_pair(registry, ptext, atext, size=args.size, seeds=seeds,
                                steps=args.budget, seconds=args.budget_seconds, store=store,
                                max_trials=args.max_trials, only=tuple(args.only), **run)
            for entry in entries:
                key = settings_key(entry["problem_label"], entry["size"], entry["algorithm"])
                n_ok = sum(t["status"] == "ok" for t in entry["trials"])
                if entry["trials"] and all(t["status"] == "not_applicable"
                                           for t in entry["trials"]):
                    # refused at run time (e.g. a size limit): nothing to tune, not a failure
                    settings["settings"].pop(key, None)
                    print(f"skipped {key}: {entry['trials'][0]['message']}", file=sys.stderr)
                    save_settings(settings, args.settings)
                    continue
                if entry["params"] is None:  # recorded (the search was done), never applied
                    settings["settings"][key] = entry
                    failed += 1
                    print(f"{key}: every one of {len(entry['trials'])} trial(s) failed; "
                          "recorded with params null (run uses the defaults)", file=sys.stderr)
                    save_settings(settings, args.settings)
                    continue
                entry = confirm_entry(registry, entry, k=args.confirm_seeds, store=store, **run)
                settings["settings"][key] = entry
                print(f"{key}: {entry['params']}  {entry['validation_metric']}="
                      f"{entry['score']:.4g}  ({n_ok}/{len(entry['trials'])} trials ok)"
                      + confirmation_text(entry))
                save_settings(settings, args.settings)  # after each pair: resumable
    for key, reason in prune_inapplicable(registry, settings):
        print(f"removed {key}: the pair no longer runs ({reason})", file=sys.stderr)
        save_settings(settings, args.settings)
    print(f"wrote {args.settings}")
    return 1 if failed else 0


def confirmation_text(entry: dict) -> str:
    """What the confirmation did to an entry, for its line of output ('' when none ran)."""
    done = entry.get("confirmation")
    if not done:
        return ""
    seeds = f"seeds {done['seeds'][0]}–{done['seeds'][-1]}"
    if not done["passed"]:
        return f"; no trial ok on every one of {seeds}: the search winner is kept"
    rejected = len(done["checked"]) - 1
    return f"; confirmed on {seeds}" + (
        f" after {rejected} better-scored trial(s) failed there" if rejected else "")


def confirm_settings(registry: Registry, settings: dict, args: argparse.Namespace,
                     store: ResultsStore, run: dict) -> None:
    """``tune --confirm-only``: confirm the selected entries of the settings file (those of
    the ``-p``/``-a`` names and ``--size``; all by default) that are not confirmed yet on
    the same seeds; saved after each."""
    pnames = {expand(text)[0] for text in args.problem}
    anames = {expand(text)[0] for text in args.algorithm}
    for key, entry in sorted(settings["settings"].items()):
        if (pnames and entry["problem"] not in pnames) or (
                anames and entry["algorithm"] not in anames) or entry["size"] != args.size:
            continue
        if entry.get("params") is None or is_confirmed(entry, args.confirm_seeds) or \
                entry["problem"] not in registry.problems or \
                entry["algorithm"] not in registry.algorithms:
            continue
        before = entry["params"]
        entry = confirm_entry(registry, entry, k=args.confirm_seeds, store=store, **run)
        settings["settings"][key] = entry
        change = "" if entry["params"] == before else f" (was {before})"
        print(f"{key}: {entry['params']}{change}" + confirmation_text(entry))
        save_settings(settings, args.settings)
