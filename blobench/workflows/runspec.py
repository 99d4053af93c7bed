"""What a run is: :class:`RunSpec` (what, on what budget, how, with which settings, where),
the named suites, and the ``--config`` TOML files that hold a spec.

The spec's field names are the ``blobench run`` options (``--n-jobs`` ↔ ``n_jobs``), so a TOML
file of those keys is a spec (:func:`load_config`, :func:`save_config`). This module imports
nothing heavy: the command line builds a spec from its options at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: the committed tuned settings, located relative to the project (not the working directory)
DEFAULT_SETTINGS = PROJECT_ROOT / "leaderboards" / "tuned_settings.json"
#: the committed leaderboard's cell timings: a fresh clone's ETA and cell order
#: (:mod:`blobench.execution.progress`)
SHIPPED_TIMINGS = PROJECT_ROOT / "leaderboards" / "cell_seconds.json"
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
#: quick-size cells cost seconds with every algorithm (about a CPU-second for most; measured
#: per cell in leaderboards/benchmarks/NOTES.md), so that the first run finishes in minutes on
#: two cores, and one problem of each network kind of issue 20 (ConvNet distillation, Conv-4
#: few-shot in both formulations, Meta-Weight-Net, learning-rate schedules) at a quick size of
#: 1–30 CPU-s per cell; ``standard`` is the leaderboard's suite.
SUITES: dict[str, Suite] = {
    "quick": Suite(("coupled_quadratic", "datacleaning_logreg", "distill_linear",
                    "finite_sum_quadratic", "logreg_ho", "overparam_linreg",
                    "penalty_synthetic", "poison_logreg", "quadratic", "ridge_ho", "sparse_ho",
                    "distill_convnet", "fewshot_conv4", "fewshot_ridge", "meta_weight_net",
                    "lr_schedule"),
                   1, "the problems whose quick cells take seconds (the networks' included), "
                      "every algorithm, 1 seed: the first run"),
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
