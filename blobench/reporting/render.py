"""The pages' prose lives in jinja2 templates (``blobench/reporting/templates/``, shipped as
package data: ``*.md.j2`` for the Markdown pages, ``*.html.j2`` with ``site.css.j2`` and
``site_*.js.j2`` for the HTML site; every file ends in ``.j2`` so one package-data glob
ships them); this renders them.

Markdown templates: no escaping; HTML templates (``*.html.j2``): every value is
HTML-escaped unless marked safe (``markupsafe.Markup``: tables built and escaped by the
site), and the ``md_inline`` filter turns the bold and code marks of a Markdown line into
HTML. Both: ``trim_blocks``/``lstrip_blocks`` so block tags take no lines of their own; an
undefined name is an error (a template and its caller cannot drift
apart silently). Prose paragraphs may be wrapped over several template lines: Markdown
joins them (and :func:`paragraphs` does for the HTML site).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=False, default=False),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined)
    env.filters["md_inline"] = md_inline
    return env


def md_inline(text: str) -> Any:
    """A Markdown line as safe HTML: escaped, with its ``**bold**`` and ```code``` marks."""
    import html

    from markupsafe import Markup

    text = html.escape(str(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", text))


def render(template: str, **context: Any) -> str:
    """``templates/<template>`` rendered with ``context``."""
    return _environment().get_template(template).render(**context)


#: a line that starts a list item or a quote: a paragraph of its own
_ITEM = re.compile(r"^(\d+\.|[-*>])\s")


def paragraphs(markdown: str) -> list[str]:
    """The paragraphs and list items of a Markdown text, each on one line (wrapped lines
    joined); headings dropped."""
    out: list[str] = []
    for block in markdown.split("\n\n"):
        items: list[list[str]] = []
        for line in block.strip().splitlines():
            if not items or _ITEM.match(line):
                items.append([])
            items[-1].append(line.strip())
        out += [" ".join(item) for item in items if item and not item[0].startswith("#")]
    return out
