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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from blobench.execution.harness import Cell
    from blobench.execution.registry import Registry
    from blobench.execution.runner import Summary
    from blobench.execution.store import ResultsStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: the committed tuned settings, located relative to the project (not the working directory)
DEFAULT_SETTINGS = PROJECT_ROOT / "leaderboards" / "tuned_settings.json"
DEFAULT_RESULTS = "results"
#: seeds when neither the spec nor its suite says
DEFAULT_SEEDS = 1


@dataclass(frozen=True)
class Suite:
    """A named selection of cells: its problems (empty = every registered problem) and seeds.
    Options given explicitly (``-p``, ``--seeds``) override the suite's."""

    problems: tuple[str, ...]
    seeds: int
    about: str


#: ``blobench run --suite NAME`` (default ``quick``). The quick suite keeps the problems whose
#: quick-size cells cost about a CPU-second or less with every algorithm (measured per cell
#: in leaderboards/benchmarks/NOTES.md), so that the first run finishes in minutes on two
#: cores; ``standard`` is the leaderboard's suite.
SUITES: dict[str, Suite] = {
    "quick": Suite(("coupled_quadratic", "datacleaning_logreg", "distill_linear",
                    "finite_sum_quadratic", "logreg_ho", "overparam_linreg",
                    "penalty_synthetic", "poison_logreg", "quadratic", "ridge_ho", "sparse_ho"),
                   1, "the problems whose cells take about a CPU-second, every algorithm, "
                      "1 seed: the first run"),
    "all": Suite((), 1, "every problem × every applicable algorithm, 1 seed"),
    "standard": Suite((), 3, "every problem × every applicable algorithm × 3 seeds: the "
                             "leaderboard's suite"),
}
DEFAULT_SUITE = "quick"
#: option names of the CLI that name a spec field differently
_ALIASES = {"problem": "problems", "algorithm": "algorithms", "no_tuned": "tuned",
            "no_progress": "progress"}
_INVERTED = {"no_tuned", "no_progress"}


def cores() -> int:
    """CPU cores this process may use (the default number of cells run at once)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_n_jobs(in_process: bool = False, backend: str = "local") -> int:
    """Cells at once when ``--n-jobs`` is not given: every core locally, every Dask worker
    (-1) on a cluster, one in-process. The same default for run, tune and reproduce."""
    return 1 if in_process else -1 if backend == "dask" else cores()


@dataclass
class RunSpec:
    """Everything a run needs; see the module docstring. Defaults = ``blobench run``'s."""

    problems: list[str] = field(default_factory=list)      # entries with bracket grids; [] = all
    algorithms: list[str] = field(default_factory=list)    # [] = all
    seeds: int | list[int] | None = None                   # N → 0..N-1, a list; None: suite's
    suite: str = DEFAULT_SUITE                             # SUITES: what -p/--seeds default to
    size: str = "quick"
    steps: int | None = None                               # None = the problem's budget
    max_seconds: float | None = None
    eval_every: int | None = None
    device: str = "cpu"
    threads: int = 1
    n_jobs: int | None = None                              # None = default_n_jobs()
    backend: str = "local"
    scheduler: str | None = None
    cell_timeout: float | None = None
    in_process: bool = False
    force: bool = False
    retry_failed: bool = False                             # rerun cached failures
    strict: bool = False
    settings: str | None = None                            # None = DEFAULT_SETTINGS
    tuned: bool = True
    plugins: list[str] = field(default_factory=list)
    results: str = DEFAULT_RESULTS
    data_dir: str | None = None                            # None: $BLOBENCH_DATA or the cache
    progress: bool = True
    #: the TOML file this spec was read from (provenance only)
    config_file: str | None = None

    def the_suite(self) -> Suite:
        from blobench.contracts.errors import unknown_name

        if self.suite not in SUITES:
            raise unknown_name("suite", self.suite, SUITES)
        return SUITES[self.suite]

    @property
    def seed_list(self) -> list[int]:
        seeds = self.the_suite().seeds if self.seeds is None else self.seeds
        if isinstance(seeds, int):
            return list(range(seeds))
        return [int(s) for s in seeds]

    def problem_list(self, registered: Iterable[str]) -> list[str]:
        """The problems to run: the spec's, else its suite's (registered ones), else all."""
        registered = sorted(registered)
        if self.problems:
            return list(self.problems)
        chosen = [p for p in self.the_suite().problems if p in registered]
        return chosen or registered

    @property
    def jobs(self) -> int:
        return self.n_jobs or default_n_jobs(self.in_process, self.backend)

    def to_dict(self) -> dict[str, Any]:
        """The spec as TOML-able keys (None values left out)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "config_file":
                continue
            out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
        return out

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "config") -> RunSpec:
        """A spec from keys named like the options (``n-jobs`` or ``n_jobs``; ``problem`` or
        ``problems``; ``no-tuned = true`` or ``tuned = false``); unknown keys are an error."""
        from blobench.contracts.errors import unknown_name

        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = raw_key.replace("-", "_")
            name = _ALIASES.get(key, key)
            if name not in known or name == "config_file":
                raise unknown_name(f"key in {where}:", raw_key,
                                   [k.replace("_", "-") for k in known if k != "config_file"])
            if key in _INVERTED:
                value = not value
            if name in ("problems", "algorithms", "plugins") and isinstance(value, str):
                value = [value]
            values[name] = value
        return cls(**values)


# ------------------------------------------------------------------------- config files
def load_config(path: str | Path) -> dict[str, Any]:
    """The keys of a ``run.toml`` (tomllib on Python ≥ 3.11, the ``tomli`` backport before)."""
    from blobench.contracts.errors import UserError

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    return data.get("run", data)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def save_config(spec: RunSpec, path: str | Path) -> Path:
    """Write ``spec`` as a TOML ``[run]`` table that ``--config`` reads back to the same spec."""
    path = Path(path)
    lines = ["# blobench run --config " + path.name, "[run]"]
    for key, value in spec.to_dict().items():
        lines.append(f"{key.replace('_', '-')} = {_toml_value(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- the pipeline
def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


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

    def provenance(self) -> dict[str, Any]:
        """What each record of this run carries as ``run``: the spec and its config file."""
        return {"spec": self.spec.to_dict(), "config_file": self.spec.config_file,
                "settings": self.settings_path, "cells": len(self.cells),
                "n_jobs": self.spec.jobs,
                "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}

    def execute(self, on_record: Callable[[dict[str, Any]], None] | None = None,
                progress: str | None = None) -> Summary:
        """Run the cells not in the store yet (all with ``force``); records go to the store.

        ``progress``: "bar", "lines", "off" or None (the spec's ``progress`` and the terminal
        decide: a bar on a TTY, one line per finished cell otherwise; ``TQDM_DISABLE`` off).
        """
        from blobench.execution.runner import progress_mode, run_cells

        spec = self.spec
        return run_cells(self.registry, self.cells, self.store, force=spec.force,
                         retry_failed=spec.retry_failed,
                         n_jobs=spec.jobs, backend=spec.backend, scheduler=spec.scheduler,
                         cell_timeout=spec.cell_timeout, isolate=not spec.in_process,
                         progress=progress or progress_mode(spec.progress),
                         on_record=on_record, provenance=self.provenance())

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
    from blobench.workflows.tuning import load_settings

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
    from blobench.workflows.tuning import stale_files

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


# ------------------------------------------------------------------------ the public API
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
