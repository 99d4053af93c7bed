"""Where a page's numbers come from: the command and code that made it, and tuned settings
that are stale.

**Stale tuned settings** are read from the records themselves: a cell whose unset
hyperparameters came from a tuned-settings file carries that provenance (``record["tuned"]``,
written by the harness's planner: the settings key and file, the parameters taken, and under
``code`` the SHA-256 of the problem and algorithm files the setting was tuned on, with their
paths). A setting is stale when such a file's hash differs from the file the registry loads
now (or the entry is no longer registered): the problem or algorithm changed since it was
tuned, so the tuned value may no longer be the tuned one. Only the execution layer is used
(the registry's source files, the code version's file hash), so reporting does not depend on
the tuning workflow.
"""

from __future__ import annotations

import platform
from typing import Any

from blobench.contracts.errors import UserError
from blobench.execution.registry import Registry
from blobench.execution.version import _file_hash, git_describe


def provenance_line(command: str) -> str:
    """The sentence closing every page: command, code version, machine."""
    return (f"Made by `{command}` at code version `{git_describe()}` on "
            f"{platform.node()} ({platform.machine()}, {platform.system()}, "
            f"{platform.processor() or 'cpu'}).")


def stale_tuned_files(registry: Registry, record: dict[str, Any]) -> list[str]:
    """The entry files (as recorded at tuning time) of ``record``'s tuned setting that changed
    since it was tuned; [] for a record without tuned settings."""
    tuned = record.get("tuned") or {}
    if not tuned:
        return []
    code = tuned.get("code") or {}
    cfg = record["config"]
    changed = []
    for kind in ("problem", "algorithm"):
        name = cfg[kind]
        try:
            path = registry.source_file(kind, name)
        except (KeyError, UserError):
            changed.append(f"{kind} {name} (no longer registered)")
            continue
        recorded = code.get(f"{kind}_sha256")
        if recorded is None or _file_hash(path) != recorded:
            changed.append(str(code.get(f"{kind}_file") or path))
    return changed


def stale_settings(registry: Registry, records: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """One entry per stale tuned setting used by ``records``: its ``key``, the ``label`` of
    the first configuration that used it and the ``files`` that changed."""
    out, seen = [], set()
    for rec in records:
        key = (rec.get("tuned") or {}).get("key")
        if not key or key in seen:
            continue
        seen.add(key)
        files = stale_tuned_files(registry, rec)
        if files:
            out.append({"key": key, "label": rec["label"], "files": files})
    return sorted(out, key=lambda s: s["key"])
