"""The pages' prose lives in jinja2 templates (``blobench/reporting/templates/*.md.j2``,
shipped as package data); this renders them.

Markdown output: no HTML escaping; ``trim_blocks``/``lstrip_blocks`` so block tags take no
lines of their own; an undefined name is an error (a template and its caller cannot drift
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

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


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
