"""``blobench tune``: per-(problem, algorithm) hyperparameter search on the validation objective.

A leaderboard that ranks methods at arbitrary step sizes ranks the step sizes. ``blobench
tune`` runs a documented search space per algorithm through the ordinary harness (the same
cells, budgets and isolation as ``blobench run``), picks the best setting by the problem's
**validation** metric and writes it to a versioned tuned-settings file that ``blobench run``
uses by default.

Rules (each is tested in ``tests/test_tuning.py``):

- **Search space.** An algorithm may declare ``search_space = {"param": LogUniform(low, high,
  n) | IntRange(low, high, n) | Choice([...])}`` (see :mod:`blobench.contracts.params`); a relative
  ``LogUniform(..., relative="outer"|"inner")`` multiplies the problem's
  ``outer_step_size()`` or ``inner_step_size(λ₀)`` (its 1/L). Without a declaration the
  default space (:func:`default_space`) is: ``outer_lr`` ∈ {0.1, 1, 10, 100} × the problem's
  outer step; ``inner_lr`` (and BOME's ``lr``) ∈ {0.3, 1} × the problem's 1/L; and, only under
  a budget in seconds, ``inner_steps`` ∈ {5, 16, 50} (under an outer-step budget more inner
  steps only buy more compute, so T is not tuned there). Bracket lists on the command line
  (``-a "soba[outer_lr=[0.1,1]]"``) replace a dimension by those values; single bracket
  values are fixed. The search is the full grid (Cartesian product); ``--max-trials`` keeps a
  deterministic random subset of it.
- **Budget.** Every trial runs ``--budget`` outer steps (default: the problem's budget for
  the size) or ``--budget-seconds`` of solver time; the budget is recorded.
- **Seeds.** Tuning uses seeds 1000, 1001, ... (``TUNING_SEED_BASE``), disjoint from the
  leaderboard's seeds 0..N-1, so the reported test metrics come from fresh problem draws.
- **Selection.** The score of a trial is the mean over the tuning seeds of the final
  ``Problem.validation_metric`` (lower is better). For the default ``"outer_loss"`` (the
  outer objective on the validation data) it is read at the re-solved inner problem,
  ``restart_outer_loss`` = f(θ*(λ_T), λ_T) = F(λ_T), where the problem allows a restart
  (:func:`selection_metric`): the algorithm's own f(θ_T, λ_T) would reward an unsolved inner
  problem. The test metric (``primary_metric``) is never read. A
  trial with any seed not ``ok`` (diverged, error, timeout) or a non-finite score loses; ties
  (equal scores) go to the smaller mean solver time.
- **Records.** Trial records go to ``<results>/tuning/`` (a results store of its own, so
  tuning cells never appear on the leaderboard and a rerun of ``tune`` reuses them).
- **No winner.** When every trial fails the entry is still written, with ``"params": null``
  and the trials' statuses, so the search is on record; ``blobench run`` then uses the
  defaults for that pair, and ``tune`` exits 1.
- **Settings file** (JSON, default ``leaderboards/tuned_settings.json``, committed): one entry
  per ``"<problem label>/<size>/<algorithm>"`` with the chosen ``params`` (fixed + searched),
  the search space, every trial's parameters, status and score, the tuning seeds, the budget,
  the sha256 of the problem's and the algorithm's files (and the engine hash, git describe),
  the date and the command. An entry is **stale** when the current problem or algorithm file
  hash differs from the recorded one; ``blobench run`` warns and the leaderboard flags it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

import torch

from blobench.contracts.errors import UserError
from blobench.contracts.params import Choice, IntRange, LogUniform, SearchDim, resolve
from blobench.contracts.problem import Budget
from blobench.execution.harness import _non_default, plan
from blobench.execution.registry import Registry, get_registry
from blobench.execution.runner import run_cells
from blobench.execution.spec import expand, format_entry
from blobench.execution.store import ResultsStore
from blobench.execution.version import _file_hash, engine_hash, git_describe
from blobench.workflows import api as _api

#: the project's settings file, located next to the package (not in the working directory)
DEFAULT_SETTINGS = str(_api.DEFAULT_SETTINGS)
TUNING_SEED_BASE = 1000
FORMAT = 1
#: the default search space (see the module docstring)
OUTER_LR = LogUniform(0.1, 100.0, 4, relative="outer")
INNER_LR = LogUniform(0.3, 1.0, 2, relative="inner")
INNER_STEPS = IntRange(5, 50, 3, log=True)
INNER_LR_NAMES = ("inner_lr", "lr")


# ------------------------------------------------------------------ settings file
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
                    "`blobench tune` on the validation metric; see blobench/workflows/tuning.py",
           **({"notes": data["notes"]} if data.get("notes") else {}),
           "settings": dict(sorted(data.get("settings", {}).items()))}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def _display_path(path: Path) -> str:
    """A path relative to the repository (or cwd) when inside it, else absolute."""
    path = Path(path).resolve()
    for root in (Path(__file__).resolve().parents[2], Path.cwd().resolve()):
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


# ------------------------------------------------------------------- search space
def default_space(alg_cls: type, seconds_budget: bool = False) -> dict[str, SearchDim]:
    """The search space of an algorithm that declares none (see the module docstring)."""
    params = alg_cls.params
    space: dict[str, SearchDim] = {}
    if "outer_lr" in params and params["outer_lr"].type is float:
        space["outer_lr"] = OUTER_LR
    for name in INNER_LR_NAMES:
        if name in params and params[name].type is float:
            space[name] = INNER_LR
    if seconds_budget and "inner_steps" in params and params["inner_steps"].type is int:
        space["inner_steps"] = INNER_STEPS
    return space


def search_space(alg_cls: type, seconds_budget: bool = False) -> dict[str, SearchDim]:
    declared = getattr(alg_cls, "search_space", None)
    return dict(declared) if declared else default_space(alg_cls, seconds_budget)


def describe_space(space: dict[str, SearchDim], grids: dict[str, list[Any]],
                   scales: dict[str, float]) -> dict[str, Any]:
    out = {}
    for name, dim in space.items():
        item = dim.describe()
        if getattr(dim, "relative", None):
            item["scale"] = scales[dim.relative]
        item["values"] = grids[name]
        out[name] = item
    return out


def _scales(registry: Registry, problem: str, pparams: dict[str, Any], size: str,
            seed: int) -> dict[str, float]:
    """The problem's default outer step and inner step (1/L at λ₀) on a tuning instance."""
    prob = registry.problem(problem)(size=size, seed=seed, **pparams)
    lam0 = prob.init_outer(torch.Generator().manual_seed(seed))
    return {"outer": float(prob.outer_step_size()), "inner": float(prob.inner_step_size(lam0))}


