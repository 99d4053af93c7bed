"""``blobench leaderboard --compare A B``: two results stores, or two algorithm
configurations of one store, side by side — per problem the mean ± 95 % t-interval of the
ranked metric and the headline columns of each, and their difference B − A (time to target
computed within each store, by :mod:`blobench.reporting.target`'s rule)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from blobench.contracts.errors import UserError
from blobench.execution.registry import Registry
from blobench.execution.store import ResultsStore
from blobench.reporting.frames import current_records, final_frame, trace_frame
from blobench.reporting.provenance import provenance_line
from blobench.reporting.render import render
from blobench.reporting.tables import Ranking, aggregate, fmt
from blobench.reporting.target import add_time_to_target

COMPARE_COLUMNS = ["restart_outer_loss", "outer_loss", "time_to_target", "solver_seconds",
                   "peak_tensor_mib", "peak_memory_mib", "hypergrad_rel_error_ref",
                   "min_norm_dist", "cold_restart_gap"]


def store_tables(store: ResultsStore, registry: Registry
                 ) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (problem, size) of ``store``: the page's aggregate table (``attrs["primary"]`` =
    its ranked column)."""
    records = current_records(store)
    final = final_frame(records)
    if final.empty:
        return {}
    traces = trace_frame(records)
    out = {}
    for (problem, size), group in final.groupby(["problem", "size"]):
        ranking = Ranking(registry.problems.get(problem), group)
        group = add_time_to_target(group, traces, ranking.target)
        table = aggregate(group, ranking)
        table.attrs["primary"] = ranking.column
        out[(problem, size)] = table
    return out


def side_by_side(a: pd.Series | None, b: pd.Series | None, primary: str) -> str:
    """Markdown table: metric | A | B | B − A for one configuration (None: absent there)."""
    lines = ["| metric | A | B | B − A |", "|---|---|---|---|"]
    for col in [primary, *COMPARE_COLUMNS]:
        va = a[f"{col}_mean"] if a is not None and f"{col}_mean" in a else np.nan
        vb = b[f"{col}_mean"] if b is not None and f"{col}_mean" in b else np.nan
        if not (np.isfinite(va) or np.isfinite(vb)):
            continue
        sa = fmt(va, a[f"{col}_ci"], int(a[f"{col}_n"])) if a is not None else "—"
        sb = fmt(vb, b[f"{col}_ci"], int(b[f"{col}_n"])) if b is not None else "—"
        diff = f"{vb - va:+.4g}" if np.isfinite(va) and np.isfinite(vb) else "—"
        lines.append(f"| {col} | {sa} | {sb} | {diff} |")
    for key in ("ok", "seeds"):
        lines.append(f"| {key} | {a[key] if a is not None else '—'} | "
                     f"{b[key] if b is not None else '—'} | |")
    return "\n".join(lines)


def _row(table: pd.DataFrame | None, label: str) -> pd.Series | None:
    if table is None or not (table["algorithm"] == label).any():
        return None
    return table[table["algorithm"] == label].iloc[0]


def write_compare(registry: Registry, first: str, second: str, results: str | Path,
                  out: Path, command: str = "blobench leaderboard --compare") -> Path:
    """Side-by-side comparison; ``first``/``second`` are two results folders, or else two
    algorithm configuration labels in the store at ``results``. Returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    stores = Path(first).is_dir() and Path(second).is_dir()
    sections = []
    if stores:
        ta = store_tables(ResultsStore(first), registry)
        tb = store_tables(ResultsStore(second), registry)
        for key in sorted(set(ta) | set(tb)):
            a, b = ta.get(key), tb.get(key)
            primary = (a if a is not None else b).attrs["primary"]
            labels = sorted(set(a["algorithm"] if a is not None else [])
                            | set(b["algorithm"] if b is not None else []))
            sections.append({"title": f"{key[0]} ({key[1]})", "blocks": [
                {"label": label, "table": side_by_side(_row(a, label), _row(b, label), primary)}
                for label in labels]})
    else:
        tables = store_tables(ResultsStore(results), registry)
        for key, table in sorted(tables.items()):
            ra, rb = _row(table, first), _row(table, second)
            if ra is None and rb is None:
                continue
            sections.append({"title": f"{key[0]} ({key[1]})", "blocks": [
                {"label": "", "table": side_by_side(ra, rb, table.attrs["primary"])}]})
        if not sections:
            known = sorted({lab for t in tables.values() for lab in t["algorithm"]})
            raise UserError(f"--compare: neither {first!r} nor {second!r} is a results folder "
                            f"or an algorithm configuration in {results}; known: "
                            f"{', '.join(known) or 'none'}")
    path = out / "compare.md"
    path.write_text(render("compare.md.j2", first=first, second=second, stores=stores,
                           results=str(results), sections=sections,
                           provenance=provenance_line(command)))
    return path
