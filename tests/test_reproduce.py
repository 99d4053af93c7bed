"""``blobench reproduce``: the mathematically guaranteed verdicts at the smoke size.

Vicol et al. claims 1 (cold start → closed-form min-displacement solutions) and 2 (warm start
leaves the min-norm inner solution, cold start does not), and Mehra & Hamm claim 1 (penalty
hypergradient error → 0 as γ grows), each through the ordinary harness (in-process here).
"""

from __future__ import annotations

import pytest

from blobench.cli import main
from blobench.contracts.errors import UserError
from blobench.workflows.reproduce import REPRODUCED, reproduce


def _run(name, tmp_path):
    page, verdicts = reproduce(name, tmp_path / "out", tmp_path / "results", size="smoke",
                               progress=False, isolate=False)
    return page, {v.claim.split(".")[0]: v for v in verdicts}


def test_vicol_guaranteed_claims(tmp_path):
    page, verdicts = _run("vicol2022", tmp_path)
    assert set(verdicts) == {"1", "2"}
    for key in ("1", "2"):
        assert verdicts[key].verdict == REPRODUCED, verdicts[key].measured
    text = page.read_text()
    assert "## Verdicts" in text and "vicol2022-claim1.png" in text
    assert (page.parent / "vicol2022-claim1.png").stat().st_size > 1000
    assert (page.parent / "vicol2022-claim2.png").stat().st_size > 1000


def test_mehra_penalty_converges_to_exact(tmp_path):
    page, verdicts = _run("mehra2021", tmp_path)
    assert set(verdicts) == {"1"}
    assert verdicts["1"].verdict == REPRODUCED, verdicts["1"].measured
    assert (page.parent / "mehra2021-claim1.png").exists()


def test_unknown_name_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="vicol2022, mehra2021"):
        reproduce("smith1999", tmp_path / "out", tmp_path / "results")
    code = main(["reproduce", "smith1999", "--results", str(tmp_path / "r"),
                 "--out", str(tmp_path / "o")])
    assert code == 2
    assert "valid: vicol2022, mehra2021" in capsys.readouterr().err
