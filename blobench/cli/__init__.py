"""The ``blobench`` command line: thin — it parses options and calls the Python API.

``blobench run`` turns its options (and a ``--config`` TOML file) into one
:class:`blobench.workflows.api.RunSpec` and runs it through
:func:`blobench.workflows.api.prepare`; the other subcommands call their module's function.
This package imports nothing heavy at import time (no torch, pandas or plotting): each
subcommand imports what it needs when it runs, and a subcommand implemented in its own module
(``EXTENSIONS``) is imported only when it is the one given, so ``blobench --help`` and
``blobench list`` start fast and a cell process that re-imports the launching script pays
nothing.

Conventions: ``--version``; ``-q/--quiet``, ``-v/--verbose`` and ``--debug`` before or after
the subcommand; ``-p/--problem`` and ``-a/--algorithm`` name entries in every subcommand;
``--n-jobs`` defaults to the available cores in run, tune and reproduce. Bad input is one
line on stderr and exit code 2 (``--debug`` shows the traceback).

Where things are: :mod:`.parser` (every option: :func:`build_parser`), :mod:`.commands` (run,
leaderboard, results, new, check), :mod:`.listing` (``blobench list`` and its cache), and
:func:`main` here (dispatch, one-line errors, interrupts). ``reproduce``, ``tune``, ``bench``
and ``data`` live with their workflows (``add_arguments`` + ``command`` in the module named
in :data:`~blobench.cli.parser.EXTENSIONS`).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from blobench.cli.commands import (
    cmd_check,
    cmd_leaderboard,
    cmd_new,
    cmd_results,
    cmd_run,
    run_spec,
)
from blobench.cli.listing import _listing_key, _variants, cmd_list
from blobench.cli.parser import DEFAULT_LEADERBOARD, EXTENSIONS, build_parser
from blobench.contracts.errors import UserError
from blobench.execution.validate import check_args, corrupt_report

__all__ = ["COMMANDS", "DEFAULT_LEADERBOARD", "EXTENSIONS", "_listing_key", "_variants",
           "build_parser", "main", "run_spec"]

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
