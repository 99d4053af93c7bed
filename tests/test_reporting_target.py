"""Time to target (blobench/reporting/target.py): the rule on synthetic traces whose outcome
is known by hand, its robustness to what broke the old rule (one outlier, a transient dip),
and on the committed quick-suite records most configurations reach it on every page."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from blobench.reporting.target import (
    TARGET_FRACTION,
    add_time_to_target,
    reach_counts,
    target_value,
)

ROOT = Path(__file__).resolve().parents[1]


def _frames(curves: dict[str, list[float]], seed: int = 0, status: dict[str, str] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Traces (one evaluation per 10 steps, 1 s and 100 oracle calls apart) and the per-cell
    frame of one problem instance, F(λ) = ``curves[label]``."""
    status = status or {}
    rows, final = [], []
    for label, values in curves.items():
        st = status.get(label, "ok")
        for i, v in enumerate(values):
            rows.append({"problem": "p", "size": "quick", "seed": seed, "label": label,
                         "status": st, "step": 10 * i, "seconds": float(i),
                         "calls_total": 100.0 * i, "restart_outer_loss": v})
        final.append({"problem": "p", "size": "quick", "seed": seed, "label": label,
                      "status": st})
    return pd.DataFrame(final), pd.DataFrame(rows)


def _ttt(curves, **kw) -> dict[str, float]:
    final, traces = _frames(curves, **kw)
    out = add_time_to_target(final, traces, "restart_outer_loss")
    return dict(zip(out["label"], out["time_to_target"], strict=True)), out["target"].iloc[0]


def test_target_is_half_the_median_decrease_by_hand():
    # F(λ₀) = 10; final decreases 8, 6, 4, 0 (stalled), -2 (worse): the median over those that
    # decreased F is 6, so target = 10 - 0.5 * 6 = 7
    curves = {"fast": [10, 5, 3, 2], "steady": [10, 8, 6.5, 4], "slow": [10, 9.5, 8, 6],
              "stalled": [10, 10, 10, 10], "worse": [10, 11, 12, 12]}
    times, target = _ttt(curves)
    assert TARGET_FRACTION == 0.5 and target == pytest.approx(7.0)
    assert times["fast"] == 1.0  # 5 ≤ 7 at the first evaluation after λ₀
    assert times["steady"] == 2.0  # 6.5 ≤ 7 at the second
    assert times["slow"] == 3.0  # only its final 6 is below 7
    assert math.isnan(times["stalled"]) and math.isnan(times["worse"])
    # the oracle calls and steps of the same evaluation
    final, traces = _frames(curves)
    out = add_time_to_target(final, traces, "restart_outer_loss").set_index("label")
    assert out.at["steady", "calls_to_target"] == 200 and out.at["steady", "steps_to_target"] == 20


def test_one_outlier_does_not_set_an_unreachable_target():
    """sparse_ho's failure of the old rule: one configuration decreased F 13x more than the
    rest; the old target (90 % of the best decrease) was reached by it alone."""
    typical = {f"m{i}": [1.0, 0.9999, 0.9996 - 1e-5 * i] for i in range(6)}
    curves = {"outlier": [1.0, 0.99, 0.9947], **typical}
    times, target = _ttt(curves)
    assert target == pytest.approx(1.0 - 0.5 * np.median([4e-4 + 1e-5 * i for i in range(6)]
                                                         + [5.3e-3]))
    assert all(np.isfinite(t) for t in times.values())  # all 7 reach it
    best = 0.9947
    old_target = best + 0.1 * (1.0 - best)
    assert sum(min(c) <= old_target for c in curves.values()) == 1  # the old rule: 1 of 7


