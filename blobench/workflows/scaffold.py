"""``blobench new algorithm|problem NAME``: a new entry file from a commented template."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from blobench.contracts.errors import UserError
from blobench.execution.registry import BUILTIN_FOLDERS, Registry

TEMPLATES = Path(__file__).resolve().parent / "templates"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def new_entry(registry: Registry, kind: str, name: str, folder: Path | None = None) -> Path:
    """Write ``<folder>/<name>.py`` for a new ``kind`` entry; returns its path."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise UserError(f"entry name {name!r} must be lower_snake_case (letters, digits, _)")
    table = registry.algorithms if kind == "algorithm" else registry.problems
    if name in table:
        raise UserError(f"{kind} {name!r} already exists in "
                        f"{registry.source_file(kind, name)}")
    default = BUILTIN_FOLDERS[1] if kind == "algorithm" else BUILTIN_FOLDERS[0]
    target = (folder or default) / f"{name}.py"
    if target.exists():
        raise UserError(f"{target} already exists; not overwriting it")
    target.parent.mkdir(parents=True, exist_ok=True)
    cls = "".join(part.capitalize() for part in name.split("_"))
    text = (TEMPLATES / f"{kind}.py.txt").read_text().format(
        name=name, cls=cls, title=name.replace("_", " ").capitalize())
    target.write_text(text)
    return target
