"""The leaderboard's Markdown pages: ``<out>/README.md`` (index: the cross-problem summary —
mean rank per algorithm — and one line per problem) and per (problem, size)
``<out>/<problem>-<size>.md`` (rules, budget and tuned settings, ranked tables, figures,
provenance) with its ``.csv``; then the records behind them (``<out>/records/*.parquet``,
:mod:`blobench.reporting.results`) and the interactive site (``<out>/site/``,
:mod:`blobench.reporting.site`).

This module assembles: the numbers come from :mod:`~blobench.reporting.tables` (ranking,
aggregate) and :mod:`~blobench.reporting.target` (time to target), the figures from
:mod:`~blobench.reporting.figure_index`, and the prose from the templates under
``blobench/reporting/templates/`` (:mod:`~blobench.reporting.render`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from blobench.contracts.errors import UserError
from blobench.contracts.problem import Budget
from blobench.execution.progress import CELL_SECONDS, cell_seconds_table
from blobench.execution.registry import Registry, summary_line
from blobench.execution.store import ResultsStore
from blobench.execution.validate import page_stem
from blobench.reporting import ranks
from blobench.reporting.figure_index import draw_all
from blobench.reporting.frames import current_records, final_frame, trace_frame
from blobench.reporting.provenance import confirmations, provenance_line, stale_settings
from blobench.reporting.render import paragraphs, render
from blobench.reporting.results import load_records, merge_records, write_records
from blobench.reporting.tables import (
    BIAS_COLUMNS,
    Ranking,
    aggregate,
    best_index,
    fmt,
    markdown_table,
    summary_rank_table,
)
from blobench.reporting.target import TARGET_FRACTION, add_time_to_target

#: metrics with a winner on the index page: (column, header, lower is better)
INDEX_WINNERS = [
    ("time_to_target", "fastest to target (s)", True),
    ("peak_tensor_mib", "least memory: live tensors (MiB)", True),
    ("hypergrad_rel_error_ref", "best hypergradient: rel. err at reference λ's", True),
]



def _summary(cls: type | None) -> str:
    """The problem's one-line summary, and the formulation of a non-singleton lower level
    (optimistic / pessimistic, ``Problem.formulation``) when it declares one."""
    if cls is None:
        return ""
    formulation = getattr(cls, "formulation", None)
    return summary_line(cls) + (f" Formulation: {formulation}." if formulation else "")

def _target_word(ranking: Ranking) -> str:
    return "F(λ)" if ranking.retrained else "the outer loss"


def reach_summary(group: pd.DataFrame, table: pd.DataFrame, ranking: Ranking
                  ) -> dict[str, Any] | None:
    """The page's targets (per seed) and how many configurations with an ok cell reached
    theirs; None when no seed has a target."""
    targets = group.groupby("seed")["target"].first().dropna()
    if targets.empty:
        return None
    word = "F(λ)" if ranking.retrained else "f(θ, λ)"
    if len(targets) == 1:
        values = f"{word} ≤ {ranks.format_number(float(targets.iloc[0]))}"
    elif len(targets) <= 5:
        values = f"{word} ≤ " + ", ".join(f"{ranks.format_number(float(v))} (seed {s})"
                                          for s, v in targets.items())
    else:
        values = (f"{word} ≤ {ranks.format_number(float(targets.min()))} … "
                  f"{ranks.format_number(float(targets.max()))} over {len(targets)} seeds")
    with_ok = table[table["ok"] > 0]
    return {"targets": values, "reached": int((with_ok["reached_target"] > 0).sum()),
            "configs": len(with_ok)}


def rules_text(ranking: Ranking, methods: list[str], reach: dict[str, Any] | None,
               eval_every: str) -> str:
    """The page's "Ranking rules" section (Markdown)."""
    return render("rules.md.j2", primary=ranking.primary, retrained=ranking.retrained,
                  own_deployed=ranking.own_deployed, higher=ranking.higher,
                  interval_method=ranks.INTERVAL_METHOD, target=_target_word(ranking),
                  fraction="½" if TARGET_FRACTION == 0.5 else f"{TARGET_FRACTION:g}",
                  fraction_words="half" if TARGET_FRACTION == 0.5 else f"{TARGET_FRACTION:.0%}",
                  eval_every=eval_every, reach=reach,
                  memory_methods=", ".join(methods)).strip()


