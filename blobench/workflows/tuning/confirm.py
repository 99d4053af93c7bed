"""Confirmation of a tuned setting on fresh seeds: the winner must stay ``ok`` on them.

**Why.** A search scores every grid point on the tuning seeds (by default one draw, seed
1000) and keeps the best. The best step size is often the largest one that did not diverge
on that draw — the edge of stability — and on another draw of the same problem it may
diverge. On the 3-seed quick board of commit 370a8fa, 6 tuned configurations diverged on
1 or 2 of the 3 leaderboard seeds while they were ``ok`` on the tuning seed: quadratic ×
soba[outer_lr=100], ridge_ho × saba[outer_lr=10], logreg_ho × amigo / fixed_point
[outer_lr=1000], overparam_linreg × darts_fd[outer_lr=2.72], meta_weight_net × approxgrad
[inner_lr=0.03, outer_lr=0.1]. The ranked mean then covers only the seeds that survived.

**The rule.** After the search, the candidates — the ``ok`` trials in the selection's order
(lowest tuning score, then the smaller solver time; :func:`~.search.score_trials`) — are run
in turn on ``k`` confirmation seeds that neither the search nor the leaderboard uses (the
tuning seeds after those of the search: 1001, 1002, 1003 for one tuning seed and
``--confirm-seeds 3``). The first candidate whose every confirmation cell is ``ok`` with a
finite validation metric is the entry's setting; its score stays its tuning score, so that
it compares with the other trials'. When no candidate passes, the search winner is kept and
the entry says so. Each check is recorded in the entry's ``confirmation`` (seeds, rule, and
per candidate its status, mean metric over those seeds and first failure message), so a page
can show why a setting is not the search's best.

Cost: ``k`` cells per entry when the winner passes, ``k`` more per rejected candidate (on
the quick suite, 190 entries × 3 seeds; ``blobench tune --confirm-only`` confirms the
entries of an existing settings file without re-running their searches).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from blobench.execution.harness import cell_version, plan
from blobench.execution.registry import Registry
from blobench.execution.runner import run_cells
from blobench.execution.spec import format_entry
from blobench.execution.store import ResultsStore
from blobench.workflows.tuning.search import TUNING_SEED_BASE, trial_summary

#: confirmation seeds per entry, by default (``blobench tune --confirm-seeds``)
CONFIRM_SEEDS = 3
RULE = ("the ok trials in order of tuning score are run on the confirmation seeds; the first "
        "that is ok on every one of them is the setting (none: the search winner is kept)")


def confirmation_seeds(entry: dict[str, Any], k: int) -> list[int]:
    """The ``k`` seeds after the entry's tuning seeds (disjoint from the leaderboard's 0..N-1
    and from the seeds the search was scored on)."""
    start = max(entry.get("tuning_seeds") or [TUNING_SEED_BASE - 1]) + 1
    return list(range(start, start + k))


def candidates(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry's ``ok`` trials with a finite score, in the selection's order."""
    good = [t for t in entry.get("trials", []) if t["status"] == "ok"
            and t["score"] is not None and math.isfinite(t["score"])]
    return sorted(good, key=lambda t: (t["score"], t["solver_seconds"]))


def is_confirmed(entry: dict[str, Any], k: int) -> bool:
    """Whether ``entry`` already holds a confirmation on the same seeds of its current
    params (``--confirm-only`` skips it: resumable)."""
    done = entry.get("confirmation") or {}
    return (done.get("seeds") == confirmation_seeds(entry, k)
            and done.get("params") == entry.get("params"))


def confirm_entry(registry: Registry, entry: dict[str, Any], *, k: int, store: ResultsStore,
                  n_jobs: int = 1, isolate: bool = True, plugins: tuple[str, ...] = (),
                  progress: bool = False, command: str = "") -> dict[str, Any]:
    """``entry`` with its ``params`` (and ``score``) set to the first candidate that is ok on
    every confirmation seed, and ``confirmation`` recording every check (module docstring).
    An entry without an ok trial is returned unchanged."""
    order = candidates(entry)
    if not order or k < 1:
        return entry
    seeds = confirmation_seeds(entry, k)
    steps = entry["budget"].get("steps")
    seconds = entry["budget"].get("seconds") if steps is None else None
    checked, chosen = [], None
    for trial in order:
        params = {**entry.get("fixed", {}), **trial["params"]}
        text = format_entry(entry["algorithm"], params)
        cells, _ = plan(registry, [entry["problem_label"]], [text], seeds, size=entry["size"],
                        steps=steps, seconds=seconds, eval_every=steps, plugins=plugins)
        run_cells(registry, cells, store, n_jobs=n_jobs, isolate=isolate, progress=progress)
        records = [rec for cell in cells
                   if (rec := store.load(cell.key(cell_version(registry, cell)))) is not None]
        result = trial_summary(trial["params"], records, entry["validation_metric"]) \
            if len(records) == len(seeds) else {"params": trial["params"],
                                                "status": "missing", "score": None,
                                                "message": "no record"}
        checked.append({"params": trial["params"], "tuning_score": trial["score"],
                        "status": result["status"], "score": result["score"],
                        "message": result["message"]})
        if result["status"] == "ok":
            chosen = trial
            break
    winner = chosen or order[0]
    out = dict(entry)
    out["params"] = {**entry.get("fixed", {}), **winner["params"]}
    out["score"] = winner["score"]
    out["confirmation"] = {
        "seeds": seeds, "rule": RULE, "params": out["params"], "passed": chosen is not None,
        "checked": checked, "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return out
