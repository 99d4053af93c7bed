"""The run pipeline: a :class:`Pipeline` built once from a :class:`RunSpec` by :func:`prepare`.

:func:`prepare` resolves the registry (with the spec's plugins), the results store and the
tuned-settings file — located by :func:`resolve_settings` (explicit path, else the project's
``leaderboards/tuned_settings.json``, never the current directory) and resolved into the cells
before planning, so the lower layers never reach back up — and plans the cells.
:meth:`Pipeline.execute` hands them to :func:`blobench.execution.runner.run_cells`. Heavy
modules (torch through the harness, pandas) are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blobench.workflows.runspec import DEFAULT_SETTINGS, SHIPPED_TIMINGS, RunSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from blobench.execution.harness import Cell
    from blobench.execution.registry import Registry
    from blobench.execution.runner import Summary
    from blobench.execution.store import ResultsStore


@dataclass
class Pipeline:
    """A run built once from a :class:`RunSpec`: the objects every later step uses."""

    spec: RunSpec
    registry: Registry
    store: ResultsStore
    cells: list[Cell]
    #: (problem, algorithm label, reason) pairs that do not apply
    skipped: list[tuple[str, str, str]]
    #: the tuned-settings file used (None: none, or --no-tuned) and how many cells it set
    settings_path: str | None
    settings_cells: int
    warnings: list[str]

    def settings_message(self) -> str:
        if not self.spec.tuned:
            return "tuned settings: not used (--no-tuned): every unset parameter at its default"
        if self.settings_path is None:
            return (f"tuned settings: none found at {_display(DEFAULT_SETTINGS)}; every "
                    "unset parameter at its default")
        if not self.settings_cells:
            return f"tuned settings: {_display(self.settings_path)} applies to none of the cells"
        return (f"tuned settings: {_display(self.settings_path)} applied to "
                f"{self.settings_cells} of {len(self.cells)} cell(s)")

    def provenance(self, timings: str | None = None) -> dict[str, Any]:
        """What each record of this run carries as ``run``: the spec and its config file, the
        tuned-settings file, the digest of the timing table the ETA read (kept in the store:
        :func:`blobench.execution.progress.save_run_timings`), the load at the start."""
        return {"spec": self.spec.to_dict(), "config_file": self.spec.config_file,
                "settings": self.settings_path, "cells": len(self.cells),
                "n_jobs": self.spec.jobs, "timings": timings,
                "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}

    def execute(self, on_record: Callable[[dict[str, Any]], None] | None = None,
                progress: str | None = None) -> Summary:
        """Run the cells not in the store yet (all with ``force``); records go to the store.

        ``progress``: "bar", "lines", "off" or None (the spec's ``progress`` and the terminal
        decide: a bar on a TTY, one line per finished cell otherwise; ``TQDM_DISABLE`` off).
        """
        from blobench.execution.progress import load_cell_seconds, save_run_timings
        from blobench.execution.runner import progress_mode, run_cells

        spec = self.spec
        timings = load_cell_seconds(SHIPPED_TIMINGS)
        digest = save_run_timings(self.store.root, timings) if self.cells else None
        return run_cells(self.registry, self.cells, self.store, force=spec.force,
                         shipped_seconds=timings,
                         retry_failed=spec.retry_failed,
                         n_jobs=spec.jobs, backend=spec.backend, scheduler=spec.scheduler,
                         cell_timeout=spec.cell_timeout, isolate=not spec.in_process,
                         progress=progress or progress_mode(spec.progress),
                         on_record=on_record, provenance=self.provenance(digest))

    def records(self) -> list[dict[str, Any]]:
        """The stored records of this run's cells (cells not run yet are left out)."""
        from blobench.execution.harness import cell_version

        out = []
        for cell in self.cells:
            record = self.store.load(cell.key(cell_version(self.registry, cell)))
            if record is not None:
                out.append(record)
        return out

    def frame(self) -> pd.DataFrame:
        """This run's records as one flat table (see :func:`blobench.reporting.results.flatten`)."""
        import pandas as pd

        from blobench.reporting.results import flatten

        frame = pd.DataFrame([flatten(r) for r in self.records()])
        if frame.empty:
            return frame
        return frame.sort_values(["problem", "size", "label", "seed"]).reset_index(drop=True)


def _display(path: str | Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def resolve_settings(spec: RunSpec) -> tuple[str | None, dict[str, Any] | None]:
    """The tuned-settings file of ``spec`` (path, contents): an explicit path must exist; the
    default is the project's file, and a missing default means "none" (path None)."""
    from blobench.contracts.errors import UserError
    from blobench.workflows.tuning.settings import load_settings

    if not spec.tuned:
        return None, None
    if spec.settings is not None:
        path = Path(spec.settings)
        if not path.exists():
            raise UserError(f"tuned settings file {spec.settings!r} does not exist "
                            "(omit --settings for the project's, or --no-tuned for none)")
    else:
        path = DEFAULT_SETTINGS
        if not path.exists():
            return None, None
    path = path.resolve()
    return str(path), load_settings(path)


def prepare(spec: RunSpec) -> Pipeline:
    """Build the :class:`Pipeline` of ``spec``: registry (with its plugins), store, tuned
    settings resolved, cells planned. Raises :class:`~blobench.contracts.errors.UserError` on bad
    input
    before anything runs."""
    from blobench.execution.harness import plan
    from blobench.execution.registry import get_registry
    from blobench.execution.store import ResultsStore

    if spec.data_dir:  # the cells read the data root from the environment they inherit
        from blobench.toolkit.data.root import ENV

        os.environ[ENV] = str(Path(spec.data_dir).expanduser().resolve())
    registry = get_registry(spec.plugins)
    warnings = [f"plugin {where} not loaded: {message}" for where, message in registry.errors]
    store = ResultsStore(spec.results)
    settings_path, tuned = resolve_settings(spec)
    cells, skipped = plan(
        registry, spec.problem_list(registry.problems),
        spec.algorithms or sorted(registry.algorithms), spec.seed_list, size=spec.size,
        device=spec.device, steps=spec.steps, seconds=spec.max_seconds,
        eval_every=spec.eval_every, threads=spec.threads, plugins=tuple(spec.plugins),
        tuned=tuned)
    warnings += _stale_warnings(registry, cells) if tuned is not None else []
    return Pipeline(spec=spec, registry=registry, store=store, cells=cells, skipped=skipped,
                    settings_path=settings_path,
                    settings_cells=sum(bool(c.tuned) for c in cells), warnings=warnings)


def _stale_warnings(registry: Registry, cells: Iterable[Cell]) -> list[str]:
    from blobench.workflows.tuning.settings import stale_files

    by_file: dict[str, set[str]] = {}
    for cell in cells:
        if cell.tuned:
            changed = stale_files(registry, cell.problem, cell.algorithm,
                                  cell.tuned.get("code", {}))
            if changed:
                by_file.setdefault(", ".join(changed), set()).add(cell.tuned["key"])
    if not by_file:
        return []
    names = sorted(set().union(*by_file.values()))
    files = sorted({f for changed in by_file for f in changed.split(", ")})
    return [f"{len(names)} tuned setting(s) stale (tuned before a change to "
            f"{', '.join(files[:4])}{', ...' if len(files) > 4 else ''}): "
            f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}; "
            "rerun blobench tune --missing"]
