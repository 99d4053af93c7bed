"""The reproduction page: Markdown from jinja2 templates, figures as PNG beside it.

The prose of every page lives in ``blobench/workflows/templates/reproduce/``: ``page.md.j2``
(title, provenance, the verdict table, the sections) and one template per claim section
(``<paper>/<claim>.md.j2``); the paper modules compute the numbers and pass them in. Templates
are rendered with ``StrictUndefined`` (a misspelt variable is an error, not an empty string),
without HTML autoescaping (the output is Markdown, not HTML: ``<`` in "weight < ½" stays as is)
and with ``trim_blocks``/``lstrip_blocks`` (a ``{% for %}`` line leaves no blank line);
Markdown table cells are escaped by the ``cell`` filter (a ``|`` inside a cell would split
it) and DataFrames become tables with the ``md_table`` filter.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pandas as pd

from blobench.workflows.reproduce.claims import Report, Verdict, fmt

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "reproduce"


def cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell (``|`` escaped, no line breaks)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table; floats with three significant digits (:func:`fmt`)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt(v) if isinstance(v, float) else cell(v)
                                       for v in row) + " |")
    return "\n".join(lines)


@functools.cache
def environment() -> Any:
    """The jinja2 environment of the reproduction templates (see the module docstring)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(cell=cell, md_table=md_table, fmt=fmt)
    return env


def render(template: str, **context: Any) -> str:
    """Template ``template`` (a path under the reproduction templates) with ``context``."""
    return environment().get_template(template).render(**context)


def add_section(report: Report, template: str, **context: Any) -> None:
    """Append the section rendered from ``template`` to ``report``."""
    report.sections.append(render(template, **context))


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, name: str, stem: str, report: Report) -> None:
    """Write ``fig`` to ``<out>/<stem>-<name>.png``, close it and list it in ``report``."""
    path = out / f"{stem}-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    report.figures.append(path.name)


def write_page(path: Path, *, title: str, citation: str, command: str, size: str,
               seeds: list[int], n_cells: int, results: str | Path, wall: float,
               verdicts: list[Verdict], sections: list[str]) -> Path:
    """Write the page of one reproduction to ``path``."""
    path.write_text(render("page.md.j2", title=title, citation=citation, command=command,
                           size=size, seeds=seeds, n_cells=n_cells, results=str(results),
                           wall=wall, verdicts=verdicts, sections=sections))
    return path