def test_a_transient_dip_is_not_the_reference():
    """logreg_ho's failure: the best value along a trace was a dip (exact: 0.057, ending at
    0.065); the reference is the returned answer, so the dip does not raise the bar."""
    curves = {"dip": [1.0, 0.2, 0.6, 0.6], "a": [1.0, 0.8, 0.6, 0.5], "b": [1.0, 0.8, 0.55, 0.5]}
    times, target = _ttt(curves)
    assert target == pytest.approx(1.0 - 0.5 * 0.5)  # decreases 0.4, 0.5, 0.5: median 0.5
    assert times == {"dip": 1.0, "a": 2.0, "b": 2.0}


def test_failed_cells_neither_set_nor_reach_the_target():
    curves = {"ok1": [4, 3, 2], "ok2": [4, 3.5, 3], "diverged": [4, 0, float("nan")]}
    times, target = _ttt(curves, status={"diverged": "diverged"})
    assert target == pytest.approx(4 - 0.5 * 1.5)  # decreases 2 and 1 of the ok cells only
    assert times["ok1"] == 1.0 and times["ok2"] == 2.0 and math.isnan(times["diverged"])


def test_no_decrease_means_no_target():
    assert math.isnan(target_value(1.0, [1.0, 1.2, float("nan")]))
    times, target = _ttt({"a": [1, 1, 1], "b": [1, 2, 3]})
    assert math.isnan(target) and all(math.isnan(t) for t in times.values())


def test_targets_are_per_seed():
    f0, t0 = _frames({"a": [10, 4], "b": [10, 8]}, seed=0)
    f1, t1 = _frames({"a": [1, 0.9], "b": [1, 0.1]}, seed=1)
    out = add_time_to_target(pd.concat([f0, f1]), pd.concat([t0, t1]), "restart_outer_loss")
    assert sorted(out["target"].unique()) == pytest.approx([1 - 0.5 * 0.5, 10 - 0.5 * 4])


def test_mutant_best_based_rule_would_fail_the_hand_case():
    """Self-check: with the reference at the best decrease (the old rule's), the hand case
    gives another target, so the tests above can tell the two rules apart."""
    best_based = 10 - 0.5 * 8
    assert best_based != pytest.approx(_ttt({"fast": [10, 5, 3, 2], "steady": [10, 8, 6.5, 4],
                                             "slow": [10, 9.5, 8, 6]})[1])


@pytest.mark.skipif(not list((ROOT / "leaderboards" / "records").glob("*.parquet")),
                    reason="no committed records under leaderboards/records/")
def test_most_configurations_reach_the_target_on_every_committed_page():
    from blobench.reporting.results import load_records

    counts = reach_counts(load_records(ROOT / "leaderboards"))
    assert len(counts) >= 1
    share = counts["reached_any"] / counts["configs"]
    low = counts[share <= 0.5]
    assert low.empty, f"pages where at most half of the configurations reach it:\n{low}"


@pytest.mark.skipif(not list((ROOT / "leaderboards" / "records").glob("*.parquet")),
                    reason="no committed records under leaderboards/records/")
def test_reach_counts_agree_with_what_each_committed_page_states():
    """reach_counts ranks each page by the page's own target column (F(λ) re-trained, or the
    own outer loss on problems that deploy their own θ): its counts are the page's sentence
    'reached by k of the n configurations'. Before, it always used F(λ) re-trained, found no
    target on the own-θ pages (fewshot_conv4, lr_schedule, meta_weight_net: 0 of n) and
    failed the check above while the pages said 6/6, 3/3, 34/35."""
    import re

    from blobench.reporting.results import load_records

    counts = reach_counts(load_records(ROOT / "leaderboards"))
    stated = {}
    for page in (ROOT / "leaderboards").glob("*-*.md"):
        found = re.search(r"reached by (\d+) of the (\d+)\s+configurations", page.read_text())
        if found:
            stated[page.stem] = (int(found[1]), int(found[2]))
    computed = {f"{r.problem}-{r.size}": (int(r.reached_any), int(r.configs))
                for r in counts.itertuples()}
    assert stated and stated == computed
