"""The interactive leaderboard: a static HTML site written by ``blobench leaderboard``.

No server: ``<out>/site/index.html`` (the cross-problem summary — mean rank per algorithm —
and one line per problem) and ``<out>/site/<problem>-<size>.html`` (ranking rules, sortable
tables, curves) open from the file system, offline.

Plots use **plotly.js**, vendored once as ``site/plotly.min.js`` from the ``plotly`` Python
package (MIT; no CDN). Chosen because one self-contained file gives everything the pages
need — hover, hide / show a curve by clicking its legend entry, log axes, filled quantile
bands, zoom — and it runs from ``file://``; Vega-Lite needs three libraries and compiles its
specification at run time, and a hand-written canvas plot would re-implement hover and axes.

A problem page embeds the curves as JSON — per configuration and x-axis (solver time, outer
steps, oracle calls) the median over seeds and the 20 / 80 % quantiles of each metric
(:func:`blobench.reporting.plots.band_over_seeds`) — and a small script draws them with
controls: the metric, the x-axis, a log y-axis, the quantile bands, and a filter by
algorithm family. Tables sort on a click on their header (numerically on the underlying
value). A hook writes any script error into ``<pre id="errors">`` so a headless browser test
can read it from the DOM; ``<body data-rendered="1">`` marks a page whose plots were drawn.

The pages' layout and prose, the style sheet and the scripts are templates
(``blobench/reporting/templates/site_*.html.j2``, ``site.css.j2``, ``site_sort.js.j2``,
``site_plot.js.j2``; :mod:`blobench.reporting.render`, HTML-escaped); this module computes what
they show: the tables (escaped here) and the curves.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.reporting import ranks
from blobench.reporting.plots import band_over_seeds
from blobench.reporting.render import render
from blobench.reporting.tables import BIAS_COLUMNS, informative_columns

PLOTLY_FILE = "plotly.min.js"
#: x-axes of the curves: (trace column, axis title)
X_AXES = [("seconds", "solver time (s)"), ("step", "outer steps"),
          ("calls_total", "oracle calls")]

def _cell(value: Any, text: Any = None) -> Any:
    """A table cell, its sort value in ``data-v``; ``text`` (escaped unless it is Markup)."""
    from markupsafe import Markup, escape

    v = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else value
    shown = text if isinstance(text, Markup) else escape(text or str(v))
    return Markup("<td data-v='{}'>{}</td>").format(str(v), shown)


def _table(table: pd.DataFrame, cols: list[tuple[str, str, Any, Any]], status: bool) -> Any:
    """The page's ranked table as sortable HTML (same columns and numbers as Markdown)."""
    from markupsafe import Markup

    cols, notes = informative_columns(table, cols)
    units = {c: ranks.pick_unit(kind, table[f"{c}_mean"]) for c, _, _, kind in cols}
    head = ["rank", "algorithm"] + [h + (f" ({units[c][0]})" if units[c][0] else "")
                                    for c, h, _, _ in cols]
    if status:
        head += ["ok / seeds", "failures"]
    out = ["<table class='ranked'><thead><tr>"
           + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in table.iterrows():
        cls = "first" if i == 0 else "tied" if row.get("tied") else ""
        rank = f"{row['rank']} ≈" if row.get("tied") else str(row["rank"])
        cells = [_cell(i, rank), _cell(row["algorithm"], f"{row['algorithm']} [{row['family']}]")]
        for col, _, _, _ in cols:
            mean, factor = row[f"{col}_mean"], units[col][1]
            text = ranks.format_interval(mean * factor, row[f"{col}_ci"] * factor,
                                         int(row[f"{col}_n"]))
            cells.append(_cell(mean, text))
        if status:
            cells += [_cell(row["ok"], f"{row['ok']} / {row['seeds']}"),
                      _cell(row["failures"] or "")]
        out.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if notes:
        out.append(f"<p class='note'>Not shown (no information): {html.escape('; '.join(notes))}"
                   ".</p>")
    return Markup("".join(out))  # every part escaped above


def _curves(traces: pd.DataFrame, ranking: Any) -> dict[str, Any]:
    """Median and 20/80 % quantiles per metric, x-axis and configuration (JSON-able)."""
    ok = traces[traces["status"] == "ok"] if not traces.empty else traces
    metrics = {ranking.target: "F(λ) = f(θ*(λ), λ)" if ranking.retrained
               else "outer loss f(θ, λ)"}
    if ranking.column != ranking.target:
        metrics[ranking.column] = ranking.header()
    if ranking.retrained:
        metrics["outer_loss"] = "f(θ, λ), own θ"
        if ranking.primary != "outer_loss":
            metrics[ranking.primary] = f"{ranking.primary}, own θ"
    for col, name in (("min_norm_dist", "‖θ − θ_min-norm‖"), ("inner_grad_norm", "‖∇θ g‖")):
        metrics[col] = name
    curves: dict[str, Any] = {}
    for metric in list(metrics):
        if metric not in ok or not pd.to_numeric(ok[metric], errors="coerce").notna().any():
            metrics.pop(metric)
            continue
        curves[metric] = {}
        for x, _ in X_AXES:
            if x not in ok:
                continue
            bands = band_over_seeds(ok, metric, x=x)
            curves[metric][x] = {
                label: {k: [None if not np.isfinite(v) else float(v) for v in b[col]]
                        for k, col in (("x", x), ("median", "median"), ("low", "low"),
                                       ("high", "high"))}
                for label, b in bands.items()}
    return {"metrics": metrics, "curves": curves}


def write_site(folder: Path, pages: list[dict[str, Any]], summary: pd.DataFrame,
               provenance: str) -> list[Path]:
    """Write the site (module docstring) into ``folder``; returns the written files.
    ``pages``: per problem page, its stem, title, ranking, table, traces and rules (Markdown
    paragraphs)."""
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / PLOTLY_FILE]
    if not written[0].exists() or written[0].stat().st_size < 1000:
        written[0].write_text(get_plotlyjs())
    for page in pages:
        table, ranking = page["table"], page["ranking"]
        fams = sorted(set(table["family"]))
        data = {"title": page["title"], "order": list(table["algorithm"]),
                "family": dict(zip(table["algorithm"], table["family"], strict=True)),
                "families": fams, "xtitles": dict(X_AXES), **_curves(page["traces"], ranking)}
        path = folder / f"{page['stem']}.html"
        path.write_text(render(
            "site_page.html.j2", title=page["title"], plotly_file=PLOTLY_FILE,
            summary=page["summary"], metrics=data["metrics"], x_axes=X_AXES, families=fams,
            accuracy_table=_table(table, ranking.columns(), status=True),
            bias_table=_table(table, BIAS_COLUMNS, status=False), rules=page["rules"],
            provenance=provenance,
            curves_json=Markup(json.dumps(data).replace("</", "<\\/"))))
        written.append(path)
    problem_rows = []
    for page in pages:
        top = page["table"].iloc[0]
        col = page["ranking"].column
        value = ranks.format_interval(top[f"{col}_mean"], top[f"{col}_ci"],
                                      int(top[f"{col}_n"]))
        link = Markup("<a href='{}.html'>{}</a>").format(page["stem"], page["title"])
        problem_rows.append(_cell(page["title"], link) + _cell(top["algorithm"])
                            + _cell(top[f"{col}_mean"], value) + _cell(len(page["table"])))
    summary_rows = []
    for _, row in summary.iterrows():
        cells = [_cell(row["algorithm"]), _cell(row["mean rank"], f"{row['mean rank']:.2f}"),
                 _cell(row["problems"])]
        cells += [_cell(row[c], "" if pd.isna(row[c]) else str(int(row[c])))
                  for c in summary.columns[3:]]
        summary_rows.append(Markup("").join(cells))
    index = folder / "index.html"
    index.write_text(render(
        "site_index.html.j2", title="blobench leaderboard", plotly_file="",
        summary_head=["algorithm", "mean rank", "problems", *summary.columns[3:]],
        summary_rows=summary_rows, problem_rows=problem_rows, provenance=provenance))
    return [index, *written]
