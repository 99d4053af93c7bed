"""Time and oracle calls to target on the bilevel answer F(λ) = f(θ*(λ), λ).

**The rule.** Per problem instance (problem, size and seed: the seed draws the data), among
the configurations whose cell finished ``ok``:

* ΔF_c = F(λ₀) − F(λ_final,c): the decrease of F from λ₀ of configuration c's returned
  answer (its last evaluated F; F(λ₀) is the value at the first evaluation, the same λ₀ for
  every configuration — the median over them is taken);
* ΔF_typ = the median of ΔF_c over the configurations that decreased F at all (ΔF_c > 0):
  the decrease a typical working method achieves within the page's budget;
* target = F(λ₀) − :data:`TARGET_FRACTION` · ΔF_typ, i.e. **half of the typical decrease**;
* a cell's time to target is the solver time (evaluation excluded) of the first evaluation
  at which its F(λ) ≤ target, likewise its outer steps and oracle calls; a cell that never
  gets there has none ("—" on the page, counted in the (k/n) beside the time).

No configuration decreased F: no target (every time is "—").

**Why this rule** (issue 17; the previous rule asked for 90 % of the *best* decrease any
cell's trace reached, and was reached by 1/30 configurations on logreg_ho, 4/31 on
poison_logreg, 1/30 on sparse_ho, 9/29 on distill_linear, 7/30 on reweight_digits of the
quick-suite board; F(λ) is evaluated at every evaluation, 11 per cell there, so the misses
were not a sampling artefact):

1. *One outlier set an unreachable target*: on sparse_ho one configuration (sama) moved F
   by 5.3·10⁻³, thirteen times the next one (4·10⁻⁴); everything else needed 90 % of it.
   A median is not moved by one cell.
2. *Transient dips set the best*: F is non-monotone for large outer step sizes (12 of 30
   configurations on logreg_ho, 22 of 31 on poison_logreg); the best value along a trace
   was a dip (logreg_ho: exact's 0.0571, ending at 0.0654), so the target rewarded a
   moment of the path, not an answer. The reference here is the *returned* answer.
3. *A tolerance of 10 % of the best decrease is an accuracy criterion, not a speed one*:
   final answers on these pages spread over more than 10 % of the decrease (on logreg_ho
   the median configuration achieved 28 % of the best decrease), so "time to target"
   mostly measured whether a method ended near the best — which the ranked column already
   says. Half of the typical decrease is reached by every method that makes typical
   progress, so the column compares how *fast* they get there (per-step cost × steps), and
   still leaves out the ones that do not progress (stalled or tiny-step-size methods).

Rejected alternatives: the suboptimality F − F* needs a known F* (``optimal_value``), which
most problems do not have, and one page rule must hold on every page; a best-based target
with a looser tolerance keeps points 1–2. Configurations that do not decrease F are left
out of the median so that a page where most methods stall still has a target for those
that move.

Measured on the committed quick-suite records (``leaderboards/records/*.parquet``, three
seeds, commit 370a8fa's board; ``python -m blobench.reporting.target leaderboards``), ok
configurations reaching the target on at least one seed: coupled_quadratic 35/35,
datacleaning_logreg 35/37, distill_convnet 22/31, distill_linear 28/35, fewshot_conv4 6/6,
fewshot_ridge 33/33, finite_sum_quadratic 38/38, logreg_ho 22/37, lr_schedule 3/3,
meta_weight_net 34/35, overparam_linreg 33/35, penalty_synthetic 35/35, poison_logreg 33/37,
quadratic 34/35, reweight_digits 24/36, ridge_ho 36/37, sparse_ho 27/35 (on the one-seed board
of commit 3b8cd2f the old rule gave logreg_ho 1/30, sparse_ho 1/30, distill_linear 9/29,
reweight_digits 7/30). Those that miss it are the ones whose F barely moves in the budget
(logreg_ho: the ones that miss all end with less than 14 % of the best decrease). It still
discriminates speed: on every page of the one-seed board the times of those that reach it span
1.7–3.0 orders of magnitude of solver time. ``tests/test_reporting_target.py`` checks that
more than half reach it on every committed page, each page by its own target column
(:func:`reach_counts`), and that these counts are the ones the pages state.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: the target asks for this fraction of the typical (median) decrease of F from λ₀
TARGET_FRACTION = 0.5
#: the columns this module adds to a page's per-cell frame
TARGET_COLUMNS = ("target", "time_to_target", "steps_to_target", "calls_to_target")

RULE_TEXT = ("until {target} first came within {fraction:.0%} of the typical decrease from "
             "λ₀: target = {target}(λ₀) − {fraction:g} · median over the configurations that "
             "decreased it of their final decrease, per problem instance (same problem, size "
             "and seed); solver time excluding evaluation; (k/n) counts the seeds that "
             "reached it")


def target_value(initial: float, finals: list[float] | np.ndarray,
                 fraction: float = TARGET_FRACTION) -> float:
    """The target of one problem instance: ``initial`` − ``fraction`` · the median of the
    positive decreases ``initial − final`` (NaN when no final value is below ``initial``)."""
    finals = np.asarray([f for f in finals if f is not None and np.isfinite(f)], dtype=float)
    decreases = initial - finals
    decreases = decreases[decreases > 0]
    if not np.isfinite(initial) or decreases.size == 0:
        return math.nan
    return float(initial - fraction * np.median(decreases))


def instance_targets(traces: pd.DataFrame, column: str,
                     fraction: float = TARGET_FRACTION) -> pd.DataFrame:
    """Per problem instance (problem, size, seed): ``initial`` (median first value of
    ``column``), ``typical_decrease`` and ``target``, from the ok cells of ``traces``."""
    rows = []
    values = pd.to_numeric(traces[column], errors="coerce") if column in traces else None
    if values is None or traces.empty:
        return pd.DataFrame(columns=["problem", "size", "seed", "initial", "typical_decrease",
                                     "target"])
    ok = traces.assign(_v=values)
    ok = ok[(ok["status"] == "ok") & np.isfinite(ok["_v"])]
    for (problem, size, seed), group in ok.groupby(["problem", "size", "seed"]):
        per_cell = group.sort_values("step").groupby("label")["_v"]
        initial = float(per_cell.first().median())
        target = target_value(initial, per_cell.last().to_numpy(), fraction)
        rows.append({"problem": problem, "size": size, "seed": seed, "initial": initial,
                     "typical_decrease": (initial - target) / fraction
                     if np.isfinite(target) else math.nan, "target": target})
    return pd.DataFrame(rows, columns=["problem", "size", "seed", "initial", "typical_decrease",
                                       "target"])


def add_time_to_target(final: pd.DataFrame, traces: pd.DataFrame,
                       target_col: str = "outer_loss",
                       fraction: float = TARGET_FRACTION) -> pd.DataFrame:
    """``final`` (one row per cell) with the columns :data:`TARGET_COLUMNS`: the instance's
    target on ``target_col`` (F(λ), or the own outer loss where the problem deploys its own
    θ) and the solver time, outer steps and oracle calls of each ok cell's first evaluation
    at or below it (module docstring)."""
    final = final.copy()
    for col in TARGET_COLUMNS:
        final[col] = np.nan
    if traces.empty or target_col not in traces or final.empty:
        return final
    keys = ["problem", "size", "seed"]
    targets = instance_targets(traces, target_col, fraction)[[*keys, "target"]]
    if targets.empty:
        return final
    found = traces.assign(_v=pd.to_numeric(traces[target_col], errors="coerce"))
    found = found[found["status"] == "ok"].merge(targets, on=keys)
    found = found[found["_v"] <= found["target"]].sort_values("seconds", kind="mergesort")
    first = found.groupby([*keys, "label"], sort=False).first()
    cols = {"seconds": "time_to_target", "step": "steps_to_target",
            "calls_total": "calls_to_target"}
    first = first[[c for c in cols if c in first]].rename(columns=cols)
    at = pd.MultiIndex.from_frame(final[[*keys, "label"]])
    ok = (final["status"] == "ok").to_numpy()
    for col in first.columns:
        values = first[col].reindex(at).to_numpy(dtype=float)
        final[col] = np.where(ok, values, np.nan)
    by_instance = targets.set_index(keys)["target"]
    final["target"] = by_instance.reindex(pd.MultiIndex.from_frame(final[keys])).to_numpy()
    return final


def reach_counts(records: list[dict], problems: dict[str, Any] | None = None,
                 fraction: float = TARGET_FRACTION) -> pd.DataFrame:
    """Per page (problem, size): ok configurations, and how many reached the target on at
    least one seed / on every ok seed — the check of the rule on shipped records. Each page's
    target column is the one its page uses (:class:`~blobench.reporting.tables.Ranking`:
    F(λ) re-trained, ``restart_outer_loss``, or the own outer loss where the problem deploys
    its own θ); ``problems`` maps names to problem classes (default: the registry's)."""
    from blobench.reporting.frames import final_frame, trace_frame
    from blobench.reporting.tables import Ranking

    if problems is None:
        from blobench.execution.registry import get_registry
        problems = get_registry().problems
    columns = ["problem", "size", "configs", "reached_any", "reached_all"]
    final, traces = final_frame(records), trace_frame(records)
    if final.empty or traces.empty:
        return pd.DataFrame(columns=columns)
    final = final[final["status"] != "not_applicable"]
    rows = []
    for (problem, size), group in final.groupby(["problem", "size"], sort=True):
        ranking = Ranking(problems.get(problem), group)
        page = traces[(traces["problem"] == problem) & (traces["size"] == size)]
        reached = add_time_to_target(group, page, ranking.target, fraction)
        ok = reached[reached["status"] == "ok"].assign(
            hit=lambda f: f["time_to_target"].notna())
        per_config = ok.groupby("label")["hit"].agg(["any", "all"])
        rows.append({"problem": problem, "size": size, "configs": len(per_config),
                     "reached_any": int(per_config["any"].sum()),
                     "reached_all": int(per_config["all"].sum())})
    return pd.DataFrame(rows, columns=columns)


def main(argv: list[str] | None = None) -> int:
    """``python -m blobench.reporting.target <leaderboard folder or records folder>``: the
    per-page counts of configurations reaching the target."""
    from blobench.reporting.results import load_records

    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path("leaderboards")
    counts = reach_counts(load_records(folder))
    print(counts.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
