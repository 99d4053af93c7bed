"""Leaderboard pages from the results store: one ranked table per problem.

For each (problem, size): one row per algorithm configuration, mean ± std over seeds of the
final metrics, ranked by the problem's primary held-out metric (in its direction), ties
broken by solver time. Cells that failed are shown with their status, not dropped. Writes
``<out>/README.md`` (index), ``<out>/<problem>.md`` and ``<out>/<problem>.csv``.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.registry import Registry, summary_line
from blobench.results import results_frame
from blobench.store import ResultsStore
from blobench.version import git_describe

#: (column, header, lower is better) shown after the primary metric, when present
COLUMNS = [
    ("outer_loss", "outer loss", True),
    ("hypergrad_rel_error", "hypergrad rel. err", True),
    ("inner_grad_norm", "‖∇θ g‖", True),
    ("solver_seconds", "time (s)", True),
    ("seconds_per_step", "s / step", True),
    ("peak_memory_mib", "peak mem (MiB)", True),
]


def aggregate(frame: pd.DataFrame, primary: str, higher_is_better: bool) -> pd.DataFrame:
    """Mean and std over seeds per algorithm configuration, ranked."""
    rows = []
    for label, group in frame.groupby("label", sort=False):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {"algorithm": label, "seeds": len(group), "ok": len(ok)}
        bad = group[group["status"] != "ok"]["status"].value_counts()
        row["failures"] = ", ".join(f"{n} {s}" for s, n in bad.items())
        for col in [primary] + [c for c, _, _ in COLUMNS]:
            vals = pd.to_numeric(ok[col], errors="coerce") if col in ok else pd.Series(dtype=float)
            vals = vals.dropna()
            row[f"{col}_mean"] = float(vals.mean()) if len(vals) else np.nan
            row[f"{col}_std"] = float(vals.std(ddof=0)) if len(vals) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    sign = -1.0 if higher_is_better else 1.0
    table["_key"] = sign * table[f"{primary}_mean"]
    table = table.sort_values(["_key", "solver_seconds_mean"], na_position="last")
    table = table.drop(columns="_key").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def _fmt(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}"


def markdown_table(table: pd.DataFrame, primary: str, higher_is_better: bool) -> str:
    cols = [(primary, primary + (" ↑" if higher_is_better else " ↓"), not higher_is_better)]
    cols += [c for c in COLUMNS if table[f"{c[0]}_mean"].notna().any()]
    header = ["rank", "algorithm"] + [h for _, h, _ in cols] + ["ok / seeds", "failures"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for col, _, lower in cols:
        series = table[f"{col}_mean"]
        if series.notna().any():
            best[col] = series.idxmin() if lower else series.idxmax()
    for i, row in table.iterrows():
        cells = [str(row["rank"]), f"`{row['algorithm']}`"]
        for col, _, _ in cols:
            text = _fmt(row[f"{col}_mean"], row[f"{col}_std"])
            cells.append(f"**{text}**" if best.get(col) == i and text != "—" else text)
        cells += [f"{row['ok']} / {row['seeds']}", row["failures"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_leaderboard(registry: Registry, store: ResultsStore, out: Path,
                      command: str = "blobench leaderboard") -> list[Path]:
    """Write the index and per-problem pages; returns the written paths."""
    frame = results_frame(store)
    out.mkdir(parents=True, exist_ok=True)
    provenance = (f"Made by `{command}` at code version `{git_describe()}` on "
                  f"{platform.machine()} ({platform.system()}).")
    written, index = [], []
    if frame.empty:
        index.append("No results yet: run `blobench run` first.")
    for (problem, size), group in frame.groupby(["problem", "size"], sort=True):
        cls = registry.problems.get(problem)
        primary = cls.primary_metric if cls else "outer_loss"
        higher = cls.higher_is_better if cls else False
        table = aggregate(group, primary, higher)
        stem = f"{problem}-{size}"
        table.to_csv(out / f"{stem}.csv", index=False)
        page = [f"# {problem} ({size})", "",
                summary_line(cls) if cls else "",
                "",
                f"Ranked by **{primary}** ({'higher' if higher else 'lower'} is better) on "
                "held-out data, mean ± std over seeds of successful cells; ties broken by "
                "solver time. Best value per column in bold. Failed cells are counted in "
                "the last columns, not dropped.", "",
                markdown_table(table, primary, higher), "", provenance, ""]
        (out / f"{stem}.md").write_text("\n".join(page))
        written += [out / f"{stem}.md", out / f"{stem}.csv"]
        top = table.iloc[0]
        index.append(f"| [{problem}]({stem}.md) | {size} | {primary} | `{top['algorithm']}` "
                     f"| {_fmt(top[f'{primary}_mean'], top[f'{primary}_std'])} | "
                     f"{len(table)} |")
    head = ["# blobench leaderboard", "",
            "One page per problem; each ranks every algorithm configuration that ran on it.", ""]
    if not frame.empty:
        head += ["| problem | size | primary metric | best | value | configs |",
                 "|---|---|---|---|---|---|"]
    (out / "README.md").write_text("\n".join(head + index + ["", provenance, ""]))
    written.insert(0, out / "README.md")
    return written
