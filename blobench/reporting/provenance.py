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

**Confirmed settings** (:func:`confirmations`): ``blobench tune`` runs each winner again on
fresh seeds and falls back to the next trial while it fails there
(blobench/workflows/tuning/confirm.py); the page says so for the settings it used, from a
tuned-settings file the caller loaded (the command line passes the project's), and only for
entries whose params are the ones the records ran with.
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


def confirmations(records: list[dict[str, Any]], settings: dict[str, Any] | None
                  ) -> dict[str, Any]:
    """What the page says of the confirmation of the tuned settings its ``records`` used:
    ``confirmed`` (how many of them were confirmed), ``seeds`` (those of the first),
    ``replaced`` (per setting that is not the search's best: its ``label``, the ``best``
    trial's params and ``status`` on the confirmation seeds) and ``unconfirmed`` (labels of
    settings no trial of which passed). Empty when ``settings`` is None or holds no
    confirmation of these entries."""
    table = (settings or {}).get("settings", {})
    out: dict[str, Any] = {"confirmed": 0, "seeds": [], "replaced": [], "unconfirmed": []}
    seen = set()
    for rec in records:
        key = (rec.get("tuned") or {}).get("key")
        entry = table.get(key) if key else None
        if key in seen or not entry or not entry.get("confirmation"):
            continue
        seen.add(key)
        done = entry["confirmation"]
        ran = rec["config"].get("algorithm_params", {})
        if any(ran.get(k) != v for k, v in (done.get("params") or {}).items()):
            continue  # the file holds another setting than the one these records ran with
        out["seeds"] = out["seeds"] or done["seeds"]
        if not done.get("passed"):
            out["unconfirmed"].append(rec["label"])
            continue
        out["confirmed"] += 1
        if len(done["checked"]) > 1:
            first = done["checked"][0]
            best = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in first["params"].items())
            out["replaced"].append({"label": rec["label"], "best": best,
                                    "status": first["status"]})
    return out if seen else {}
