"""``blobench bench`` on the command line: its options and the command."""

from __future__ import annotations

import argparse

from blobench.contracts.errors import UserError
from blobench.execution.registry import get_registry
from blobench.workflows.bench.costs import CASES
from blobench.workflows.bench.full_scale import FULL_SCALE, FULL_SCALE_REPORT, write_full_scale
from blobench.workflows.bench.report import DEFAULT_REPORT, run_benchmark, write_report


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
                             "single-loop step cost, --n-jobs speed-up)")
    parser.add_argument("--no-kernels", action="store_true",
                        help="skip the hypergradient cost ratios and harness cells")
    parser.add_argument("--suite", default="quick",
                        help="the suite whose problems the evaluation share is measured on "
                             "(default quick, the default run's; all: every problem)")
    parser.add_argument("--run-results", metavar="DIR", action="append", default=[],
                        help="also report the latest `blobench run` stored in DIR: its wall "
                             "time, efficiency and the progress ETA's error (repeatable; two "
                             "runs of the same cells at --n-jobs 1 and 2 give the suite's "
                             "speed-up)")
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
                           run_results=args.run_results or None, suite=args.suite)
    js, md = write_report(report, args.report)
    print(f"report: {md} and {js}")
    return 0
