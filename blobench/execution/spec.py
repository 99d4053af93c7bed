"""The bracket syntax for entries on the command line, after benchopt.

``implicit_cg[cg_steps=[5,20],warm_start=false]`` names the entry ``implicit_cg`` with
``cg_steps`` taking two values: :func:`expand` gives the Cartesian product, one dict of
parameter values per combination. Values stay strings here; the entry's
:class:`~blobench.contracts.params.Param` declarations convert and validate them.
"""

from __future__ import annotations

import itertools
import re

from blobench.contracts.errors import UserError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _split_top_level(text: str, where: str) -> list[str]:
    """Split ``text`` on commas that are not inside square brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise UserError(f"unbalanced ']' in {where!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise UserError(f"unbalanced '[' in {where!r}")
    parts.append("".join(cur).strip())
    return parts


def parse(text: str) -> tuple[str, dict[str, list[str]]]:
    """Parse ``name[key=value,key=[v1,v2]]`` into the name and a dict of value lists."""
    text = text.strip()
    if "[" in text:
        if not text.endswith("]"):
            raise UserError(f"malformed entry {text!r}: expected name[key=value,...]")
        name, body = text[: text.index("[")].strip(), text[text.index("[") + 1 : -1]
    else:
        name, body = text, ""
    if not _NAME.match(name):
        raise UserError(f"malformed entry {text!r}: bad name {name!r}")
    values: dict[str, list[str]] = {}
    if body.strip():
        for item in _split_top_level(body, text):
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not _NAME.match(key) or not raw:
                raise UserError(f"malformed entry {text!r}: expected key=value, got {item!r}")
            if key in values:
                raise UserError(f"malformed entry {text!r}: {key!r} given twice")
            if raw.startswith("["):
                if not raw.endswith("]"):
                    raise UserError(f"malformed entry {text!r}: bad list {raw!r}")
                items = _split_top_level(raw[1:-1], text)
                if not all(items):
                    raise UserError(f"malformed entry {text!r}: empty value in {raw!r}")
                values[key] = items
            else:
                values[key] = [raw]
    return name, values


def expand(text: str) -> tuple[str, list[dict[str, str]]]:
    """The entry name and one parameter dict per point of the grid (Cartesian product)."""
    name, values = parse(text)
    keys = list(values)
    combos = itertools.product(*(values[k] for k in keys))
    grid = [dict(zip(keys, combo, strict=True)) for combo in combos]
    return name, grid


def format_entry(name: str, params: dict) -> str:
    """Inverse of :func:`parse` for one point: ``name[a=1,b=x]`` (``name`` if empty)."""
    if not params:
        return name
    return name + "[" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + "]"
