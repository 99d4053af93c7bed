"""``blobench reproduce NAME`` on the command line: its options and the command."""

from __future__ import annotations

import argparse

from blobench.contracts.errors import UserError
from blobench.execution.registry import get_registry
from blobench.workflows.reproduce.run import DEFAULT_OUT, REPRODUCTIONS, reproduce


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help=f"which reproduction: {', '.join(REPRODUCTIONS)}")
    parser.add_argument("--full", action="store_true",
                        help="the papers' scale (problems' full size, 5 seeds, 3× steps)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"where the page and figures go (default {DEFAULT_OUT})")
    parser.add_argument("--n-jobs", type=int, default=1, metavar="N",
                        help="cells run at once (each in its own process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def command(args: argparse.Namespace) -> int:
    if args.name not in REPRODUCTIONS:
        raise UserError(f"unknown reproduction {args.name!r}; valid: "
                        f"{', '.join(REPRODUCTIONS)}")
    if args.n_jobs < 1:
        raise UserError(f"--n-jobs must be >= 1, got {args.n_jobs}")
    registry = get_registry(args.plugins)
    argv = getattr(args, "argv", None)
    cmd = "blobench " + " ".join(argv) if argv else None
    page, verdicts = reproduce(args.name, args.out, args.results,
                               "full" if args.full else "default", args.n_jobs,
                               not args.no_progress, registry=registry, command=cmd)
    width = max(len(v.claim) for v in verdicts) if verdicts else 10
    for v in verdicts:
        print(f"{v.claim[:70]:<{min(width, 70)}}  {v.verdict:<15}  {v.measured}")
    print(f"wrote {page}")
    return 0
