"""``blobench data list`` and ``blobench data fetch NAME`` (a subcommand of blobench.cli).

``list``: every registered dataset with its license, status (present / missing) and the
folder it is read from (or would be fetched to). ``fetch``: see :mod:`blobench.toolkit.data.fetch`.
Both take ``--data-dir`` (else ``$BLOBENCH_DATA``, else ``~/.cache/blobench/data``).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "fetch"),
                        help="list: datasets, license, status; fetch NAME: download one")
    parser.add_argument("name", nargs="?", help="dataset to fetch")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="data root (default: $BLOBENCH_DATA, else ~/.cache/blobench/data)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def command(args: argparse.Namespace) -> int:
    from blobench.contracts.errors import UserError
    from blobench.toolkit.data.catalog import DATASETS, dataset
    from blobench.toolkit.data.fetch import fetch
    from blobench.toolkit.data.root import data_root, locate, user_folder

    if args.action == "list":
        print(f"data root: {data_root(args.data_dir)}")
        rows = [("dataset", "status", "license", "where")]
        for ds in DATASETS.values():
            found = locate(ds, args.data_dir)
            rows.append((ds.name, "present" if found else "missing", ds.license,
                         str(found or user_folder(ds, args.data_dir))))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True))
                  + "  " + row[3])
        return 0
    if not args.name:
        raise UserError(f"name a dataset to fetch; valid: {', '.join(DATASETS)}")
    folder = fetch(dataset(args.name), args.data_dir, progress=not args.no_progress)
    print(f"{args.name}: present and verified in {folder}")
    return 0
