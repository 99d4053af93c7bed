"""``blobench list``: the registry as text, cached under a fingerprint of its sources.

The listing imports every entry (and so torch); its text is cached in
``$XDG_CACHE_HOME/blobench`` under :func:`_listing_key`, a fingerprint of every source file it
depends on, so that a repeated ``blobench list`` imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from blobench import __version__
from blobench.cli.commands import warn


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
        report = None
        if getattr(args, "variants", False):  # the structural check of every variant
            from blobench.workflows.variants import check_variants

            report = check_variants(registry)
            checked = report.per_entry()
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
            if report is not None:
                count, axes = _variants(cls)
                passed = checked.get(name, (0, 0))[0]
                lines.append(f"      variants: {passed} of {count} pass the structural check "
                             f"({' × '.join(axes) or 'one'})")
        if report is not None:
            lines.append(report.summary() + " (the reasons, variant by variant: "
                         "python -m blobench.workflows.variants)")
    warnings = [f"plugin {where} not loaded: {message}" for where, message in registry.errors]
    return "\n".join(lines) + "\n", warnings


def _variants(cls: type) -> tuple[int, list[str]]:
    """(number of valid discrete configurations, the axes ``name(n)``) of an algorithm class:
    the combinations of its bool and ``choices`` hyperparameters (``None`` too when optional)
    that the entry accepts (:mod:`blobench.workflows.variants`)."""
    from blobench.workflows.variants import discrete_axes, enumerate_variants

    axes = discrete_axes(cls)
    return len(enumerate_variants(cls)), [f"{k}({len(v)})" for k, v in axes.items()]


def _listing_key(args: argparse.Namespace) -> str:
    """Fingerprint of everything ``blobench list`` shows: the path, size and mtime of every
    engine and plugin source file, the installed entry points, the options."""
    import hashlib
    from importlib.metadata import entry_points

    from blobench.workflows.api import PROJECT_ROOT

    h = hashlib.sha256(f"{__version__} {args.what} {getattr(args, 'variants', False)} "
                       f"{sys.version}".encode())
    engine = Path(__file__).resolve().parents[1]  # blobench/: every engine source file
    folders = [engine, PROJECT_ROOT / "problems", PROJECT_ROOT / "algorithms",
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
        warn(message)
    sys.stdout.write(text)
    return 0
