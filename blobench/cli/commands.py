"""The commands the CLI implements itself: run, leaderboard, results, new, check.

Each ``cmd_*`` takes the parsed options and returns the exit code; it imports what it needs
when it runs (the workflows, the registry, pandas), so that parsing stays cheap. ``blobench
run`` turns its options into one :class:`~blobench.workflows.api.RunSpec` (:func:`run_spec`)
and runs it through :func:`blobench.workflows.api.prepare`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from blobench.contracts.errors import UserError
from blobench.workflows.api import RunSpec


def note(args: argparse.Namespace, message: str, level: int = 1) -> None:
    """A message on stderr shown at verbosity >= ``level`` (1 = default, 2 = -v)."""
    if args.verbosity >= level:
        print(message, file=sys.stderr)


def warn(message: str) -> None:
    print(f"blobench: warning: {message}", file=sys.stderr)


def load_registry(args: argparse.Namespace) -> Any:
    from blobench.execution.registry import get_registry

    registry = get_registry(args.plugins)
    for where, message in registry.errors:
        warn(f"plugin {where} not loaded: {message}")
    return registry


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
        note(args, f"wrote {save_config(spec, args.save_config)}")
    pipeline = prepare(spec)
    for message in pipeline.warnings:
        warn(message)
    if pipeline.skipped:
        note(args, f"{len(pipeline.skipped)} (problem, algorithm) pair(s) skipped: they do not "
              "apply" + ("" if args.verbosity >= 2 else " (-v lists them)"))
        for problem, label, reason in pipeline.skipped:
            note(args, f"  skipped {problem} × {label}: {reason}", level=2)
    note(args, pipeline.settings_message())
    if args.dry_run:
        print(f"{len(pipeline.cells)} cell(s) planned (--dry-run: nothing run)")
        return 0
    mode = progress_mode(spec.progress and args.verbosity >= 1, verbose=args.verbosity >= 2)
    summary = pipeline.execute(progress=mode)
    for path, reason in pipeline.store.corrupt:
        warn(f"corrupt record {path} ({reason}); its cell was rerun")
    if summary.ran == 0 and summary.cached:
        print(f"nothing to do: all {summary.cached} cell(s) are already in {spec.results}/ "
              "(use --force to rerun)")
        if summary.cached_failures:
            print(summary.text().split("\n", 1)[1])
    else:
        print(summary.text())
    if summary.efficiency is not None:
        note(args, f"wall {summary.wall_seconds:.1f} s for {summary.solver_seconds:.1f} s of "
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

    registry = load_registry(args)
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
    from blobench.workflows.tuning.settings import DEFAULT_SETTINGS, load_settings

    written = write_leaderboard(registry, store, Path(args.out),
                                command=command, figures=not args.no_figures,
                                all_versions=args.all_versions,
                                baseline=Path(args.baseline) if args.baseline else None,
                                site=not args.no_site, settings=load_settings(DEFAULT_SETTINGS))
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

    registry = load_registry(args)
    path = new_entry(registry, args.kind, args.name, Path(args.dir) if args.dir else None)
    how = f"blobench check {args.name}" if args.kind == "algorithm" else (
        f"blobench check -p {args.name}")
    extra = f" --plugins {path.parent}" if args.dir else ""
    print(f"wrote {path}\nnext: edit it, then `{how}{extra}`")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from blobench.workflows.check import check_algorithm, check_problem, format_report

    registry = load_registry(args)
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
