"""Leaderboard pages from the results store.

For each (problem, size): one row per algorithm configuration, mean ± std over seeds of the
final metrics of its successful cells; failed / diverged cells are counted with their
status, never dropped (a configuration whose every seed failed is ranked last).

Ranking: the problem's primary held-out metric (in its direction), then time to target.
**Time to target** is computed here from the traces: the solver time at which a cell's outer
loss first came within 1 % of the best outer loss any cell reached on that problem
(target = best + 0.01·|best|, per seed since the seed draws the problem instance); cells
that never reach it have no time ("—").

Writes ``<out>/README.md`` (index: one line per problem with its winner per metric),
``<out>/<problem>-<size>.md`` (ranked tables, rules, provenance, figures) and ``.csv``, and
the PNG figures of :mod:`blobench.plots`. :func:`write_compare` puts two results stores (or
two algorithm configurations of one store) side by side.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench import plots
from blobench.registry import Registry, summary_line
from blobench.results import flatten, latest
from blobench.store import ResultsStore
from blobench.version import code_version, git_describe

TARGET_REL = 0.01

#: (column, header, lower is better): accuracy and cost table, after the primary metric
COLUMNS = [
    ("outer_loss", "outer loss", True),
    ("time_to_target", "time to target (s)", True),
    ("solver_seconds", "time (s)", True),
    ("seconds_per_step", "s / step", True),
    ("calls_to_target", "oracle calls to target", True),
    ("calls_total", "oracle calls", True),
    ("peak_memory_mib", "peak mem (MiB)", True),
    ("peak_tensor_mib", "peak tensors / step (MiB)", True),
    ("inner_grad_norm", "‖∇θ g‖", True),
    ("inner_value_gap", "g − g*", True),
]
#: second table: hypergradient quality and implicit bias (no "best": these describe)
BIAS_COLUMNS = [
    ("hypergrad_cosine", "hypergrad cos", False),
    ("hypergrad_rel_error", "hypergrad rel. err", True),
    ("min_norm_dist", "‖θ − θ_mn‖", True),
    ("lam_min_norm_dist", "‖λ − λ_mn‖", True),
    ("theta_norm", "‖θ‖", None),
    ("theta_displacement", "‖θ − θ₀‖", None),
    ("lam_displacement", "‖λ − λ₀‖", None),
    ("cold_restart_gap", "cold-restart gap (outer)", None),
    ("restart_gap_primary", "cold-restart gap (primary)", None),
    ("restart_steps", "restart GD steps", None),
]
#: metrics with a winner on the index page: (column, header, lower is better)
INDEX_WINNERS = [
    ("time_to_target", "fastest to target", True),
    ("peak_tensor_mib", "least memory", True),
    ("hypergrad_rel_error", "best hypergradient", True),
]


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


def add_time_to_target(final: pd.DataFrame, traces: pd.DataFrame) -> pd.DataFrame:
    """Columns best_outer_loss, target, time_to_target, steps_to_target, calls_to_target."""
    final = final.copy()
    for col in ("time_to_target", "steps_to_target", "calls_to_target", "target"):
        final[col] = np.nan
    if traces.empty or "outer_loss" not in traces:
        return final
    ok = traces[(traces["status"] == "ok") & np.isfinite(traces["outer_loss"].astype(float))]
    # the seed draws the problem instance (data), so the target is per (problem, size, seed)
    for (problem, size, seed), group in ok.groupby(["problem", "size", "seed"]):
        best = float(group["outer_loss"].min())
        target = best + TARGET_REL * abs(best)
        hit = group[group["outer_loss"] <= target].sort_values("seconds")
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


def aggregate(frame: pd.DataFrame, primary: str, higher_is_better: bool) -> pd.DataFrame:
    """Mean and std over seeds per algorithm configuration, ranked (primary, then time to
    target; configurations with no successful seed last)."""
    rows = []
    cols = [primary] + [c for c, _, _ in COLUMNS + BIAS_COLUMNS]
    for label, group in frame.groupby("label", sort=False):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {"algorithm": label, "seeds": len(group), "ok": len(ok)}
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
            row[f"{col}_std"] = float(vals.std(ddof=0)) if len(vals) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    sign = -1.0 if higher_is_better else 1.0
    table["_key"] = sign * table[f"{primary}_mean"]
    table = table.sort_values(["_key", "time_to_target_mean", "solver_seconds_mean"],
                              na_position="last")
    table = table.drop(columns="_key").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


# ------------------------------------------------------------------------- markdown
def _fmt(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}"


def _best_index(series: pd.Series, lower: bool | None) -> Any:
    if lower is None or not series.notna().any():
        return None
    return series.idxmin() if lower else series.idxmax()


def markdown_table(table: pd.DataFrame, cols: list[tuple[str, str, bool | None]],
                   status: bool = True) -> str:
    cols = [c for c in cols if f"{c[0]}_mean" in table and table[f"{c[0]}_mean"].notna().any()]
    header = ["rank", "algorithm"] + [h for _, h, _ in cols]
    if status:
        header += ["ok / seeds", "failed cells (status)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {col: _best_index(table[f"{col}_mean"], lower) for col, _, lower in cols}
    for i, row in table.iterrows():
        cells = [str(row["rank"]), f"`{row['algorithm']}`"
                 + (" (tuned)" if row.get("tuned") is True else "")]
        for col, _, _ in cols:
            text = _fmt(row[f"{col}_mean"], row[f"{col}_std"])
            if col == "time_to_target" and row["ok"]:
                text += f" ({row['reached_target']}/{row['ok']})" if text != "—" \
                    else " (not reached)"
            cells.append(f"**{text}**" if best.get(col) == i and not text.startswith("—")
                         else text)
        if status:
            cells += [f"{row['ok']} / {row['seeds']}", row["failures"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _provenance(command: str) -> str:
    return (f"Made by `{command}` at code version `{git_describe()}` on "
            f"{platform.node()} ({platform.machine()}, {platform.system()}, "
            f"{platform.processor() or 'cpu'}).")


def _figures(stem: str, out: Path, traces: pd.DataFrame, final: pd.DataFrame,
             table: pd.DataFrame, primary: str, higher: bool) -> list[tuple[str, Path]]:
    figs: list[tuple[str, Path | None]] = []
    ok_traces = traces[traces["status"] == "ok"] if not traces.empty else traces
    if not ok_traces.empty:
        figs.append(("Outer loss vs solver time", plots.metric_vs_time(
            ok_traces, "outer_loss", "outer loss", out / f"{stem}-outer_loss.png")))
        if primary in ok_traces and primary != "outer_loss":
            figs.append((f"Held-out {primary} vs solver time", plots.metric_vs_time(
                ok_traces, primary, f"held-out {primary}", out / f"{stem}-primary.png")))
    ok_final = final[final["status"] == "ok"]
    mem = "peak_tensor_mib" if ok_final["peak_tensor_mib"].notna().any() else "peak_memory_mib"
    figs.append(("Peak memory vs unroll length / inner steps",
                 plots.memory_vs_steps(ok_final, mem, out / f"{stem}-memory.png")))
    figs.append(("Accuracy vs time (Pareto)",
                 plots.pareto(table, primary, higher, out / f"{stem}-pareto.png")))
    if not ok_traces.empty:
        figs.append(("Outer loss vs oracle calls", plots.metric_vs_calls(
            ok_traces, "outer_loss", "outer loss", out / f"{stem}-calls.png")))
    if not ok_traces.empty:
        figs.append(("Implicit bias", plots.implicit_bias(ok_traces, ok_final,
                                                          out / f"{stem}-bias.png")))
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


def write_leaderboard(registry: Registry, store: ResultsStore, out: Path,
                      command: str = "blobench leaderboard", figures: bool = True,
                      all_versions: bool = False) -> list[Path]:
    """Write the index and per-problem pages; returns the written paths. Only results of the
    current code are used unless ``all_versions``."""
    records = _records(store, None if all_versions else registry)
    final = _final_frame(records)
    traces = _trace_frame(records)
    out.mkdir(parents=True, exist_ok=True)
    provenance = _provenance(command)
    written, index = [], []
    inapplicable = final
    if final.empty:
        index.append("No results yet: run `blobench run` first.")
    else:
        final = add_time_to_target(final, traces)
        inapplicable = final[final["status"] == "not_applicable"]
        final = final[final["status"] != "not_applicable"]
    groups = final.groupby(["problem", "size"], sort=True) if not final.empty else []
    for (problem, size), group in groups:
        cls = registry.problems.get(problem)
        primary = cls.primary_metric if cls else "outer_loss"
        higher = cls.higher_is_better if cls else False
        table = aggregate(group, primary, higher)
        stem = f"{problem}-{size}"
        table.to_csv(out / f"{stem}.csv", index=False)
        ptraces = traces[(traces["problem"] == problem) & (traces["size"] == size)] \
            if not traces.empty else traces
        methods = sorted({str(m) for m in group["memory_method"].dropna()})
        page = [f"# {problem} ({size})", "", summary_line(cls) if cls else "", "",
                "## Ranking rules", "",
                f"1. **{primary}** on held-out data ({'higher' if higher else 'lower'} is "
                "better), mean ± std over the seeds whose cell finished `ok`;",
                "2. ties broken by **time to target**: solver time (evaluation excluded) until "
                f"the outer loss first came within {TARGET_REL:.0%} of the best outer loss any "
                "cell reached on this problem instance (same problem, size and seed)"
                + "; the (k/n) after it counts the seeds that reached it.", "",
                "Best value per column in bold. Failed or diverged cells are listed with their "
                "status in the last column, not dropped; a configuration with no successful "
                "seed ranks last.", "",
                "## Accuracy and cost", "",
                markdown_table(table, [(primary, primary + (" ↑" if higher else " ↓"),
                                        not higher), *COLUMNS]), "",
                "Peak mem: " + (", ".join(methods) if methods else "process peak")
                + " (CPU: resident-set peak of the solver steps; CUDA: peak allocated). "
                "Peak tensors / step: live tensor bytes of one outer step "
                "(`torch_live_tensors`, see `blobench/memory.py`).", "",
                "## Hypergradient quality and implicit bias", "",
                "Against `exact_hypergradient` and the min-norm solutions where the problem "
                "gives them. Cold-restart gap = f(θ_restart, λ) − f(θ, λ) at the final λ, "
                "θ_restart re-solved from a fresh θ₀ (> 0: the algorithm's θ carries "
                "outer-objective information λ alone does not give back).", "",
                markdown_table(table, BIAS_COLUMNS, status=False), ""]
        page += _not_applicable_section(inapplicable, problem, size)
        page[page.index("## Accuracy and cost"):page.index("## Accuracy and cost")] = \
            _budget_and_tuning(registry, cls, size, group, records)
        if figures:
            figs = _figures(stem, out, ptraces, group, table, primary, higher)
            if figs:
                page += ["## Figures", ""]
            for title, path in figs:
                page += [f"### {title}", "", f"![{title}]({path.name})", ""]
                written.append(path)
        page += ["## Provenance", "", provenance, ""]
        (out / f"{stem}.md").write_text("\n".join(page))
        written += [out / f"{stem}.md", out / f"{stem}.csv"]
        index.append(_index_line(problem, size, stem, primary, higher, table))
    head = ["# blobench leaderboard", "",
            "One page per problem; each ranks every algorithm configuration that ran on it "
            f"(primary metric, then time to reach within {TARGET_REL:.0%} of the best outer "
            "loss). Winner per metric below.", ""]
    if not final.empty:
        hdr = ["problem", "size", "best primary metric"] + [h for _, h, _ in INDEX_WINNERS] \
            + ["configs"]
        head += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    (out / "README.md").write_text("\n".join(head + index + ["", provenance, ""]))
    written.insert(0, out / "README.md")
    return written


def _budget_and_tuning(registry: Registry, cls: Any, size: str, group: pd.DataFrame,
                       records: list[dict[str, Any]]) -> list[str]:
    """Page lines: the problem's budget and what the records used; tuned settings, stale ones
    flagged (the problem or algorithm file changed since the tuning; blobench/tuning.py)."""
    from blobench.problem import Budget
    from blobench.tuning import stale_files

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


def _index_line(problem: str, size: str, stem: str, primary: str, higher: bool,
                table: pd.DataFrame) -> str:
    top = table.iloc[0]
    value = _fmt(top[f"{primary}_mean"], top[f"{primary}_std"])
    cells = [f"[{problem}]({stem}.md)", size, f"`{top['algorithm']}` ({primary} {value})"]
    for col, _, lower in INDEX_WINNERS:
        i = _best_index(table[f"{col}_mean"], lower)
        if col == "peak_tensor_mib" and i is None:
            i = _best_index(table["peak_memory_mib_mean"], True)
            col = "peak_memory_mib"
        cells.append("—" if i is None else
                     f"`{table.at[i, 'algorithm']}` ({table.at[i, f'{col}_mean']:.3g})")
    cells.append(str(len(table)))
    return "| " + " | ".join(cells) + " |"


# -------------------------------------------------------------------------- compare
COMPARE_COLUMNS = ["outer_loss", "time_to_target", "solver_seconds", "peak_memory_mib",
                   "peak_tensor_mib", "hypergrad_rel_error", "min_norm_dist",
                   "cold_restart_gap"]


def _tables(store: ResultsStore, registry: Registry) -> dict[tuple[str, str], pd.DataFrame]:
    records = _records(store)
    final = _final_frame(records)
    if final.empty:
        return {}
    final = add_time_to_target(final, _trace_frame(records))
    out = {}
    for (problem, size), group in final.groupby(["problem", "size"]):
        cls = registry.problems.get(problem)
        primary = cls.primary_metric if cls else "outer_loss"
        table = aggregate(group, primary, cls.higher_is_better if cls else False)
        table.attrs["primary"] = primary
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
        sa = _fmt(va, a[f"{col}_std"]) if a is not None else "—"
        sb = _fmt(vb, b[f"{col}_std"]) if b is not None else "—"
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
        lines += ["Two results stores; per problem and configuration, mean ± std over seeds "
                  "(time to target computed within each store).", ""]
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
            from blobench.errors import UserError

            known = sorted({lab for t in tables.values() for lab in t["algorithm"]})
            raise UserError(f"--compare: neither {first!r} nor {second!r} is a results folder "
                            f"or an algorithm configuration in {results}; known: "
                            f"{', '.join(known) or 'none'}")
    lines += ["", _provenance(command), ""]
    path = out / "compare.md"
    path.write_text("\n".join(lines))
    return path
