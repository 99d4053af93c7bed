"""Every public import path and engine file the README and docs/*.md name still exists.

After the engine moved into layer subpackages (issue 19) a stale ``from blobench.harness
import ...`` in a document fails a newcomer at the first copy-paste. This test reads the
Markdown itself: each ``from blobench... import ...`` / ``import blobench...`` statement in a
code block or an inline code span is executed (all of them in one fresh interpreter, each
reported on its own), each dotted name ``blobench.a.b`` in inline code must resolve to a module
or an attribute of one, and each path ``blobench/...`` must exist in the tree.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+)`")
_STATEMENT = re.compile(r"^\s*(from\s+blobench[\w.]*\s+import\s+.+|import\s+blobench[\w.]*.*)$")
_DOTTED = re.compile(r"^blobench(?:\.\w+)+$")
_PATH = re.compile(r"(?<![\w/.])blobench/[\w/.]*\w")
#: dotted names that are no modules: the entry-point groups plugins register under
ENTRY_POINT_GROUPS = {"blobench.problems", "blobench.algorithms"}


def _statements(text: str) -> list[str]:
    """Import statements of the fenced code blocks and of inline code spans (each ``;``-
    separated part of an inline span on its own); a parenthesized import is joined."""
    out: list[str] = []
    for block in _FENCE.findall(text):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if _STATEMENT.match(line):
                statement = line.strip()
                while statement.count("(") > statement.count(")") and i + 1 < len(lines):
                    i += 1
                    statement += " " + lines[i].strip()
                out.append(statement.split("#")[0].strip())
            i += 1
    outside = _FENCE.sub("", text)
    for span in _INLINE.findall(outside):
        out += [part.strip() for part in span.split(";") if _STATEMENT.match(part.strip())]
    return out


def _mentions() -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(import statements, dotted names, engine paths) -> the documents naming them."""
    statements: dict[str, list[str]] = {}
    dotted: dict[str, list[str]] = {}
    paths: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text()
        where = doc.relative_to(ROOT).as_posix()
        for statement in _statements(text):
            statements.setdefault(statement, []).append(where)
        for span in _INLINE.findall(_FENCE.sub("", text)):
            name = span.strip().rstrip(".").removesuffix("()")
            if _DOTTED.match(name) and name not in ENTRY_POINT_GROUPS:
                dotted.setdefault(name, []).append(where)
        for path in _PATH.findall(text):
            paths.setdefault(path.rstrip("."), []).append(where)
    return statements, dotted, paths


_CHECK = r"""
import importlib, json, sys
statements, dotted = json.loads(sys.argv[1])
failed = {}
for statement in statements:
    try:
        exec(statement, {})
    except Exception as exc:
        failed[statement] = f"{type(exc).__name__}: {exc}"
for name in dotted:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError as exc:
            failed[name] = f"AttributeError: {exc}"
        break
    else:
        failed[name] = "no importable module"
print(json.dumps(failed))
"""


def test_the_documents_name_imports_and_files():
    statements, dotted, paths = _mentions()
    # the extraction itself: the README's and the docs' known examples are found
    assert "from blobench import ImplicitDoubleLoop" in statements
    assert any(s.startswith("from blobench.workflows.api import") for s in statements)
    out = subprocess.run([sys.executable, "-c", _CHECK, json.dumps([list(statements),
                                                                    list(dotted)])],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    failed = json.loads(out.strip().splitlines()[-1])
    missing = [p for p in paths if not (ROOT / p).exists()]
    report = [f"{name}  ({', '.join(sorted(set(statements.get(name) or dotted[name])))}): "
              f"{why}" for name, why in failed.items()]
    report += [f"{p}  ({', '.join(sorted(set(paths[p])))}): no such file or folder"
               for p in missing]
    assert not report, "stale paths in the documents:\n" + "\n".join(report)


@pytest.mark.parametrize("statement, ok", [
    ("from blobench.contracts.problem import Problem", True),
    ("from blobench.harness import plan", False),  # the pre-issue-19 path
])
def test_the_checker_tells_a_moved_module(statement, ok):
    """Self-check: a statement of the old layout is reported, the new one is not."""
    out = subprocess.run([sys.executable, "-c", _CHECK, json.dumps([[statement], []])],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert (json.loads(out.strip().splitlines()[-1]) == {}) is ok
    assert _statements(f"```python\n{statement}\n```\n") == [statement]
