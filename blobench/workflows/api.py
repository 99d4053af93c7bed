"""The Python API and the run pipeline: one :class:`RunSpec` → :class:`Pipeline` → records.

``blobench run`` and :func:`run` take the same path::

    spec = RunSpec(problems=["ridge_ho"], algorithms=["implicit_cg", "unrolled"], seeds=3)
    pipeline = prepare(spec)     # registry, store, tuned settings resolved, cells planned
    summary = pipeline.execute() # isolated cells, records written to the store
    frame = pipeline.frame()     # this run's cells as a pandas DataFrame

- :class:`RunSpec` says *what* to run (problems, algorithms, seeds, size), on *what budget*,
  *how* (jobs, isolation, timeout), with *which* tuned settings and plugins, and *where* to
  store. Its field names are the ``blobench run`` options (``--n-jobs`` ↔ ``n_jobs``), so a
  TOML file of those keys (``blobench run --config run.toml``, written by ``--save-config``)
  is a spec; the file and the spec are recorded in every record's ``run`` provenance.
- :func:`prepare` builds the :class:`Pipeline` once: the tuned-settings file is located
  (explicit path, else the project's ``leaderboards/tuned_settings.json`` next to this
  package — never the current directory) and resolved into the cells before planning, so the
  lower layers never reach back up. What it used is reported (file, how many cells).
- :meth:`Pipeline.execute` hands the cells to :func:`blobench.execution.runner.run_cells`.

This module imports nothing heavy at import time (torch, pandas are imported inside the
functions), so the command line can import it to parse options cheaply.

Where things are: :mod:`blobench.workflows.runspec` (:class:`RunSpec`, the suites, config
files), :mod:`blobench.workflows.pipeline` (:class:`Pipeline`, :func:`prepare`: settings
resolved, cells planned), and here the two one-call functions :func:`run` and
:func:`load_results`. Every name is importable from here, as the docs spell it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blobench.workflows.pipeline import Pipeline, prepare, resolve_settings
from blobench.workflows.runspec import (
    DEFAULT_RESULTS,
    DEFAULT_SEEDS,
    DEFAULT_SETTINGS,
    DEFAULT_SUITE,
    PROJECT_ROOT,
    SUITES,
    RunSpec,
    Suite,
    cores,
    default_n_jobs,
    load_config,
    save_config,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DEFAULT_RESULTS", "DEFAULT_SEEDS", "DEFAULT_SETTINGS", "DEFAULT_SUITE",
           "PROJECT_ROOT", "SUITES", "Pipeline", "RunSpec", "Suite", "cores", "default_n_jobs",
           "load_config", "load_results", "prepare", "resolve_settings", "run", "save_config"]


def run(problems: Iterable[str] | str = (), algorithms: Iterable[str] | str = (),
        seeds: int | Iterable[int] | None = None, *, progress: bool = False,
        **options: Any) -> pd.DataFrame:
    """Run problem × algorithm × seed cells and return their results as a DataFrame.

    ``problems`` / ``algorithms``: entry names with the command line's bracket syntax
    (``"implicit_cg[cg_steps=[5,20]]"``); empty = the suite's (``suite="quick"`` by default:
    see :data:`SUITES`) / all. ``seeds``: N (seeds 0..N-1) or a list; None = the suite's.
    ``options``: any other :class:`RunSpec` field (``size``, ``steps``, ``max_seconds``,
    ``n_jobs``, ``results``, ``settings``, ``tuned``, ``plugins``, ``force``, ...).
    Cells already in the results store are read, not rerun — as ``blobench run`` does. One row
    per cell, the columns of ``blobench results`` (config, status, final metrics).
    """
    def as_list(value: Iterable[str] | str) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    spec = RunSpec(problems=as_list(problems), algorithms=as_list(algorithms),
                   seeds=seeds if seeds is None or isinstance(seeds, int) else list(seeds),
                   progress=progress,
                   **options)
    pipeline = prepare(spec)
    pipeline.execute()
    return pipeline.frame()


def load_results(results: str | Path = DEFAULT_RESULTS, all_versions: bool = False
                 ) -> pd.DataFrame:
    """Every finished cell of a results folder as a DataFrame (the latest record per cell
    configuration unless ``all_versions``), as ``blobench results`` prints it."""
    from blobench.contracts.errors import UserError
    from blobench.execution.store import ResultsStore
    from blobench.reporting.results import results_frame

    if not Path(results).is_dir():
        raise UserError(f"results folder {str(results)!r} does not exist")
    return results_frame(ResultsStore(results), all_versions=all_versions)
