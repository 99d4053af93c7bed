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
