"""The reporting layer's prose templates and provenance: Markdown paragraphs for the site,
HTML escaping of values in the site templates, and stale tuned settings read from a record's
own provenance (no tuning workflow involved)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from blobench.execution.registry import Registry
from blobench.reporting.provenance import stale_settings, stale_tuned_files
from blobench.reporting.render import TEMPLATES, md_inline, paragraphs, render


def test_templates_ship_with_the_package():
    names = {p.name for p in TEMPLATES.iterdir()}
    assert {"page.md.j2", "rules.md.j2", "budget.md.j2", "index.md.j2", "compare.md.j2",
            "site_base.html.j2", "site_page.html.j2", "site_index.html.j2", "site.css.j2",
            "site_sort.js.j2", "site_plot.js.j2"} <= names


def test_paragraphs_join_wrapped_lines_and_split_items():
    text = "## Head\n\n1. first\nstill first;\n2. second\n\nA paragraph\nwrapped.\n"
    assert paragraphs(text) == ["1. first still first;", "2. second", "A paragraph wrapped."]


def test_html_templates_escape_values_markdown_ones_do_not():
    html = render("site_index.html.j2", title="<b>t</b>", plotly_file="", summary_head=["<x>"],
                  summary_rows=[], problem_rows=[], provenance="made by `cmd <y>`")
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in html and "<th>&lt;x&gt;</th>" in html
    assert "<code>cmd &lt;y&gt;</code>" in html
    assert str(md_inline("**a** <b>")) == "<b>a</b> &lt;b&gt;"
    md = render("compare.md.j2", first="a<b", second="c", stores=False, results="r",
                sections=[], provenance="p")
    assert "`a<b`" in md


def _record(problem_sha: str | None, algorithm_sha: str | None, algorithm: str = "exact"
            ) -> dict:
    return {"label": f"{algorithm}[outer_lr=1.0]",
            "config": {"problem": "quadratic", "algorithm": algorithm},
            "tuned": {"key": f"quadratic/quick/{algorithm}", "params": ["outer_lr"],
                      "code": {"problem_file": "problems/quadratic.py",
                               "problem_sha256": problem_sha,
                               "algorithm_file": f"algorithms/{algorithm}.py",
                               "algorithm_sha256": algorithm_sha}}}


def test_stale_tuned_settings_read_from_the_record_provenance():
    registry = Registry()
    sha = {kind: hashlib.sha256(Path(registry.source_file(kind, name)).read_bytes()).hexdigest()
           for kind, name in (("problem", "quadratic"), ("algorithm", "exact"))}
    assert stale_tuned_files(registry, _record(sha["problem"], sha["algorithm"])) == []
    assert stale_tuned_files(registry, _record(sha["problem"], "0" * 64)) == \
        ["algorithms/exact.py"]
    assert stale_tuned_files(registry, _record(None, sha["algorithm"])) == \
        ["problems/quadratic.py"]  # no hash recorded: cannot be trusted
    gone = stale_tuned_files(registry, _record(sha["problem"], "0" * 64, "no_such_alg"))
    assert gone == ["algorithm no_such_alg (no longer registered)"]
    assert stale_tuned_files(registry, {"config": {}, "tuned": None}) == []
    stale = stale_settings(registry, [_record(sha["problem"], "0" * 64)] * 2
                           + [_record(sha["problem"], sha["algorithm"])])
    assert stale == [{"key": "quadratic/quick/exact", "label": "exact[outer_lr=1.0]",
                      "files": ["algorithms/exact.py"]}]
