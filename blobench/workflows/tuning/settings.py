"""The tuned-settings file: load, save, code provenance, staleness, pruning.

JSON, default ``leaderboards/tuned_settings.json`` (committed): one entry per
``"<problem label>/<size>/<algorithm>"`` (see :mod:`blobench.workflows.tuning` for what an
entry holds). An entry is **stale** when the current problem or algorithm file hash differs
from the one recorded when it was tuned. This module imports no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from blobench.contracts.errors import UserError
from blobench.execution.registry import Registry
from blobench.execution.version import _file_hash, engine_hash, git_describe
from blobench.workflows import runspec

#: the project's settings file, located next to the package (not in the working directory)
DEFAULT_SETTINGS = str(runspec.DEFAULT_SETTINGS)
FORMAT = 1


def settings_key(problem_label: str, size: str, algorithm: str) -> str:
    return f"{problem_label}/{size}/{algorithm}"


def load_settings(path: str | Path) -> dict[str, Any]:
    """The settings file (``{"format", "settings": {...}, "path"}``); empty if absent."""
    path = Path(path)
    if not path.exists():
        return {"format": FORMAT, "settings": {}, "path": str(path)}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"tuned settings {str(path)!r} are not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise UserError(f"tuned settings {str(path)!r}: no 'settings' table")
    if data.get("format", FORMAT) > FORMAT:
        raise UserError(f"tuned settings {str(path)!r} have format {data['format']}, newer "
                        f"than this blobench ({FORMAT})")
    data["path"] = str(path)
    return data


def save_settings(data: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {"format": FORMAT,
           "about": "tuned hyperparameters per (problem, size, algorithm), chosen by "
                    "`blobench tune` on the validation metric; see blobench/workflows/tuning/",
           **({"notes": data["notes"]} if data.get("notes") else {}),
           "settings": dict(sorted(data.get("settings", {}).items()))}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def _display_path(path: Path) -> str:
    """A path relative to the repository (or cwd) when inside it, else absolute."""
    path = Path(path).resolve()
    for root in (runspec.PROJECT_ROOT, Path.cwd().resolve()):
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(path)


def code_provenance(registry: Registry, problem: str, algorithm: str) -> dict[str, str]:
    pfile = registry.source_file("problem", problem)
    afile = registry.source_file("algorithm", algorithm)
    return {"problem_file": _display_path(pfile), "problem_sha256": _file_hash(pfile),
            "algorithm_file": _display_path(afile), "algorithm_sha256": _file_hash(afile),
            "engine": engine_hash(), "git": git_describe()}


def stale_files(registry: Registry, problem: str, algorithm: str,
                code: dict[str, str]) -> list[str]:
    """The files (problem, algorithm) whose hash changed since ``code`` was recorded."""
    changed = []
    for kind, name in (("problem", problem), ("algorithm", algorithm)):
        try:
            path = registry.source_file(kind, name)
        except (KeyError, UserError):
            changed.append(f"{kind} {name} (no longer registered)")
            continue
        recorded = code.get(f"{kind}_sha256")
        if recorded is None or _file_hash(path) != recorded:
            changed.append(_display_path(path))
    return changed


def stale_entries(registry: Registry, settings: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(key, changed files) of every stale entry of a settings file."""
    out = []
    for key, entry in settings.get("settings", {}).items():
        if entry.get("problem") not in registry.problems or \
                entry.get("algorithm") not in registry.algorithms:
            continue  # not loaded here (e.g. a plugin folder not given): not ours to judge
        changed = stale_files(registry, entry["problem"], entry["algorithm"],
                              entry.get("code", {}))
        if changed:
            out.append((key, changed))
    return out


def prune_inapplicable(registry: Registry, settings: dict[str, Any]
                       ) -> list[tuple[str, str]]:
    """Remove (and return with the reason) the entries of pairs that planning now skips, e.g.
    after an applicability rule changed, and those whose every trial was refused at run time
    (``not_applicable``: nothing was tuned); entries of unknown entries are kept (a plugin
    folder may just not be loaded)."""
    removed = []
    for key, entry in list(settings["settings"].items()):
        trials = entry.get("trials") or []
        if trials and all(t.get("status") == "not_applicable" for t in trials):
            del settings["settings"][key]  # refused at run time: nothing was tuned
            removed.append((key, trials[0].get("message", "not applicable")))
            continue
        pcls = registry.problems.get(entry["problem"])
        acls = registry.algorithms.get(entry["algorithm"])
        if pcls is None or acls is None:
            continue
        try:
            reason = acls(**entry.get("fixed", {})).skip_reason(pcls, entry["problem_params"])
        except UserError:  # a fixed value no longer valid: left to the staleness check
            continue
        if reason:
            del settings["settings"][key]
            removed.append((key, reason))
    return removed
