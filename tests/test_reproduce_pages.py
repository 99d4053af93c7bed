"""The reproduction pages from synthetic records: every claim's verdict, section and figure.

The smoke size (tests/test_reproduce.py) runs only the guaranteed claims; here every claim of
both papers is fed made-up records whose orderings are known, so each report step, each
criterion and each page template (blobench/workflows/templates/reproduce/) is exercised in
seconds, without running cells. A mutant record set (the orderings broken) must flip the
verdicts: the criteria are read from the records, not assumed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from blobench.workflows.reproduce import (
    NOT,
    PARTIAL,
    REPRODUCED,
    mehra2021,
    mehra_report,
    vicol2022,
    vicol_report,
)
from blobench.workflows.reproduce import run as run_module
from blobench.workflows.reproduce.mehra2021 import GAMMAS, T_GRID
from blobench.workflows.reproduce.page import md_table, pyplot
from blobench.workflows.reproduce.vicol2022 import K_GRID

SEEDS = (0, 1, 2)


def _trace(metric: str, values: list[float], every: int = 10) -> list[dict[str, float]]:
    return [{"step": i * every, "seconds": 0.1 * i, metric: v} for i, v in enumerate(values)]


def vicol_frames(broken: bool = False) -> dict[str, pd.DataFrame]:
    """Records for claims 1–4 of vicol2022; ``broken``: every ordering reversed."""
    bad = 1e3 if broken else 1.0
    c1 = [{"status": "ok", "label": "exact", "seed": s, "outer_loss": 1e-20,
           "lam_min_norm_dist": 1e-6 * bad, "lam_displacement": 1.0,
           "min_norm_dist": 1e-15 * bad, "theta_displacement": 2.0,
           "trace": [{"step": t, "seconds": t / 10, "lam_min_norm_dist": 1.0 / (1 + t),
                      "min_norm_dist": 1e-16} for t in (0, 10, 20)]} for s in SEEDS]
    c2 = []
    for warm in (True, False):
        gaps = [0.1, 0.2, 0.3] if warm != broken else [1e-17, 1e-17, 1e-17]
        c2 += [{"status": "ok", "label": f"unrolled[warm_start={warm}]", "seed": s,
                "algorithm.warm_start": warm, "min_norm_dist": gaps[-1], "test_mse": 0.1,
                "restart_test_mse": 0.2, "trace": _trace("min_norm_dist", gaps)}
               for s in SEEDS]

    def table3(param: str, ks: tuple[int, ...], metric: str, warm: float, cold: float,
               retrain: float) -> pd.DataFrame:
        if broken:
            warm, retrain = retrain, warm
        rows = []
        for k in ks:
            for s in SEEDS:
                rows.append({"status": "ok", "seed": s, param: k, "algorithm.warm_start": True,
                             metric: warm, f"restart_{metric}": retrain})
                rows.append({"status": "ok", "seed": s, param: k, "algorithm.warm_start": False,
                             metric: cold, f"restart_{metric}": cold})
        return pd.DataFrame(rows)

    c4 = []
    for s in SEEDS:
        c4.append({"status": "ok", "seed": s, "algorithm": "exact", "algorithm.terms": np.nan,
                   "algorithm.truncation": np.nan, "lam_displacement": 2.0,
                   "lam_min_norm_dist": 1e-6, "cold_outer_loss": 1e-12})
        for k in K_GRID:
            dist = (1.0 / (1 + k)) if not broken else 1e-6 * (1 + k)
            c4.append({"status": "ok", "seed": s, "algorithm": "neumann", "algorithm.terms": k,
                       "algorithm.truncation": np.nan, "lam_displacement": 2.0,
                       "lam_min_norm_dist": dist, "cold_outer_loss": 1e-12})
            c4.append({"status": "ok", "seed": s, "algorithm": "truncated",
                       "algorithm.terms": np.nan,
                       "algorithm.truncation": k + 1, "lam_displacement": 2.0,
                       "lam_min_norm_dist": dist, "cold_outer_loss": 1e-12})
    return {"c1": pd.DataFrame(c1), "c2": pd.DataFrame(c2),
            "c3_digits": table3("problem.per_class", (1, 10), "test_accuracy", 0.9, 0.6, 0.2),
            "c3_linear": table3("problem.n_synthetic", (1, 10), "test_mse", 0.01, 0.1, 1.0),
            "c3_convnet": table3("problem.per_class", (1, 10), "test_accuracy", 0.8, 0.5, 0.3),
            "c4": pd.DataFrame(c4)}


def mehra_frames(broken: bool = False) -> dict[str, pd.DataFrame]:
    """Records for claims 1–4 of mehra2021; ``broken``: every ordering reversed."""
    p1 = [{"status": "ok", "seed": s, "algorithm.penalty": g,
           "hypergrad_rel_error": (1.0 / (1.0 + g)) if not broken else 0.5}
          for g in GAMMAS for s in SEEDS]
    p2 = []
    for label, acc, secs, mib in (("penalty", 0.92, 1.0, 0.1),
                                  ("unrolled[warm_start=True]", 0.91, 2.0, 0.3),
                                  ("approxgrad", 0.90, 3.0, 0.2),
                                  ("alternating", 0.80, 0.5, 0.1)):
        if broken and label == "penalty":
            acc, secs, mib = 0.5, 9.0, 9.0
        p2 += [{"status": "ok", "seed": s, "label": label, "test_accuracy": acc,
                "corrupt_downweighted": 0.7, "kept_fraction": 0.8, "solver_seconds": secs,
                "peak_tensor_mib": mib, "peak_memory_mib": 1.0,
                "trace": [{"step": t, "seconds": secs * t / 100, "test_accuracy": acc * t / 100}
                          for t in (0, 50, 100)]} for s in SEEDS]
    p3 = [{"status": "ok", "seed": s, "algorithm": alg, "algorithm.inner_steps": t,
           "peak_tensor_mib": (0.05 if alg == "penalty" else 0.01 * t) * (
               (100 / t) if broken else 1)}
          for alg in ("penalty", "unrolled") for t in T_GRID for s in SEEDS]
    p4 = []
    for alg, gamma0 in (("alternating", np.nan), ("unrolled", np.nan), ("approxgrad", np.nan),
                        ("penalty", np.nan), ("penalty", 1.0)):
        for example in (1, 2, 3, 4):
            for t in (1, 5, 10):
                error = 1e-5 if alg == "penalty" and not broken else 0.5
                p4 += [{"status": "ok", "seed": s, "label": alg, "algorithm": alg,
                        "algorithm.penalty": gamma0, "algorithm.inner_steps": t,
                        "problem.example": example, "error": error,
                        "trace": _trace("error", [1.0, 0.1, error], every=50)} for s in SEEDS]
    return {"p1": pd.DataFrame(p1), "p2": pd.DataFrame(p2), "p3": pd.DataFrame(p3),
            "p4": pd.DataFrame(p4)}


CASES = {"vicol2022": (vicol_frames, vicol_report, ["1", "2", "3b", "3", "4"]),
         "mehra2021": (mehra_frames, mehra_report, ["1", "2", "3", "4"])}


@pytest.mark.parametrize("name", sorted(CASES))
def test_page_from_records_of_every_claim(name, tmp_path, monkeypatch):
    frames, report, claims = CASES[name]
    monkeypatch.setattr(run_module, "run_experiments", lambda *args, **kwargs: frames())
    page, verdicts = run_module.reproduce(name, tmp_path, tmp_path / "results",
                                          command="blobench reproduce x")
    by_claim = {v.claim.split(".")[0]: v.verdict for v in verdicts}
    assert list(by_claim) == claims
    assert set(by_claim.values()) == {REPRODUCED}, by_claim
    text = page.read_text()
    assert text.startswith("# Reproduction: ") and "Generated by `blobench reproduce x`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "**" in line]
    assert len(rows) == len(claims)
    headings = re.findall(r"^## Claim (\w+) — ", text, flags=re.M)
    assert headings == claims
    for claim in claims:
        figure = f"{name}-claim{claim}.png"
        assert f"({figure})" in text and (tmp_path / figure).stat().st_size > 1000
    assert "{{" not in text and "{%" not in text and "\n\n\n" not in text
    # each section's table follows its prose: a header row, a rule, its rows
    assert text.count("|---|") >= len(claims) + 1
    # mutant records (every ordering reversed): no claim may still read "reproduced"
    for module in (vicol2022, mehra2021):  # figures of the mutant are not looked at
        monkeypatch.setattr(module, "save_figure", lambda fig, *args: pyplot().close(fig))
    broken = report(frames(broken=True), tmp_path, name)
    flipped = {v.claim.split(".")[0]: v.verdict for v in broken.verdicts}
    assert list(flipped) == claims and set(flipped.values()) <= {PARTIAL, NOT}, flipped


def test_markdown_table_cells_are_escaped():
    table = md_table(pd.DataFrame({"a|b": ["x|y"], "v": [0.123456]}))
    assert table.splitlines() == ["| a\\|b | v |", "|---|---|", "| x\\|y | 0.123 |"]