def budget_text(registry: Registry, cls: Any, size: str, group: pd.DataFrame,
                records: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> str:
    """The page's "Budget" (and "Tuned settings") sections: the problem's budget and what
    the cells used; the tuned-settings file, stale settings flagged from the records'
    provenance (:mod:`blobench.reporting.provenance`), and their confirmation on fresh seeds
    as ``settings`` (a loaded tuned-settings file) records it."""
    budget = cls.budgets.get(size, Budget()) if cls else Budget()
    declared = " and ".join(
        p for p in (f"{budget.steps} outer step{'s' if budget.steps != 1 else ''}"
                    if budget.steps is not None else "",
                    f"{budget.seconds:g} s of solver time" if budget.seconds else "") if p)
    steps = pd.to_numeric(group["steps"], errors="coerce").dropna()
    secs = pd.to_numeric(group["solver_seconds"], errors="coerce").dropna()
    used = (f"{int(steps.min())}–{int(steps.max())}" if len(steps) and steps.min() != steps.max()
            else f"{int(steps.max())}" if len(steps) else "—")
    tuned = [r for r in records if r.get("tuned")]
    return render("budget.md.j2", declared=declared, size=size, steps_used=used,
                  max_seconds=f"{secs.max():.3g}" if len(secs) else "—",
                  settings_file=tuned[0]["tuned"].get("settings", "") if tuned else "",
                  stale=stale_settings(registry, tuned),
                  confirm=confirmations(tuned, settings)).strip()


def _index_cells(problem: str, size: str, stem: str, ranking: Ranking,
                 table: pd.DataFrame) -> list[str]:
    top = table.iloc[0]
    col = ranking.column
    value = fmt(top[f"{col}_mean"], top[f"{col}_ci"], int(top[f"{col}_n"]))
    tied = int(table["tied"].sum())
    first = f"`{top['algorithm']}` ({value})" + (f" ≈ {tied} more" if tied else "")
    cells = [f"[{problem}]({stem}.md)", size, first]
    for col, _, lower in INDEX_WINNERS:
        i = best_index(table, col, lower)
        cells.append("—" if i is None else f"`{table.at[i, 'algorithm']}` "
                     f"({ranks.format_number(table.at[i, f'{col}_mean'])})")
    cells.append(str(len(table)))
    return cells


def _eval_every(records: list[dict[str, Any]]) -> str:
    values = sorted({int(r["config"]["eval_every"]) for r in records
                     if r["config"].get("eval_every")})
    return "/".join(map(str, values)) or "—"


def write_leaderboard(registry: Registry, store: ResultsStore | None, out: Path,
                      command: str = "blobench leaderboard", figures: bool = True,
                      all_versions: bool = False, baseline: Path | None = None,
                      site: bool = True, records_out: bool = True,
                      settings: dict[str, Any] | None = None) -> list[Path]:
    """Write the index and per-problem pages, the records behind them and the site; returns
    the written paths. Only results of the current code are used unless ``all_versions``;
    ``baseline``: a leaderboard folder whose shipped records (``records/*.parquet``) are merged
    under the store's (a cell of the store replaces the same cell of the baseline);
    ``settings``: the loaded tuned-settings file whose confirmations the pages state.

    Raises :class:`~blobench.contracts.errors.UserError` — writing nothing — when there is no
    record to show, so committed pages are never replaced by an empty board."""
    records = current_records(store, None if all_versions else registry) \
        if store is not None else []
    if baseline is not None:
        records = merge_records(load_records(baseline), records)
    if not records:
        where = f"{store.root}/" if store is not None else "the results store"
        raise UserError(f"no results in {where}"
                        + (f" nor in {baseline}/records/" if baseline is not None else "")
                        + ": run `blobench run` first (nothing was written)")
    final = final_frame(records)
    traces = trace_frame(records)
    out.mkdir(parents=True, exist_ok=True)
    provenance = provenance_line(command)
    written, index, summary, pages = [], [], [], []
    inapplicable = final[final["status"] == "not_applicable"]
    final = final[final["status"] != "not_applicable"].copy()
    final["family"] = [getattr(registry.algorithms.get(name), "family", "") or "other"
                       for name in final["algorithm"]]
    built = []  # per page: what its Markdown needs; the figures are drawn after, together
    for (problem, size), group in final.groupby(["problem", "size"], sort=True):
        cls = registry.problems.get(problem)
        ranking = Ranking(cls, group)
        ptraces = traces[(traces["problem"] == problem) & (traces["size"] == size)] \
            if not traces.empty else traces
        precords = [r for r in records if r["config"]["problem"] == problem
                    and r["config"]["size"] == size]
        group = add_time_to_target(group, ptraces, ranking.target)
        table = aggregate(group, ranking)
        table.attrs["ranked"] = ranking.column
        stem = page_stem(out, problem, size)  # names from records: never trusted as paths
        table.to_csv(out / f"{stem}.csv", index=False)
        methods = sorted({str(m) for m in group["memory_method"].dropna()})
        title = f"{problem} ({size})"
        rules = rules_text(ranking, methods, reach_summary(group, table, ranking),
                           _eval_every(precords))
        built.append(dict(problem=problem, size=size, cls=cls, ranking=ranking, group=group,
                          table=table, ptraces=ptraces, precords=precords, stem=stem,
                          title=title, rules=rules))
    drawn = draw_all([(b["stem"], out, b["ptraces"], b["group"], b["table"], b["ranking"],
                       b["title"]) for b in built]) if figures else [[] for _ in built]
    for b, figs in zip(built, drawn, strict=True):
        problem, size, cls, ranking, table = (b["problem"], b["size"], b["cls"],
                                              b["ranking"], b["table"])
        stem, title, rules = b["stem"], b["title"], b["rules"]
        skipped = inapplicable[(inapplicable["problem"] == problem)
                               & (inapplicable["size"] == size)]
        page = render(
            "page.md.j2", title=title, summary=_summary(cls), rules=rules,
            budget=budget_text(registry, cls, size, b["group"], b["precords"], settings),
            accuracy_table=markdown_table(table, ranking.columns()),
            bias_table=markdown_table(table, BIAS_COLUMNS, status=False),
            not_applicable=[(label, g["message"].iloc[0])
                            for label, g in skipped.groupby("label", sort=True)],
            figures=[(t, p.name) for t, p in figs], provenance=provenance)
        (out / f"{stem}.md").write_text(page)
        written += [p for _, p in figs] + [out / f"{stem}.md", out / f"{stem}.csv"]
        index.append(_index_cells(problem, size, stem, ranking, table))
        summary.append((problem, size, table))
        pages.append({"problem": problem, "size": size, "stem": stem, "title": title,
                      "ranking": ranking, "table": table, "traces": b["ptraces"],
                      "summary": _summary(cls),
                      "rules": paragraphs(rules)})
    ranks_frame = summary_rank_table(summary)
    header = ["problem", "size", "first (ranked metric)"] + [h for _, h, _ in INDEX_WINNERS] \
        + ["configs"]
    (out / "README.md").write_text(render(
        "index.md.j2", summary=None if ranks_frame.empty else ranks_frame.to_dict("records"),
        header=header, problems=index, provenance=provenance))
    written.insert(0, out / "README.md")
    if records_out:
        written += write_records(records, out / "records")
        timings = cell_seconds_table(records)  # the next fresh run's ETA and order
        if timings:
            (out / CELL_SECONDS).write_text(json.dumps(timings, indent=1) + "\n")
            written.append(out / CELL_SECONDS)
    if site:
        from blobench.reporting.site import write_site

        written += write_site(out / "site", pages, ranks_frame, provenance)
    return written

