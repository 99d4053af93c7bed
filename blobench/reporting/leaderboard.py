"""Leaderboard pages from the results store (and a baseline of shipped records).

For each (problem, size): one row per algorithm configuration, mean ± a 95 % interval over
seeds (:mod:`blobench.reporting.ranks`) of the final metrics of its successful cells; failed /
diverged cells are counted with their status, never dropped.

**What is ranked: the bilevel answer.** The answer of a bilevel problem is λ; its value is
F(λ) = f(θ*(λ), λ) and the deployed model is θ*(λ) re-trained at λ (blobench/execution/metrics.py:
``restart_*``). Rows are ranked on the primary held-out metric of θ*(λ) — unless the problem
declares that the algorithm's own θ is the deployed model (``own_theta_deployed``, MAML-type
problems) — and time / oracle calls to target are measured on F(λ). The metrics of the
algorithm's own θ stay as their own columns: the difference is the implicit-bias story.
Ordering, ties with the best ("≈", shared rank 1) and the tie-break rule are those of
:mod:`blobench.reporting.ranks`; a value is bold only when it is the best among configurations
with ≥ 2 ok seeds.

**Time to target** is computed here from the traces: the solver time at which a cell's F(λ)
first came within ``TARGET_FRAC`` of the best decrease any cell achieved on that problem
instance, target = best + TARGET_FRAC·(F(λ₀) − best) (per seed since the seed draws the
problem instance); cells that never reach it have no time ("—").

Writes ``<out>/README.md`` (index: a cross-problem summary — mean rank per algorithm — and
one line per problem), ``<out>/<problem>-<size>.md`` (ranked tables, rules, provenance,
figures) and ``.csv``, the PNG figures of :mod:`blobench.reporting.plots`, the records behind the
pages
(``<out>/records/<problem>-<size>.parquet``, :mod:`blobench.reporting.results`) and the interactive
site (``<out>/site/``, :mod:`blobench.reporting.site`). :func:`write_compare` puts two results
stores
(or two algorithm configurations of one store) side by side.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.contracts.errors import UserError
from blobench.execution.registry import Registry, summary_line
from blobench.execution.store import ResultsStore
from blobench.execution.validate import page_stem
from blobench.execution.version import code_version, git_describe
from blobench.reporting import plots
from blobench.reporting import ranks as reporting
from blobench.reporting.results import flatten, latest, load_records, merge_records, write_records

TARGET_FRAC = 0.1

#: (column, header, lower is better, unit kind): accuracy and cost table, after the ranked
#: and own-θ primary metrics; None = descriptive (no best); unit kind for ms/s, KiB/MiB
COLUMNS = [
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
BIAS_COLUMNS = [
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
#: metrics with a winner on the index page: (column, header, lower is better)
INDEX_WINNERS = [
    ("time_to_target", "fastest to target (s)", True),
    ("peak_tensor_mib", "least memory: live tensors (MiB)", True),
    ("hypergrad_rel_error_ref", "best hypergradient: rel. err at reference λ's", True),
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

    def columns(self) -> list[tuple[str, str, bool | None, str | None]]:
        """The ranked column, the own-θ primary beside it, then :data:`COLUMNS`."""
        cols = [(self.column, self.header(), not self.higher, None)]
        if self.retrained and self.column != self.primary:
            cols.append((self.primary, f"{self.primary}, own θ", None, None))
        rest = COLUMNS if self.retrained else [c for c in COLUMNS if c[0] != "restart_outer_loss"]
        return cols + rest


# --------------------------------------------------------------------------- frames
def _records(store: ResultsStore, registry: Registry | None = None) -> list[dict[str, Any]]:
    """The latest record per cell; with ``registry``, only records made by the current code of
    their problem and algorithm entries (and engine): a page never mixes in results of code
    that has since changed. Records of entries not loaded now are kept."""
    records = latest(store.records())
    if registry is None:
        return records
    current: dict[tuple[str, str], str | None] = {}
    kept = []
    for rec in records:
        pair = (rec["config"]["problem"], rec["config"]["algorithm"])
        if pair not in current:
            try:
                current[pair] = code_version(registry.source_file("problem", pair[0]),
                                             registry.source_file("algorithm", pair[1]))
            except KeyError:
                current[pair] = None
        if current[pair] is None or rec["code_version"] == current[pair]:
            kept.append(rec)
    return kept


def _trace_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for rec in records:
        cfg = rec["config"]
        for point in rec.get("trace", []):
            rows.append({"problem": cfg["problem"], "size": cfg["size"], "label": rec["label"],
                         "algorithm": cfg["algorithm"], "seed": cfg["seed"],
                         "status": rec["status"],
                         "warm_start": cfg["algorithm_params"].get("warm_start"),
                         **point})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        calls = [c for c in frame.columns if c.startswith("calls_")]
        frame["calls_total"] = frame[calls].fillna(0).sum(axis=1) if calls else np.nan
    return frame


def _final_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for rec in records:
        row = flatten(rec)
        row["peak_tensor_mib"] = rec.get("peak_tensor_mib")
        row["memory_method"] = rec.get("memory_method")
        row["calls_total"] = float(sum(rec.get("oracle_calls", {}).values()))
        row["tuned"] = bool(rec.get("tuned"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["problem", "size", "label", "seed"]).reset_index(drop=True)


def add_time_to_target(final: pd.DataFrame, traces: pd.DataFrame, target_col: str = "outer_loss"
                       ) -> pd.DataFrame:
    """Columns target, time_to_target, steps_to_target, calls_to_target of ``final`` (one
    problem): the first evaluation whose ``target_col`` (F(λ), or the own outer loss) came
    within :data:`TARGET_FRAC` of the best decrease any cell achieved from the value at λ₀."""
    final = final.copy()
    for col in ("time_to_target", "steps_to_target", "calls_to_target", "target"):
        final[col] = np.nan
    if traces.empty or target_col not in traces:
        return final
    values = pd.to_numeric(traces[target_col], errors="coerce")
    ok = traces[(traces["status"] == "ok") & np.isfinite(values)].copy()
    ok["_v"] = pd.to_numeric(ok[target_col], errors="coerce")
    # the seed draws the problem instance (data), so the target is per (problem, size, seed)
    for (problem, size, seed), group in ok.groupby(["problem", "size", "seed"]):
        best = float(group["_v"].min())
        start = group.sort_values("step").groupby("label")["_v"].first()
        initial = float(start.median())
        target = best + TARGET_FRAC * max(initial - best, 0.0)
        hit = group[group["_v"] <= target].sort_values("seconds")
        first = hit.groupby(["label", "seed"]).first()
        mask = (final["problem"] == problem) & (final["size"] == size) & (final["seed"] == seed)
        final.loc[mask, "target"] = target
        for idx in final.index[mask]:
            key = (final.at[idx, "label"], final.at[idx, "seed"])
            if key in first.index and final.at[idx, "status"] == "ok":
                final.at[idx, "time_to_target"] = first.loc[key, "seconds"]
                final.at[idx, "steps_to_target"] = first.loc[key, "step"]
                final.at[idx, "calls_to_target"] = first.loc[key, "calls_total"]
    return final


def aggregate(frame: pd.DataFrame, ranking: Ranking) -> pd.DataFrame:
    """Per algorithm configuration: mean, 95 % interval half-width (``_ci``) and count
    (``_n``) over ok seeds of every column, ranked by :mod:`blobench.reporting.ranks`'s rules;
    ``rank`` (shared 1 for configurations tied with the best) and ``tied`` (≈)."""
    rows, per_seed = [], {}
    cols = list(dict.fromkeys([ranking.column, ranking.primary, ranking.target]
                              + [c[0] for c in COLUMNS + BIAS_COLUMNS]))
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
            row[f"{col}_ci"] = reporting.t_halfwidth(list(vals))
            row[f"{col}_n"] = len(vals)
        if ranking.column in ok:
            vals = pd.to_numeric(ok[ranking.column], errors="coerce")
            per_seed[label] = {int(s): float(v) for s, v in zip(ok["seed"], vals, strict=True)
                               if np.isfinite(v)}
        rows.append(row)
    table = pd.DataFrame(rows)
    table["_group"] = np.where(table["ok"] >= 2, 0, np.where(table["ok"] == 1, 1, 2))
    table["_key"] = [reporting.order_key(m, ranking.higher)
                     for m in table[f"{ranking.column}_mean"]]
    table["_f"] = table[f"{ranking.target}_mean"].fillna(np.inf)
    table["_calls"] = table["calls_to_target_mean"].fillna(np.inf) \
        if "calls_to_target_mean" in table else np.inf
    table = table.sort_values(["_group", "_key", "_f", "_calls", "algorithm"], kind="mergesort")
    table = table.drop(columns=["_group", "_key", "_f", "_calls"]).reset_index(drop=True)
    best = table.iloc[0]["algorithm"] if len(table) and table.iloc[0]["ok"] >= 2 else None
    tied = [best is not None and lab != best and n >= 1
            and reporting.tied(per_seed.get(lab, {}), per_seed.get(best, {}))
            for lab, n in zip(table["algorithm"], table["ok"], strict=True)]
    table["tied"] = tied
    table.insert(0, "rank", [1 if t else i + 1 for i, t in enumerate(tied)])
    return table


# ------------------------------------------------------------------------- markdown
def _fmt(mean: float, ci: float, n: int = 2, factor: float = 1.0) -> str:
    return reporting.format_interval(mean * factor, ci * factor, n)


def _best_index(table: pd.DataFrame, col: str, lower: bool | None) -> Any:
    """Row of the best mean of ``col`` among configurations with ≥ 2 ok seeds (None if none)."""
    if lower is None or f"{col}_mean" not in table:
        return None
    series = table[f"{col}_mean"].where(table[f"{col}_n"] >= 2)
    if not series.notna().any():
        return None
    return series.idxmin() if lower else series.idxmax()


def informative_columns(table: pd.DataFrame, cols: list[tuple[str, str, bool | None, str | None]]
                        ) -> tuple[list[tuple[str, str, bool | None, str | None]], list[str]]:
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
            notes.append(f"{col[1]} = {reporting.format_number(float(finite.iloc[0]))} "
                         "in every row")
            continue
        if col[0] == "theta_norm" and "theta_displacement_mean" in table and np.allclose(
                table["theta_norm_mean"], table["theta_displacement_mean"], equal_nan=True):
            notes.append("‖θ‖ = ‖θ − θ₀‖ in every row (θ₀ = 0)")
            continue
        keep.append(col)
    return keep, notes


def markdown_table(table: pd.DataFrame, cols: list[tuple[str, str, bool | None, str | None]],
                   status: bool = True) -> str:
    cols, notes = informative_columns(table, cols)
    units = {c: reporting.pick_unit(kind, table[f"{c}_mean"]) for c, _, _, kind in cols}
    header = ["rank", "algorithm"] + [h + (f" ({units[c][0]})" if units[c][0] else "")
                                      for c, h, _, _ in cols]
    if status:
        header += ["ok / seeds", "failed cells (status)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {col: _best_index(table, col, lower) for col, _, lower, _ in cols}
    for i, row in table.iterrows():
        rank = f"{row['rank']} ≈" if row.get("tied") else str(row["rank"])
        cells = [rank, f"`{row['algorithm']}`" + (" (tuned)" if row.get("tuned") is True else "")]
        for col, _, _, _ in cols:
            text = _fmt(row[f"{col}_mean"], row[f"{col}_ci"], int(row[f"{col}_n"]),
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


def _provenance(command: str) -> str:
    return (f"Made by `{command}` at code version `{git_describe()}` on "
            f"{platform.node()} ({platform.machine()}, {platform.system()}, "
            f"{platform.processor() or 'cpu'}).")


def _figures(stem: str, out: Path, traces: pd.DataFrame, final: pd.DataFrame,
             table: pd.DataFrame, ranking: Ranking, title: str) -> list[tuple[str, Path]]:
    figs: list[tuple[str, Path | None]] = []
    ok_traces = traces[traces["status"] == "ok"] if not traces.empty else traces
    order = list(table["algorithm"])
    families = dict(zip(table["algorithm"], table["family"], strict=True))
    style = plots.FigureStyle(order, families, title)
    target_name = "F(λ) = f(θ*(λ), λ)" if ranking.retrained else "outer loss f(θ, λ)"
    if not ok_traces.empty and ranking.target in ok_traces:
        figs.append((f"{target_name} vs solver time", plots.metric_vs_time(
            ok_traces, ranking.target, target_name, out / f"{stem}-outer_loss.png", style)))
        if ranking.column in ok_traces and ranking.column != ranking.target:
            figs.append((f"{ranking.header()} vs solver time", plots.metric_vs_time(
                ok_traces, ranking.column, ranking.header(), out / f"{stem}-primary.png",
                style)))
    ok_final = final[final["status"] == "ok"]
    mem = "peak_tensor_mib" if ok_final["peak_tensor_mib"].notna().any() else "peak_memory_mib"
    figs.append(("Peak memory vs unroll length / inner steps",
                 plots.memory_vs_steps(ok_final, mem, out / f"{stem}-memory.png", style)))
    figs.append(("Accuracy vs time (Pareto)",
                 plots.pareto(table, ranking.column, ranking.header(), ranking.higher,
                              out / f"{stem}-pareto.png", style)))
    if not ok_traces.empty and ranking.target in ok_traces:
        figs.append((f"{target_name} vs oracle calls", plots.metric_vs_calls(
            ok_traces, ranking.target, target_name, out / f"{stem}-calls.png", style)))
    if not ok_traces.empty:
        figs.append(("Implicit bias", plots.implicit_bias(ok_traces, ok_final,
                                                          out / f"{stem}-bias.png", style)))
    return [(t, p) for t, p in figs if p is not None]


def _not_applicable_section(inapplicable: pd.DataFrame, problem: str, size: str) -> list[str]:
    """The configurations that declined this problem instance (status ``not_applicable``)."""
    rows = inapplicable[(inapplicable["problem"] == problem) & (inapplicable["size"] == size)]
    if rows.empty:
        return []
    lines = ["## Not applicable here", "",
             "These configurations declined this problem instance (not a failure; not ranked):",
             ""]
    for label, group in rows.groupby("label", sort=True):
        lines.append(f"- `{label}`: {group['message'].iloc[0]}")
    return [*lines, ""]


def _rules(ranking: Ranking, methods: list[str]) -> list[str]:
    what = (f"**{ranking.primary} of θ*(λ)**, the model re-trained at the final λ from the "
            "cell's θ₀ (closed form where the problem gives it, else a converged re-solve; "
            "blobench/execution/metrics.py) — the bilevel answer is λ, "
            "its value F(λ) = f(θ*(λ), λ); "
            f"the {ranking.primary} of the algorithm's own θ is its own column"
            if ranking.retrained else
            f"**{ranking.primary}** of the algorithm's own θ"
            + (": this problem declares its own θ the deployed model (`own_theta_deployed`: "
               "θ is re-adapted from λ per task, as MAML deploys it)" if ranking.own_deployed
               else " (no re-trained metric recorded)"))
    target = "F(λ)" if ranking.retrained else "the outer loss"
    mem = ("RSS above baseline: " + (", ".join(methods) if methods else "process peak")
           + " (the resident-set growth of the solver steps over the process's baseline; on "
           "CUDA the allocated peak above the start).")
    return [
        "## Ranking rules", "",
        f"1. {what}, {'higher' if ranking.higher else 'lower'} is better: "
        f"{reporting.INTERVAL_METHOD} of the seeds whose cell finished `ok`;",
        "2. **≈** marks configurations statistically tied with the first (they share rank 1): "
        "the 95 % t-interval of their paired per-seed differences to it contains 0 (fewer than "
        "2 common seeds: the two intervals overlap);",
        "3. order: configurations with ≥ 2 ok seeds, then 1, then none; within, by the mean; "
        "equal means by F(λ), then oracle calls to target, then name — never by wall-clock "
        "time. Bold = best of a column among configurations with ≥ 2 ok seeds;",
        f"4. **time / oracle calls to target**: until {target} first came within "
        f"{TARGET_FRAC:.0%} of the best decrease from λ₀ any cell achieved on this problem "
        "instance (same problem, size and seed), solver time excluding evaluation; (k/n) counts "
        "the seeds that reached it.", "",
        "Memory: the headline is the algorithm's own peak — the live tensor bytes of one outer "
        "step (`torch_live_tensors`, blobench/execution/memory.py; "
        "unrolled grows with T, implicit methods "
        f"stay flat). {mem} Failed or diverged cells are listed with their status, not dropped.",
        ""]


def write_leaderboard(registry: Registry, store: ResultsStore | None, out: Path,
                      command: str = "blobench leaderboard", figures: bool = True,
                      all_versions: bool = False, baseline: Path | None = None,
                      site: bool = True, records_out: bool = True) -> list[Path]:
    """Write the index and per-problem pages, the records behind them and the site; returns
    the written paths. Only results of the current code are used unless ``all_versions``;
    ``baseline``: a leaderboard folder whose shipped records (``records/*.parquet``) are merged
    under the store's (a cell of the store replaces the same cell of the baseline).

    Raises :class:`~blobench.contracts.errors.UserError` — writing nothing — when there is no
    record to
    show, so committed pages are never replaced by an empty board."""
    records = _records(store, None if all_versions else registry) if store is not None else []
    if baseline is not None:
        records = merge_records(load_records(baseline), records)
    if not records:
        where = f"{store.root}/" if store is not None else "the results store"
        raise UserError(f"no results in {where}"
                        + (f" nor in {baseline}/records/" if baseline is not None else "")
                        + ": run `blobench run` first (nothing was written)")
    final = _final_frame(records)
    traces = _trace_frame(records)
    out.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(command)
    written, index, summary = [], [], []
    inapplicable = final[final["status"] == "not_applicable"]
    final = final[final["status"] != "not_applicable"].copy()
    final["family"] = [getattr(registry.algorithms.get(name), "family", "") or "other"
                       for name in final["algorithm"]]
    pages: list[dict[str, Any]] = []
    for (problem, size), group in final.groupby(["problem", "size"], sort=True):
        cls = registry.problems.get(problem)
        ranking = Ranking(cls, group)
        ptraces = traces[(traces["problem"] == problem) & (traces["size"] == size)] \
            if not traces.empty else traces
        group = add_time_to_target(group, ptraces, ranking.target)
        table = aggregate(group, ranking)
        table.attrs["ranked"] = ranking.column
        stem = page_stem(out, problem, size)  # names from records: never trusted as paths
        table.to_csv(out / f"{stem}.csv", index=False)
        methods = sorted({str(m) for m in group["memory_method"].dropna()})
        title = f"{problem} ({size})"
        page = [f"# {title}", "", summary_line(cls) if cls else "", "",
                *_rules(ranking, methods),
                "## Accuracy and cost", "",
                markdown_table(table, ranking.columns()), "",
                "## Hypergradient quality and implicit bias", "",
                "Hypergradient quality is measured where it is informative: at λ₀ and at "
                "reference λ's shared by every algorithm on the problem instance — iterates of "
                "exact gradient descent on F from λ₀ where ‖∇F‖ ≥ 10 % of ‖∇F(λ₀)‖ "
                "(blobench/execution/metrics.py `reference_lambdas`) — "
                "each from one fresh outer step of "
                "the algorithm there, against `exact_hypergradient`; not at the final iterate, "
                "where the exact hypergradient of a converged method is ≈ 0. Min-norm distances "
                "refer to the cell's θ₀. Cold-restart gap = F(λ) − f(θ, λ) at the final λ "
                "(> 0: the algorithm's θ carries outer-objective information λ alone does not "
                "give back).", "",
                markdown_table(table, BIAS_COLUMNS, status=False), ""]
        page += _not_applicable_section(inapplicable, problem, size)
        page[page.index("## Accuracy and cost"):page.index("## Accuracy and cost")] = \
            _budget_and_tuning(registry, cls, size, group, records)
        if figures:
            figs = _figures(stem, out, ptraces, group, table, ranking, title)
            if figs:
                page += ["## Figures", ""]
            for fig_title, path in figs:
                page += [f"### {fig_title}", "", f"![{fig_title}]({path.name})", ""]
                written.append(path)
        page += ["## Provenance", "", provenance, ""]
        (out / f"{stem}.md").write_text("\n".join(page))
        written += [out / f"{stem}.md", out / f"{stem}.csv"]
        index.append(_index_line(problem, size, stem, ranking, table))
        summary.append((problem, size, table))
        pages.append({"problem": problem, "size": size, "stem": stem, "title": title,
                      "ranking": ranking, "table": table, "traces": ptraces,
                      "summary": summary_line(cls) if cls else "",
                      "rules": _rules(ranking, methods)})
    head = ["# blobench leaderboard", "",
            "One page per problem; each ranks every algorithm configuration that ran on it on "
            "the bilevel answer — the held-out metric of θ*(λ) re-trained at the final λ (or "
            "of the own θ where the problem deploys it), mean ± 95 % t-interval over seeds, "
            "≈ = tied with the best — then time to target. Interactive version: "
            "[site/index.html](site/index.html).", "",
            "## Summary across problems", "",
            *cross_problem_summary(summary), "",
            "## Problems", ""]
    hdr = ["problem", "size", "first (ranked metric)"] + [h for _, h, _ in INDEX_WINNERS] \
        + ["configs"]
    head += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    (out / "README.md").write_text("\n".join(head + index + ["", provenance, ""]))
    written.insert(0, out / "README.md")
    if records_out:
        written += write_records(records, out / "records")
    if site:
        from blobench.reporting.site import write_site

        written += write_site(out / "site", pages, summary_rank_table(summary), provenance)
    return written


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


def cross_problem_summary(summary: list[tuple[str, str, pd.DataFrame]]) -> list[str]:
    """Markdown lines: mean rank per algorithm over the problems it ran on."""
    frame = summary_rank_table(summary)
    if frame.empty:
        return []
    lines = ["Mean over problems of the rank of each algorithm's best configuration (shared "
             "rank 1 for ties with the best; lower is better).", "",
             "| algorithm | mean rank | problems |", "|---|---|---|"]
    for _, row in frame.iterrows():
        lines.append(f"| `{row['algorithm']}` | {row['mean rank']:.2f} | {row['problems']} |")
    return lines


def _budget_and_tuning(registry: Registry, cls: Any, size: str, group: pd.DataFrame,
                       records: list[dict[str, Any]]) -> list[str]:
    """Page lines: the problem's budget and what the records used; tuned settings, stale ones
    flagged (the problem or algorithm file changed since the tuning;
    blobench/workflows/tuning.py)."""
    from blobench.contracts.problem import Budget
    from blobench.workflows.tuning import stale_files

    budget = cls.budgets.get(size, Budget()) if cls else Budget()
    declared = " and ".join(
        p for p in (f"{budget.steps} outer step{'s' if budget.steps != 1 else ''}"
                    if budget.steps is not None else "",
                    f"{budget.seconds:g} s of solver time" if budget.seconds else "") if p)
    steps = pd.to_numeric(group["steps"], errors="coerce").dropna()
    secs = pd.to_numeric(group["solver_seconds"], errors="coerce").dropna()
    used = (f"{int(steps.min())}–{int(steps.max())}" if len(steps) and steps.min() != steps.max()
            else f"{int(steps.max())}" if len(steps) else "—")
    lines = ["## Budget", "",
             f"The problem declares **{declared or 'no limit'}** per cell at size `{size}`; the "
             f"cells here ran {used} outer steps, at most {secs.max():.3g} s of solver time "
             "each (failed cells stop early). The same budget holds for every row. Oracle calls "
             "(gradients, Hessian- and Jacobian-vector products) are counted beside time, and "
             "the outer loss is plotted against them, so machine speed does not decide the "
             "ranking alone.", ""]
    problem = group["problem"].iloc[0]
    tuned = [r for r in records if r.get("tuned") and r["config"]["problem"] == problem
             and r["config"]["size"] == size]
    if not tuned:
        return [*lines, "Hyperparameters: as given on the command line (no tuned settings "
                "were used on this page).", ""]
    lines += ["## Tuned settings", "",
              "Rows marked (tuned) took their unset hyperparameters from the tuned-settings "
              f"file (`{tuned[0]['tuned'].get('settings', '')}`), chosen by `blobench tune` on "
              "the validation objective over seeds ≥ 1000; the rows here report held-out "
              "metrics over fresh seeds.", ""]
    warned = set()
    for rec in tuned:
        prov = rec["tuned"]
        key = prov.get("key", "")
        if key in warned:
            continue
        warned.add(key)
        changed = stale_files(registry, problem, rec["config"]["algorithm"],
                              prov.get("code", {}))
        if changed:
            lines.append(f"> **Warning: stale tuned setting** `{key}` (used by "
                         f"`{rec['label']}`): {', '.join(changed)} changed since it was "
                         "tuned; rerun `blobench tune`.")
            lines.append("")
    return lines


def _index_line(problem: str, size: str, stem: str, ranking: Ranking,
                table: pd.DataFrame) -> str:
    top = table.iloc[0]
    col = ranking.column
    value = _fmt(top[f"{col}_mean"], top[f"{col}_ci"], int(top[f"{col}_n"]))
    tied = int(table["tied"].sum())
    first = f"`{top['algorithm']}` ({value})" + (f" ≈ {tied} more" if tied else "")
    cells = [f"[{problem}]({stem}.md)", size, first]
    for col, _, lower in INDEX_WINNERS:
        i = _best_index(table, col, lower)
        cells.append("—" if i is None else f"`{table.at[i, 'algorithm']}` "
                     f"({reporting.format_number(table.at[i, f'{col}_mean'])})")
    cells.append(str(len(table)))
    return "| " + " | ".join(cells) + " |"


# -------------------------------------------------------------------------- compare
COMPARE_COLUMNS = ["restart_outer_loss", "outer_loss", "time_to_target", "solver_seconds",
                   "peak_tensor_mib", "peak_memory_mib", "hypergrad_rel_error_ref",
                   "min_norm_dist", "cold_restart_gap"]


def _tables(store: ResultsStore, registry: Registry) -> dict[tuple[str, str], pd.DataFrame]:
    records = _records(store)
    final = _final_frame(records)
    if final.empty:
        return {}
    traces = _trace_frame(records)
    out = {}
    for (problem, size), group in final.groupby(["problem", "size"]):
        ranking = Ranking(registry.problems.get(problem), group)
        group = add_time_to_target(group, traces, ranking.target)
        table = aggregate(group, ranking)
        table.attrs["primary"] = ranking.column
        out[(problem, size)] = table
    return out


def _side_by_side(a: pd.Series | None, b: pd.Series | None, primary: str, name_a: str,
                  name_b: str) -> list[str]:
    lines = [f"| metric | {name_a} | {name_b} | B − A |", "|---|---|---|---|"]
    for col in [primary, *COMPARE_COLUMNS]:
        va = a[f"{col}_mean"] if a is not None and f"{col}_mean" in a else np.nan
        vb = b[f"{col}_mean"] if b is not None and f"{col}_mean" in b else np.nan
        if not (np.isfinite(va) or np.isfinite(vb)):
            continue
        sa = _fmt(va, a[f"{col}_ci"], int(a[f"{col}_n"])) if a is not None else "—"
        sb = _fmt(vb, b[f"{col}_ci"], int(b[f"{col}_n"])) if b is not None else "—"
        diff = f"{vb - va:+.4g}" if np.isfinite(va) and np.isfinite(vb) else "—"
        lines.append(f"| {col} | {sa} | {sb} | {diff} |")
    for key in ("ok", "seeds"):
        lines.append(f"| {key} | {a[key] if a is not None else '—'} | "
                     f"{b[key] if b is not None else '—'} | |")
    return lines


def write_compare(registry: Registry, first: str, second: str, results: str | Path,
                  out: Path, command: str = "blobench leaderboard --compare") -> Path:
    """Side-by-side comparison; ``first``/``second`` are two results folders, or else two
    algorithm configuration labels in the store at ``results``. Returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    stores = Path(first).is_dir() and Path(second).is_dir()
    lines = [f"# Comparison: `{first}` vs `{second}`", ""]
    if stores:
        ta, tb = _tables(ResultsStore(first), registry), _tables(ResultsStore(second), registry)
        lines += ["Two results stores; per problem and configuration, mean ± 95 % t-interval "
                  "over seeds (time to target computed within each store).", ""]
        for key in sorted(set(ta) | set(tb)):
            a, b = ta.get(key), tb.get(key)
            primary = (a if a is not None else b).attrs["primary"]
            labels = sorted(set(a["algorithm"] if a is not None else [])
                            | set(b["algorithm"] if b is not None else []))
            lines += [f"## {key[0]} ({key[1]})", ""]
            for label in labels:
                ra = a[a["algorithm"] == label].iloc[0] if a is not None and \
                    (a["algorithm"] == label).any() else None
                rb = b[b["algorithm"] == label].iloc[0] if b is not None and \
                    (b["algorithm"] == label).any() else None
                lines += [f"### `{label}`", "", *_side_by_side(ra, rb, primary, "A", "B"), ""]
    else:
        tables = _tables(ResultsStore(results), registry)
        lines += [f"Two algorithm configurations in `{results}`, A = `{first}`, "
                  f"B = `{second}`.", ""]
        found = False
        for key, table in sorted(tables.items()):
            ra = table[table["algorithm"] == first]
            rb = table[table["algorithm"] == second]
            if ra.empty and rb.empty:
                continue
            found = True
            lines += [f"## {key[0]} ({key[1]})", "",
                      *_side_by_side(ra.iloc[0] if len(ra) else None,
                                     rb.iloc[0] if len(rb) else None,
                                     table.attrs["primary"], "A", "B"), ""]
        if not found:
            known = sorted({lab for t in tables.values() for lab in t["algorithm"]})
            raise UserError(f"--compare: neither {first!r} nor {second!r} is a results folder "
                            f"or an algorithm configuration in {results}; known: "
                            f"{', '.join(known) or 'none'}")
    lines += ["", _provenance(command), ""]
    path = out / "compare.md"
    path.write_text("\n".join(lines))
    return path
