"""docs/architecture.md's layer table agrees with the tree and with tests/test_layering.py.

The design of record must tell a newcomer where a change goes: every module and subpackage of
a layer folder (``blobench/<layer>/``) is named in its layer's row, and each row's "may
import" column says what ``ALLOWED`` of the layering test enforces. A module added without
its row fails here with the row to edit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from test_layering import ALLOWED, ENGINE, LAYERS, ORDER

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _rows() -> dict[str, tuple[str, str]]:
    """layer -> (modules column, may-import column) of the layer table."""
    lines = DOC.read_text().splitlines()
    start = lines.index("| layer | modules | job | may import |")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0]] = (cells[1], cells[-1])
    return rows


def _may_import(text: str, layer: str) -> set[str]:
    if text in ("—", "-", ""):
        return set()
    if text == "everything":
        return set(ORDER)
    if text == "all of the above":
        return set(ORDER[:ORDER.index(layer)])
    return {part.strip() for part in text.split(",")}


def test_every_layer_has_a_row_with_its_rules():
    rows = _rows()
    assert set(rows) == set(ORDER), f"layers in the table: {sorted(rows)}, in the test: {ORDER}"
    for layer in ORDER:
        said = _may_import(rows[layer][1], layer) - {layer}
        assert said == ALLOWED[layer] - {layer}, (
            f"docs/architecture.md says {layer} may import {sorted(said)}; "
            f"tests/test_layering.py allows {sorted(ALLOWED[layer] - {layer})}")


@pytest.mark.parametrize("layer", sorted({v for k, v in LAYERS.items()
                                          if (ENGINE / k).is_dir()}))
def test_every_module_of_a_layer_folder_is_in_its_row(layer):
    named = set(re.findall(r"`([\w/]+?)/?`", _rows()[layer][0]))
    present = {p.stem for p in (ENGINE / layer).iterdir()
               if (p.suffix == ".py" and p.stem != "__init__")
               or (p.is_dir() and p.name != "__pycache__")}
    missing = sorted(present - named)
    assert not missing, (f"blobench/{layer}/ has {missing}, not named in the {layer} row of "
                         "docs/architecture.md's layer table: add them there")


def test_the_checks_see_a_stale_table(tmp_path, monkeypatch):
    """Self-check: a row missing a module, or with wrong rules, is reported."""
    text = DOC.read_text()
    stale = tmp_path / "architecture.md"
    stale.write_text(text.replace("`isolation`, ", "", 1))
    monkeypatch.setattr(sys.modules[__name__], "DOC", stale)
    with pytest.raises(AssertionError, match="isolation"):
        test_every_module_of_a_layer_folder_is_in_its_row("execution")
    bases_row = next(line for line in text.splitlines() if line.startswith("| bases |"))
    stale.write_text(text.replace(bases_row, bases_row.replace(
        "| contracts, autodiff |", "| contracts, autodiff, execution |")))
    with pytest.raises(AssertionError, match="bases may import"):
        test_every_layer_has_a_row_with_its_rules()
