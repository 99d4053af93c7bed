"""Honest ranks and readable numbers for the leaderboard (issue 17.2–17.3).

**Interval.** Each metric of a configuration is reported as mean ± the half-width of a 95 %
Student-t interval over its ``ok`` seeds, t₀.₉₇₅,ₙ₋₁ · s / √n (s the sample standard deviation,
ddof = 1). With one seed there is no interval: the value is shown with "(n=1)".

**Ties with the best.** A configuration is *tied with the best* ("≈", sharing rank 1) when the
95 % t-interval of its paired differences to the best configuration over their common seeds
(the seed draws the problem instance, so seeds pair) contains 0; with fewer than 2 common
seeds, when the two configurations' own intervals overlap.

**Order.** Configurations with ≥ 2 ok seeds first, then those with 1, then those with none;
within each, by the mean of the ranked metric in its direction; exactly equal means then by
the mean F(λ) (the re-trained outer loss), then by oracle calls to target, then by name —
never by wall-clock time, whose noise depends on the machine's load.

**Numbers.** One format: 4 significant digits (``format_number``); times in ms or s and
memory in KiB or MiB, chosen per column from its median so a column reads in one unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
INTERVAL_METHOD = ("mean ± half-width of the 95 % Student-t interval over seeds "
                   "(t₀.₉₇₅,ₙ₋₁ · s/√n)")


def t_halfwidth(values: Sequence[float]) -> float:
    """Half-width of the 95 % t-interval of the mean of ``values`` (NaN below 2 values)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return math.nan
    sd = float(v.std(ddof=1))
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(v) - 1)) * sd / math.sqrt(len(v))


def tied(a: dict[int, float], b: dict[int, float]) -> bool:
    """Whether two configurations (seed → value) are statistically indistinguishable: the
    95 % t-interval of their paired differences over common seeds contains 0 (≥ 2 common
    seeds), else their own intervals overlap. Equal values are always tied."""
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common if np.isfinite(a[s]) and np.isfinite(b[s])]
    if len(diffs) >= 2:
        if all(d == 0 for d in diffs):
            return True
        mean, half = float(np.mean(diffs)), t_halfwidth(diffs)
        return abs(mean) <= half
    va = [x for x in a.values() if np.isfinite(x)]
    vb = [x for x in b.values() if np.isfinite(x)]
    if not va or not vb:
        return False
    ma, mb = float(np.mean(va)), float(np.mean(vb))
    if ma == mb:
        return True
    ha, hb = t_halfwidth(va), t_halfwidth(vb)
    if not (np.isfinite(ha) and np.isfinite(hb)):
        return False
    return abs(ma - mb) <= ha + hb


def format_number(x: float) -> str:
    """4 significant digits, plain between 1e-3 and 1e5, else scientific: one format."""
    if x is None or not np.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def format_interval(mean: float, half: float, n: int) -> str:
    """``mean ± half`` (``(n=1)`` when there is no interval)."""
    if mean is None or not np.isfinite(mean):
        return "—"
    if n < 2 or not np.isfinite(half):
        return f"{format_number(mean)} (n={n})"
    return f"{format_number(mean)} ± {format_number(half)}"


#: (unit name, factor from the stored unit) per kind of column, smallest first
UNITS = {"seconds": [("ms", 1e3), ("s", 1.0)], "mib": [("KiB", 1024.0), ("MiB", 1.0)]}


def pick_unit(kind: str | None, values: Iterable[float]) -> tuple[str, float]:
    """The unit of a column of ``kind`` (``"seconds"`` or ``"mib"``) for these values: the
    smaller unit when the median is below 1 in the larger one."""
    if kind not in UNITS:
        return "", 1.0
    finite = [abs(v) for v in values if v is not None and np.isfinite(v)]
    small, large = UNITS[kind]
    if finite and float(np.median(finite)) < 1.0:
        return small
    return large


def order_key(mean: float, higher_is_better: bool) -> float:
    """Sort key of a mean in its direction (NaN last)."""
    if mean is None or not np.isfinite(mean):
        return math.inf
    return -mean if higher_is_better else mean