def trial_points(space: dict[str, SearchDim], scales: dict[str, float],
                 max_trials: int | None) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    grids = {name: dim.grid(scales[dim.relative] if getattr(dim, "relative", None) else 1.0)
             for name, dim in space.items()}
    names = list(grids)
    points = [dict(zip(names, combo, strict=True))
              for combo in itertools.product(*(grids[n] for n in names))]
    if max_trials is not None and len(points) > max_trials:
        keep = sorted(random.Random(0).sample(range(len(points)), max_trials))
        points = [points[i] for i in keep]
    return points, grids


# ----------------------------------------------------------------------- selection
def score_trials(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The winning trial: lowest finite score among trials whose every seed was ``ok``;
    ties broken by the smaller solver time. None if every trial failed."""
    good = [t for t in trials if t["status"] == "ok" and t["score"] is not None
            and math.isfinite(t["score"])]
    if not good:
        return None
    return min(good, key=lambda t: (t["score"], t["solver_seconds"]))


def selection_metric(problem_cls: type, records: list[dict[str, Any]]) -> str:
    """The problem's declared ``validation_metric``; for the default ``"outer_loss"``,
    ``"restart_outer_loss"`` when every record has it: F(λ_T) = f(θ*(λ_T), λ_T), the outer
    objective at the final λ with the inner problem solved from scratch (exact solution where
    the problem gives one, else gradient descent to tolerance; blobench/execution/metrics.py).
    f(θ_T, λ_T)
    itself would reward leaving θ far from θ*(λ) (an unsolved inner problem can have a lower
    outer loss); MAML-type problems have no restart (their θ is already re-adapted from λ)."""
    metric = problem_cls.validation_metric
    if metric == "outer_loss" and records and all(
            "restart_outer_loss" in r["final"] for r in records if r["status"] == "ok"):
        return "restart_outer_loss"
    return metric


def _trial(point: dict[str, Any], records: list[dict[str, Any]], metric: str
           ) -> dict[str, Any]:
    statuses = sorted({r["status"] for r in records})
    values = [r["final"].get(metric) for r in records]
    ok = statuses == ["ok"] and all(v is not None and math.isfinite(v) for v in values)
    bad = [r for r in records if r["status"] != "ok"]
    return {"params": point, "status": "ok" if ok else (bad[0]["status"] if bad
                                                        else "no_metric"),
            "score": float(sum(values) / len(values)) if ok else None,
            "solver_seconds": float(sum(r["solver_seconds"] for r in records) / len(records)),
            "seeds": [r["config"]["seed"] for r in records],
            "message": bad[0]["message"][:200] if bad else ""}


def tune_pair(registry: Registry, problem_text: str, algorithm_text: str, *, size: str,
              seeds: list[int], steps: int | None, seconds: float | None,
              store: ResultsStore, n_jobs: int = 1, isolate: bool = True,
              max_trials: int | None = None, plugins: tuple[str, ...] = (),
              progress: bool = False, command: str = "", only: tuple[str, ...] = ()
              ) -> list[dict[str, Any]]:
    """Tune one algorithm entry on every grid point of one problem entry; returns the
    settings-file entries (one per problem point where the algorithm applies)."""
    pname, pgrid = expand(problem_text)
    pcls = registry.problem(pname)
    if size not in pcls.sizes:
        raise UserError(f"problem {pname!r} has no size {size!r}; valid: "
                        f"{', '.join(pcls.sizes)}")
    aname, agrid = expand(algorithm_text)
    acls = registry.algorithm(aname)
    given: dict[str, list[str]] = {}
    for point in agrid:
        for k, v in point.items():
            given.setdefault(k, [])
            if v not in given[k]:
                given[k].append(v)
    fixed_text = {k: v[0] for k, v in given.items() if len(v) == 1}
    fixed = {k: v for k, v in resolve(aname, acls.params, fixed_text).items() if k in fixed_text}
    space = {k: d for k, d in search_space(acls, seconds is not None).items()
             if k not in given and (not only or k in only)}
    for k, values in given.items():
        if len(values) > 1:
            space[k] = Choice([acls.params[k].coerce(k, v) for v in values])
    preset = resolve(pname, pcls.params, pcls.sizes[size])
    budget = pcls.budgets.get(size, Budget())
    entries = []
    for ppoint in pgrid:
        pparams = resolve(pname, pcls.params, {**pcls.sizes[size], **ppoint})
        plabel = format_entry(pname, _non_default(pparams, preset))
        reason = acls(**fixed).skip_reason(pcls, pparams)
        if reason:
            print(f"skipped {plabel} × {aname}: {reason}", file=sys.stderr)
            continue
        scales = _scales(registry, pname, pparams, size, seeds[0])
        points, grids = trial_points(space, scales, max_trials)
        valid, invalid, all_records = [], [], []
        for point in points:
            try:
                acls(**fixed, **point)
            except UserError as exc:
                invalid.append({"params": point, "status": "invalid", "score": None,
                                "solver_seconds": 0.0, "seeds": [], "message": str(exc)})
            else:
                valid.append(point)
        texts = [format_entry(aname, {**fixed, **point}) for point in valid]
        # one evaluation at the start and one at the end: selection reads the final metrics
        every = steps or (budget.steps if seconds is None else None)
        cells, _ = plan(registry, [plabel], texts, seeds, size=size, steps=steps,
                        seconds=seconds, eval_every=every, plugins=plugins) \
            if texts else ([], [])
        run_cells(registry, cells, store, n_jobs=n_jobs, isolate=isolate, progress=progress)
        from blobench.execution.harness import cell_version

        trials = []
        for point in valid:
            full = acls(**fixed, **point).config
            records = []
            for cell in cells:
                if cell.algorithm_params == full:
                    rec = store.load(cell.key(cell_version(registry, cell)))
                    if rec is not None:
                        records.append(rec)
            all_records += records
            trials.append(records if records else
                          {"params": point, "status": "missing", "score": None,
                           "solver_seconds": 0.0, "seeds": [], "message": "no record"})
        metric = selection_metric(pcls, all_records)
        trials = [_trial(point, t, metric) if isinstance(t, list) else t
                  for point, t in zip(valid, trials, strict=True)] + invalid
        best = score_trials(trials)
        entry = {
            "problem": pname, "problem_label": plabel, "problem_params": pparams, "size": size,
            "algorithm": aname, "fixed": fixed,
            "params": {**fixed, **best["params"]} if best else None,
            "validation_metric": metric, "score": best["score"] if best else None,
            "search_space": describe_space(space, grids, scales),
            "trials": trials, "tuning_seeds": seeds,
            "budget": {"steps": steps if steps is not None else (
                           budget.steps if seconds is None else None),
                       "seconds": seconds if seconds is not None else budget.seconds},
            "code": code_provenance(registry, pname, aname),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
        }
        entries.append(entry)
    return entries


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--problem", action="append", default=[], metavar="ENTRY",
                        help="problem (bracket grid allowed; default: all)")
    parser.add_argument("-a", "--algorithm", action="append", default=[], metavar="ENTRY",
                        help='algorithm; single bracket values are fixed, lists are searched: '
                             '"soba[decay=false,outer_lr=[0.1,1]]" (default: all)')
    parser.add_argument("--budget", type=int, metavar="STEPS",
                        help="outer steps per trial (default: the problem's budget)")
    parser.add_argument("--budget-seconds", type=float, metavar="S",
                        help="solver seconds per trial instead (then inner_steps is tuned too)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help=f"tuning seeds {TUNING_SEED_BASE}..{TUNING_SEED_BASE}+N-1 "
                             "(default 1; disjoint from the leaderboard's 0..N-1)")
    parser.add_argument("--size", default="quick", help="problem size (default quick)")
    parser.add_argument("--n-jobs", type=int, metavar="N",
                        help="trial cells run at once (default: the available cores, as in "
                             "blobench run)")
    parser.add_argument("--max-trials", type=int, metavar="N",
                        help="at most N grid points per pair (a fixed random subset)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, metavar="FILE",
                        help="tuned-settings file to update (default: the project's "
                             "leaderboards/tuned_settings.json)")
    parser.add_argument("--only", action="append", default=[], metavar="PARAM",
                        help="search only these parameters of the space (repeatable); the "
                             "others stay at their defaults")
    parser.add_argument("--missing", action="store_true",
                        help="only pairs with no fresh entry in the settings file (absent, or "
                             "stale): resume or refresh a sweep")
    parser.add_argument("--in-process", action="store_true",
                        help="run trial cells in this process (no isolation)")
    parser.add_argument("--progress", action="store_true", help="progress bar per pair")


def check_only_names(only: list[str], algorithms: list[str], plugins: list[str]) -> None:
    """``tune --only NAME``: each NAME must be a dimension of the search space of one of the
    selected algorithms (all when none is selected), else nothing would be searched."""
    registry = get_registry(plugins)
    names = [expand(text)[0] for text in algorithms] or sorted(registry.algorithms)
    space: set[str] = set()
    for name in names:
        cls = registry.algorithms.get(name)
        if cls is not None:  # an unknown algorithm is reported by the command itself
            space |= set(search_space(cls, False)) | set(search_space(cls, True))
    unknown = [name for name in only if name not in space]
    if unknown and space:
        raise UserError(f"--only {unknown[0]!r} is not in the search space of "
                        f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}; "
                        f"valid: {', '.join(sorted(space))}")


def command(args: argparse.Namespace) -> int:
    for opt in ("budget", "seeds", "n_jobs", "max_trials"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise UserError(f"--{opt.replace('_', '-')} must be >= 1, got {value}")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        raise UserError(f"--budget-seconds must be > 0, got {args.budget_seconds}")
    if args.budget is not None and args.budget_seconds is not None:
        raise UserError("give --budget (steps) or --budget-seconds, not both")
    if args.only:
        check_only_names(args.only, args.algorithm, args.plugins)
    registry = get_registry(args.plugins)
    for where, message in registry.errors:
        print(f"blobench: warning: plugin {where} not loaded: {message}", file=sys.stderr)
    settings = load_settings(args.settings)
    store = ResultsStore(Path(args.results) / "tuning")
    seeds = [TUNING_SEED_BASE + i for i in range(args.seeds)]
    cmd = "blobench " + " ".join(getattr(args, "argv", None) or ["tune"])
    problems = args.problem or sorted(registry.problems)
    algorithms = args.algorithm or sorted(registry.algorithms)
    failed = 0
    stale = {key for key, _ in stale_entries(registry, settings)}
    for ptext in problems:
        for atext in algorithms:
            if args.missing and "[" not in ptext + atext and any(
                    k.startswith(f"{ptext}/{args.size}/") and k.endswith(f"/{atext}")
                    and k not in stale for k in settings["settings"]):
                continue
            entries = tune_pair(registry, ptext, atext, size=args.size, seeds=seeds,
                                steps=args.budget, seconds=args.budget_seconds, store=store,
                                n_jobs=args.n_jobs or _api.default_n_jobs(args.in_process),
                                isolate=not args.in_process,
                                max_trials=args.max_trials, plugins=tuple(args.plugins),
                                progress=args.progress, command=cmd,
                                only=tuple(args.only))
            for entry in entries:
                key = settings_key(entry["problem_label"], entry["size"], entry["algorithm"])
                n_ok = sum(t["status"] == "ok" for t in entry["trials"])
                settings["settings"][key] = entry
                if entry["params"] is None:  # recorded (the search was done), never applied
                    failed += 1
                    print(f"{key}: every one of {len(entry['trials'])} trial(s) failed; "
                          "recorded with params null (run uses the defaults)", file=sys.stderr)
                    save_settings(settings, args.settings)
                    continue
                print(f"{key}: {entry['params']}  {entry['validation_metric']}="
                      f"{entry['score']:.4g}  ({n_ok}/{len(entry['trials'])} trials ok)")
                save_settings(settings, args.settings)  # after each pair: resumable
    for key, reason in prune_inapplicable(registry, settings):
        print(f"removed {key}: the pair no longer runs ({reason})", file=sys.stderr)
        save_settings(settings, args.settings)
    print(f"wrote {args.settings}")
    return 1 if failed else 0


def prune_inapplicable(registry: Registry, settings: dict[str, Any]
                       ) -> list[tuple[str, str]]:
    """Remove (and return with the reason) the entries of pairs that planning now skips, e.g.
    after an applicability rule changed; entries of unknown entries are kept (a plugin folder
    may just not be loaded)."""
    removed = []
    for key, entry in list(settings["settings"].items()):
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
