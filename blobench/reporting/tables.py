"""What a page ranks and its tables: the columns, the ranked metric (:class:`Ranking`), the
per-configuration aggregate with intervals, ranks and ties (:func:`aggregate`), and the
Markdown tables (:func:`markdown_table`), leaving out columns that carry no information.

Ordering, ties with the best ("≈", shared rank 1) and the tie-break rule are those of
:mod:`blobench.reporting.ranks`; a value is bold only when it is the best among
configurations with ≥ 2 ok seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from blobench.reporting import ranks

#: a table column: (record column, header, lower is better — None = descriptive, no best,
#: unit kind for ms/s or KiB/MiB — None = no unit)
Column = tuple[str, str, "bool | None", "str | None"]

#: the accuracy and cost table, after the ranked and own-θ primary metrics
COLUMNS: list[Column] = [
    ("restart_outer_loss", "F(λ) = f(θ*(λ), λ)", True, None),
    ("outer_loss", "f(θ, λ), own θ", True, None),
    ("time_to_target", "time to target", True, "seconds"),
    ("calls_to_target", "oracle calls to target", True, None),
    ("solver_seconds", "solver time", True, "seconds"),
    ("seconds_per_step", "time / step", True, "seconds"),
    ("calls_total", "oracle calls", True, None),
    ("peak_tensor_mib", "algorithm peak (live tensors, one step)", True, "mib"),
    ("peak_memory_mib", "RSS above baseline", True, "mib"),
    ("inner_grad_norm", "‖∇θ g‖, own θ", True, None),
    ("inner_value_gap", "g − g*, own θ", True, None),
]
#: second table: hypergradient quality and implicit bias
BIAS_COLUMNS: list[Column] = [
    ("hypergrad_cosine_lam0", "hypergrad cos at λ₀", False, None),
    ("hypergrad_rel_error_lam0", "hypergrad rel. err at λ₀", True, None),
    ("hypergrad_cosine_ref", "hypergrad cos, reference λ's", False, None),
    ("hypergrad_rel_error_ref", "hypergrad rel. err, reference λ's", True, None),
    ("min_norm_dist", "‖θ − θ_mn‖", True, None),
    ("lam_min_norm_dist", "‖λ − λ_mn‖", True, None),
    ("theta_norm", "‖θ‖", None, None),
    ("theta_displacement", "‖θ − θ₀‖", None, None),
    ("lam_displacement", "‖λ − λ₀‖", None, None),
    ("cold_restart_gap", "cold-restart gap F(λ) − f(θ, λ)", None, None),
    ("restart_gap_primary", "cold-restart gap (primary)", None, None),
    ("restart_steps", "re-train GD steps", None, None),
]

class Ranking:
    """What a problem's page ranks: ``column`` (the re-trained primary metric, or the own-θ
    one where the problem deploys its own θ) in its direction, and ``target`` (F(λ), or the
    own outer loss) for time and oracle calls to target."""

    def __init__(self, cls: Any, final: pd.DataFrame) -> None:
        self.primary = cls.primary_metric if cls else "outer_loss"
        self.higher = bool(cls.higher_is_better) if cls else False
        self.own_deployed = bool(getattr(cls, "own_theta_deployed", False))
        retrained = f"restart_{self.primary}" if self.primary != "outer_loss" \
            else "restart_outer_loss"
        has = retrained in final and pd.to_numeric(final[retrained], errors="coerce").notna().any()
        self.retrained = has and not self.own_deployed
        self.column = retrained if self.retrained else self.primary
        self.target = "restart_outer_loss" if self.retrained else "outer_loss"

    def header(self) -> str:
        arrow = " ↑" if self.higher else " ↓"
        if self.retrained:
            return f"{self.primary} of θ*(λ), re-trained{arrow}"
        return f"{self.primary}{arrow}" + (" (own θ = deployed)" if self.own_deployed else "")

    def columns(self) -> list[Column]:
        """The ranked column, the own-θ primary beside it, then :data:`COLUMNS`."""
        cols = [(self.column, self.header(), not self.higher, None)]
        if self.retrained and self.column != self.primary:
            cols.append((self.primary, f"{self.primary}, own θ", None, None))
        rest = COLUMNS if self.retrained else [c for c in COLUMNS if c[0] != "restart_outer_loss"]
        return cols + rest


def aggregate(frame: pd.DataFrame, ranking: Ranking) -> pd.DataFrame:
    """Per algorithm configuration: mean, 95 % interval half-width (``_ci``) and count
    (``_n``) over ok seeds of every column, ranked by :mod:`blobench.reporting.ranks`'s rules;
    ``rank`` (shared 1 for configurations tied with the best) and ``tied`` (≈)."""
    rows, per_seed = [], {}
    cols = list(dict.fromkeys([ranking.column, ranking.primary, ranking.target]
                              + [c[0] for c in COLUMNS + BIAS_COLUMNS]
                              + ["steps_to_target", "target"]))
    for label, group in frame.groupby("label", sort=False):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {"algorithm": label, "name": group["algorithm"].iloc[0],
                               "family": group["family"].iloc[0] if "family" in group else "",
                               "seeds": len(group), "ok": len(ok)}
        if "tuned" in group:
            row["tuned"] = bool(group["tuned"].fillna(False).astype(bool).any())
        bad = group[group["status"] != "ok"]
        row["failures"] = "; ".join(
            f"seed {r['seed']} {r['status']} at step {r['failed_step']}"
            + (f" ({str(r['message'])[:60]})" if r.get("message") else "")
            for _, r in bad.iterrows())
        row["reached_target"] = int(ok["time_to_target"].notna().sum()) \
            if "time_to_target" in ok else 0
        for col in cols:
            vals = pd.to_numeric(ok[col], errors="coerce") if col in ok else pd.Series(dtype=float)
            vals = vals[np.isfinite(vals)]
            row[f"{col}_mean"] = float(vals.mean()) if len(vals) else np.nan
            row[f"{col}_ci"] = ranks.t_halfwidth(list(vals))
            row[f"{col}_n"] = len(vals)
        if ranking.column in ok:
            vals = pd.to_numeric(ok[ranking.column], errors="coerce")
            per_seed[label] = {int(s): float(v) for s, v in zip(ok["seed"], vals, strict=True)
                               if np.isfinite(v)}
        rows.append(row)
    table = pd.DataFrame(rows)
    table["_group"] = np.where(table["ok"] >= 2, 0, np.where(table["ok"] == 1, 1, 2))
    table["_key"] = [ranks.order_key(m, ranking.higher)
                     for m in table[f"{ranking.column}_mean"]]
    table["_f"] = table[f"{ranking.target}_mean"].fillna(np.inf)
    table["_calls"] = table["calls_to_target_mean"].fillna(np.inf) \
        if "calls_to_target_mean" in table else np.inf
    table = table.sort_values(["_group", "_key", "_f", "_calls", "algorithm"], kind="mergesort")
    table = table.drop(columns=["_group", "_key", "_f", "_calls"]).reset_index(drop=True)
    best = table.iloc[0]["algorithm"] if len(table) and table.iloc[0]["ok"] >= 2 else None
    tied = [best is not None and lab != best and n >= 1
            and ranks.tied(per_seed.get(lab, {}), per_seed.get(best, {}))
            for lab, n in zip(table["algorithm"], table["ok"], strict=True)]
    table["tied"] = tied
    table.insert(0, "rank", [1 if t else i + 1 for i, t in enumerate(tied)])
    return table


def fmt(mean: float, ci: float, n: int = 2, factor: float = 1.0) -> str:
    """``mean ± ci`` in one number format, scaled by ``factor`` (a unit change)."""
    return ranks.format_interval(mean * factor, ci * factor, n)


def best_index(table: pd.DataFrame, col: str, lower: bool | None) -> Any:
    """Row of the best mean of ``col`` among configurations with ≥ 2 ok seeds (None if none)."""
    if lower is None or f"{col}_mean" not in table:
        return None
    series = table[f"{col}_mean"].where(table[f"{col}_n"] >= 2)
    if not series.notna().any():
        return None
    return series.idxmin() if lower else series.idxmax()


def informative_columns(table: pd.DataFrame, cols: list[Column]
                        ) -> tuple[list[Column], list[str]]:
    """The columns worth showing, and notes on those left out: no data, the same value in
    every row (constant), or ‖θ‖ where it equals ‖θ − θ₀‖ in every row (θ₀ = 0)."""
    keep, notes = [], []
    for col in cols:
        means = table[f"{col[0]}_mean"] if f"{col[0]}_mean" in table else pd.Series(dtype=float)
        finite = means[np.isfinite(means)]
        if finite.empty:
            continue
        if len(table) > 1 and len(finite) == len(means) and finite.nunique() == 1 \
                and col[0] != table.attrs.get("ranked"):
            notes.append(f"{col[1]} = {ranks.format_number(float(finite.iloc[0]))} "
                         "in every row")
            continue
        if col[0] == "theta_norm" and "theta_displacement_mean" in table and np.allclose(
                table["theta_norm_mean"], table["theta_displacement_mean"], equal_nan=True):
            notes.append("‖θ‖ = ‖θ − θ₀‖ in every row (θ₀ = 0)")
            continue
        keep.append(col)
    return keep, notes


def markdown_table(table: pd.DataFrame, cols: list[Column], status: bool = True) -> str:
    """``table`` (:func:`aggregate`) as a Markdown table of the informative ``cols``, each in
    one unit, bold = best with ≥ 2 ok seeds; ``status``: the ok / seeds and failures
    columns."""
    cols, notes = informative_columns(table, cols)
    units = {c: ranks.pick_unit(kind, table[f"{c}_mean"]) for c, _, _, kind in cols}
    header = ["rank", "algorithm"] + [h + (f" ({units[c][0]})" if units[c][0] else "")
                                      for c, h, _, _ in cols]
    if status:
        header += ["ok / seeds", "failed cells (status)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {col: best_index(table, col, lower) for col, _, lower, _ in cols}
    for i, row in table.iterrows():
        rank = f"{row['rank']} ≈" if row.get("tied") else str(row["rank"])
        cells = [rank, f"`{row['algorithm']}`" + (" (tuned)" if row.get("tuned") is True else "")]
        for col, _, _, _ in cols:
            text = fmt(row[f"{col}_mean"], row[f"{col}_ci"], int(row[f"{col}_n"]),
                       units[col][1])
            if col == "time_to_target" and row["ok"]:
                text += f" ({row['reached_target']}/{row['ok']})" if text != "—" \
                    else " (not reached)"
            cells.append(f"**{text}**" if best.get(col) == i and not text.startswith("—")
                         else text)
        if status:
            cells += [f"{row['ok']} / {row['seeds']}", row["failures"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Not shown (no information): " + "; ".join(notes) + "."]
    return "\n".join(lines)



def summary_rank_table(summary: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """Per algorithm (entry name): its best configuration's rank on each problem page, the
    mean of those ranks, and on how many problems it ran — sorted by mean rank."""
    rows: dict[str, dict[str, Any]] = {}
    for problem, size, table in summary:
        best = table.groupby("name")["rank"].min()
        for name, rank in best.items():
            rows.setdefault(name, {"algorithm": name})[f"{problem} ({size})"] = int(rank)
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        return frame
    cols = [c for c in frame.columns if c != "algorithm"]
    frame["mean rank"] = frame[cols].mean(axis=1)
    frame["problems"] = frame[cols].notna().sum(axis=1)
    frame = frame.sort_values(["mean rank", "algorithm"]).reset_index(drop=True)
    return frame[["algorithm", "mean rank", "problems", *cols]]
