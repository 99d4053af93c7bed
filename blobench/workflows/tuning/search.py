"""The search of one (problem, algorithm) pair: its trials through the harness, the winner.

Trials are ordinary cells (planned by :func:`blobench.execution.harness.plan`, run by
:func:`blobench.execution.runner.run_cells`) on the tuning seeds ``TUNING_SEED_BASE + i``;
the winner has the lowest mean validation score among the trials whose every seed was ``ok``
(:func:`score_trials`, :func:`selection_metric`).
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from typing import Any

from blobench.contracts.errors import UserError
from blobench.contracts.params import Choice, resolve
from blobench.contracts.problem import Budget
from blobench.execution.harness import _non_default, plan
from blobench.execution.registry import Registry
from blobench.execution.runner import run_cells
from blobench.execution.spec import expand, format_entry
from blobench.execution.store import ResultsStore
from blobench.workflows.tuning.settings import code_provenance
from blobench.workflows.tuning.space import describe_space, search_space, step_scales, trial_points

#: tuning seeds 1000, 1001, ...: disjoint from the leaderboard's seeds 0..N-1
TUNING_SEED_BASE = 1000


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


def trial_summary(point: dict[str, Any], records: list[dict[str, Any]], metric: str
                  ) -> dict[str, Any]:
    """One grid point's result over its seeds' records: ``ok`` with the mean of ``metric``
    as its score when every seed is ok with a finite value, else the first failure."""
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
        scales = step_scales(registry, pname, pparams, size, seeds[0])
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
        trials = [trial_summary(point, t, metric) if isinstance(t, list) else t
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
