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
(:func:`blobench.reporting.plots.band_over_seeds`) — and a small script draws them with controls:
the
metric, the x-axis, a log y-axis, the quantile bands, and a filter by algorithm family.
Tables sort on a click on their header (numerically on the underlying value). A hook writes
any script error into ``<pre id="errors">`` so a headless browser test can read it from the
DOM; ``<body data-rendered="1">`` marks a page whose plots were drawn.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.reporting import ranks as reporting
from blobench.reporting.plots import band_over_seeds
from blobench.reporting.tables import BIAS_COLUMNS, informative_columns

PLOTLY_FILE = "plotly.min.js"
#: x-axes of the curves: (trace column, axis title)
X_AXES = [("seconds", "solver time (s)"), ("step", "outer steps"),
          ("calls_total", "oracle calls")]

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f2f2f2;cursor:pointer;position:sticky;top:0}
td:nth-child(2),th:nth-child(2){text-align:left}
tr.tied td{background:#f3f9ff} tr.first td{background:#e6f2ff;font-weight:600}
.controls{display:flex;flex-wrap:wrap;gap:1em;align-items:center;margin:.5em 0}
.plot{width:100%;height:560px} #errors{color:#b00}
.note{color:#555;font-size:13px}
"""

ERROR_HOOK = """
<pre id="errors"></pre>
<script>
window.addEventListener('error', function (e) {
  document.getElementById('errors').textContent += 'error: ' + e.message + '\\n';
});
</script>
"""

SORT_JS = """
function sortTable(th) {
  var table = th.closest('table'), body = table.tBodies[0];
  var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
  var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[idx].dataset.v, y = b.cells[idx].dataset.v;
    var nx = parseFloat(x), ny = parseFloat(y);
    if (!isNaN(nx) || !isNaN(ny)) {
      if (isNaN(nx)) return 1; if (isNaN(ny)) return -1;
      return asc ? nx - ny : ny - nx;
    }
    return asc ? String(x).localeCompare(y) : String(y).localeCompare(x);
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.querySelectorAll('th').forEach(function (th) {
  th.addEventListener('click', function () { sortTable(th); });
});
"""

PLOT_JS = """
var DATA = JSON.parse(document.getElementById('curves').textContent);
var palette = ['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2',
               '#7f7f7f','#bcbd22','#17becf'];
var dashes = ['solid','dash','dashdot','dot','longdash','longdashdot'];
function famColor(fam, k, n) {
  var i = DATA.families.indexOf(fam) % palette.length;
  return palette[i];
}
function draw() {
  var metric = document.getElementById('metric').value;
  var x = document.getElementById('xaxis').value;
  var logy = document.getElementById('logy').checked;
  var bands = document.getElementById('bands').checked;
  var fams = Array.prototype.slice.call(document.querySelectorAll('.fam:checked'))
    .map(function (c) { return c.value; });
  var traces = [];
  var members = {};
  DATA.order.forEach(function (label, r) {
    var fam = DATA.family[label];
    members[fam] = (members[fam] || 0) + 1;
    if (fams.indexOf(fam) < 0) return;
    var c = (DATA.curves[metric] || {})[x]; if (!c || !c[label]) return;
    var d = c[label], color = famColor(fam), dash = dashes[(members[fam] - 1) % dashes.length];
    var name = (r + 1) + '. ' + label + ' [' + fam + ']';
    if (bands) {
      traces.push({x: d.x, y: d.high, mode: 'lines', line: {width: 0, color: color},
                   legendgroup: label, showlegend: false, hoverinfo: 'skip'});
      traces.push({x: d.x, y: d.low, mode: 'lines', line: {width: 0, color: color},
                   fill: 'tonexty', opacity: 0.2, legendgroup: label, showlegend: false,
                   hoverinfo: 'skip', fillcolor: color + '33'});
    }
    traces.push({x: d.x, y: d.median, mode: 'lines', name: name, legendgroup: label,
                 line: {color: color, dash: dash, width: 2},
                 hovertemplate: label + '<br>%{x:.4g}, %{y:.4g}<extra></extra>'});
  });
  var layout = {title: {text: DATA.title + ': ' + DATA.metrics[metric] +
                        ' — median over seeds' + (bands ? ', 20–80 % band' : '')},
                xaxis: {title: {text: DATA.xtitles[x]}},
                yaxis: {title: {text: DATA.metrics[metric]}, type: logy ? 'log' : 'linear'},
                legend: {font: {size: 11}}, margin: {t: 50}};
  Plotly.react('plot', traces, layout, {responsive: true, displaylogo: false})
    .then(function () { document.body.dataset.rendered = '1'; });
}
['metric','xaxis','logy','bands'].forEach(function (id) {
  document.getElementById(id).addEventListener('change', draw);
});
document.querySelectorAll('.fam').forEach(function (c) { c.addEventListener('change', draw); });
draw();
"""


def _page(title: str, body: str, plotly: bool = False) -> str:
    script = f'<script src="{PLOTLY_FILE}"></script>' if plotly else ""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>{ERROR_HOOK}{script}"
            f"</head><body>{body}<script>{SORT_JS}</script></body></html>")


def _cell(value: Any, text: str | None = None) -> str:
    v = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else value
    return f"<td data-v='{html.escape(str(v), quote=True)}'>{html.escape(text or str(v))}</td>"


def _table(table: pd.DataFrame, cols: list[tuple[str, str, Any, Any]], status: bool) -> str:
    """The page's ranked table as sortable HTML (same columns and numbers as Markdown)."""
    cols, notes = informative_columns(table, cols)
    units = {c: reporting.pick_unit(kind, table[f"{c}_mean"]) for c, _, _, kind in cols}
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
            text = reporting.format_interval(mean * factor, row[f"{col}_ci"] * factor,
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
    return "".join(out)


def _md_inline(text: str) -> str:
    """Markdown rule lines as HTML paragraphs (bold and code marks only)."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


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
    ``pages``: per problem page, its stem, title, ranking, table, traces and rules."""
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
        options = "".join(f"<option value='{m}'>{html.escape(t)}</option>"
                          for m, t in data["metrics"].items())
        xopts = "".join(f"<option value='{x}'>{html.escape(t)}</option>" for x, t in X_AXES)
        famboxes = "".join(f"<label><input type='checkbox' class='fam' value='{html.escape(f)}'"
                           f" checked> {html.escape(f)}</label>" for f in fams)
        rules = "".join(f"<p>{_md_inline(line)}</p>" for line in page["rules"])
        body = (f"<p><a href='index.html'>← all problems</a></p><h1>{html.escape(page['title'])}"
                f"</h1><p>{_md_inline(page['summary'])}</p>"
                "<h2>Curves</h2><div class='controls'>"
                f"<label>metric <select id='metric'>{options}</select></label>"
                f"<label>x-axis <select id='xaxis'>{xopts}</select></label>"
                "<label><input type='checkbox' id='logy'> log y</label>"
                "<label><input type='checkbox' id='bands' checked> 20–80 % band</label>"
                f"<span>families: {famboxes}</span></div>"
                "<p class='note'>Hover for values; click a legend entry to hide a curve, "
                "double-click to show it alone; drag to zoom.</p>"
                "<div id='plot' class='plot'></div>"
                "<h2>Accuracy and cost</h2><p class='note'>Click a column header to sort.</p>"
                + _table(table, ranking.columns(), status=True)
                + "<h2>Hypergradient quality and implicit bias</h2>"
                + _table(table, BIAS_COLUMNS, status=False)
                + f"<h2>Ranking rules</h2>{rules}<p class='note'>{_md_inline(provenance)}</p>"
                + "<script type='application/json' id='curves'>"
                + json.dumps(data).replace("</", "<\\/") + "</script>"
                + f"<script>{PLOT_JS}</script>")
        path = folder / f"{page['stem']}.html"
        path.write_text(_page(page["title"], body, plotly=True))
        written.append(path)
    rows = []
    for page in pages:
        top = page["table"].iloc[0]
        col = page["ranking"].column
        value = reporting.format_interval(top[f"{col}_mean"], top[f"{col}_ci"],
                                          int(top[f"{col}_n"]))
        rows.append(f"<tr>{_cell(page['title'], '')[:-5]}<a href='{page['stem']}.html'>"
                    f"{html.escape(page['title'])}</a></td>{_cell(top['algorithm'])}"
                    f"{_cell(top[f'{col}_mean'], value)}{_cell(len(page['table']))}</tr>")
    summary_rows = []
    for _, row in summary.iterrows():
        cells = [_cell(row["algorithm"]), _cell(row["mean rank"], f"{row['mean rank']:.2f}"),
                 _cell(row["problems"])]
        cells += [_cell(row[c], "" if pd.isna(row[c]) else str(int(row[c])))
                  for c in summary.columns[3:]]
        summary_rows.append("<tr>" + "".join(cells) + "</tr>")
    heads = ["algorithm", "mean rank", "problems", *summary.columns[3:]]
    body = ("<h1>blobench leaderboard</h1><p>Each problem page ranks every algorithm "
            "configuration on the bilevel answer: the held-out metric of θ*(λ) re-trained at "
            "the final λ (or of the own θ where the problem deploys it), mean ± 95 % "
            "t-interval over seeds, ≈ = tied with the best.</p>"
            "<h2>Summary across problems</h2><p class='note'>Rank of each algorithm's best "
            "configuration per problem (ties with the best share rank 1) and their mean; "
            "click a header to sort.</p><table class='summary'><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead><tbody>"
            + "".join(summary_rows) + "</tbody></table><h2>Problems</h2>"
            "<table class='problems'><thead><tr><th>problem</th><th>first</th>"
            "<th>its ranked metric</th><th>configurations</th></tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table><p class='note'>{_md_inline(provenance)}</p>"
            "<script>document.body.dataset.rendered = '1';</script>")
    index = folder / "index.html"
    index.write_text(_page("blobench leaderboard", body))
    return [index, *written]
