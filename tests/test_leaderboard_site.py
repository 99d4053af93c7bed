"""The leaderboard ranks the bilevel answer, shares ranks inside the noise, ships its records
(Parquet round trip, --baseline merge), never writes an empty board, and its HTML site renders
in a real headless browser without script errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from blobench.bases.algorithm import Algorithm, State
from blobench.cli import main
from blobench.execution.harness import plan, run_cell
from blobench.execution.registry import Registry
from blobench.execution.store import SCHEMA_VERSION, ResultsStore
from blobench.reporting.ranks import t_halfwidth, tied
from blobench.reporting.results import load_records, merge_records, write_records

CHROMIUM = Path("/usr/bin/chromium")


# ----------------------------------------------------------------- two toy algorithms
class _Toy(Algorithm):
    """λ follows a fixed path; θ is whatever the toy says (no real solver)."""

    family = "toy"

    def init(self, problem, theta0, lam0, generator):
        return State(theta=theta0.clone(), lam=lam0.clone())


class OwnThetaCheat(_Toy):
    """Keeps λ at λ₀ but fits θ to the outer loss directly: its own f is low, θ is far from
    θ*(λ) — the penalty-method artefact of issue 17."""

    name = "toy_own_theta_cheat"

    def step(self, problem, state):
        theta = state.theta.detach()
        for _ in range(50):
            theta.requires_grad_(True)
            (grad,) = torch.autograd.grad(problem.outer_loss(theta, state.lam), theta)
            theta = (theta - 0.2 * grad).detach()
        state.theta = theta
        return state


class GoodLambda(_Toy):
    """Exact hypergradient descent on λ with θ = θ*(λ): the better bilevel answer F(λ)."""

    name = "toy_good_lambda"

    def step(self, problem, state):
        state.lam = state.lam - problem.outer_step_size() * problem.exact_hypergradient(
            state.lam)
        state.theta = problem.inner_solution(state.lam)
        return state


def _toy_store(tmp_path: Path) -> tuple[Registry, Path]:
    reg = Registry()
    for cls in (OwnThetaCheat, GoodLambda):
        reg.algorithms[cls.name] = cls
        reg.files[f"algorithm:{cls.name}"] = Path(__file__)
    res = tmp_path / "res"
    store = ResultsStore(res)
    cells, _ = plan(reg, ["ridge_ho"], [OwnThetaCheat.name, GoodLambda.name], [0, 1, 2],
                    steps=30, eval_every=5)
    for cell in cells:
        store.write(run_cell(reg, cell))
    return reg, res


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return _toy_store(tmp_path_factory.mktemp("toy"))


def test_ranking_prefers_the_better_bilevel_answer_not_the_own_theta(toy, tmp_path):
    """Issue 17: the cheat's own outer loss (and own-θ held-out metric) is the better one, but
    its λ is worse; the page must rank the better F(λ) first."""
    from blobench.reporting.leaderboard import write_leaderboard

    reg, res = toy
    records = [json.loads(p.read_text()) for p in res.glob("*.json")]
    assert all(r["status"] == "ok" and r["schema"] == SCHEMA_VERSION for r in records)
    final = {(r["label"], r["config"]["seed"]): r["final"] for r in records}
    for seed in range(3):
        cheat, good = final[(OwnThetaCheat.name, seed)], final[(GoodLambda.name, seed)]
        assert cheat["outer_loss"] < good["outer_loss"]  # own θ looks better
        assert good["restart_outer_loss"] < cheat["restart_outer_loss"]  # F(λ) is better
    out = tmp_path / "lb"
    write_leaderboard(reg, ResultsStore(res), out, figures=False, site=False)
    table = pd.read_csv(out / "ridge_ho-quick.csv")
    assert table["algorithm"].iloc[0] == GoodLambda.name
    assert table["restart_test_mse_mean"].iloc[0] < table["restart_test_mse_mean"].iloc[1]
    assert table["outer_loss_mean"].iloc[0] > table["outer_loss_mean"].iloc[1]  # own f: reversed
    page = (out / "ridge_ho-quick.md").read_text()
    assert "test_mse of θ*(λ), re-trained" in page and "test_mse, own θ" in page
    # time to target on F(λ): the good λ reaches it, the cheat (λ = λ₀) does not
    assert table.set_index("algorithm").loc[GoodLambda.name, "reached_target"] == 3


# --------------------------------------------------------------------------- statistics
def test_t_interval_and_ties_by_hand():
    # mean 2, s = 1, n = 3: t_{0.975,2} = 4.302653
    assert t_halfwidth([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    assert t_halfwidth([1.0]) != t_halfwidth([1.0])  # NaN with one value
    best = {0: 1.00, 1: 1.10, 2: 0.90}
    assert tied(best, {0: 1.01, 1: 1.09, 2: 0.92})  # paired differences straddle 0
    assert not tied(best, {0: 1.50, 1: 1.61, 2: 1.40})  # +0.5 on every seed: not tied
    assert tied(best, dict(best))  # bit-identical values: tied
    assert not tied({0: 1.0}, {1: 5.0})  # one seed each, no interval: not tied


def test_bold_needs_two_ok_seeds():
    from blobench.reporting.leaderboard import markdown_table

    table = pd.DataFrame({"rank": [1, 2], "tied": [False, False], "algorithm": ["a", "b"],
                          "family": ["x", "x"], "ok": [1, 3], "seeds": [3, 3],
                          "failures": ["", ""], "reached_target": [0, 0],
                          "m_mean": [0.1, 0.5], "m_ci": [float("nan"), 0.1], "m_n": [1, 3]})
    text = markdown_table(table, [("m", "metric", True, None)])
    assert "**0.1" not in text and "0.1 (n=1)" in text and "**0.5 ± 0.1**" in text


# ------------------------------------------------------- shareable results, read-only
def test_parquet_round_trip_and_traces(toy, tmp_path):
    _, res = toy
    records = list(ResultsStore(res).records())
    paths = write_records(records, tmp_path / "records")
    assert [p.name for p in paths] == ["ridge_ho-quick.parquet"]
    back = load_records(tmp_path)
    assert sorted(map(json.dumps, back)) == sorted(json.dumps(r, sort_keys=True)
                                                   for r in records) or \
        {r["key"]: r for r in back} == {r["key"]: r for r in records}
    flat = pd.read_parquet(paths[0])
    assert set(flat["label"]) == {OwnThetaCheat.name, GoodLambda.name}
    assert (flat["schema"] == SCHEMA_VERSION).all()
    out = tmp_path / "traces.parquet"
    assert main(["results", "--results", str(res), "--format", "parquet", "--traces",
                 "--out", str(out)]) == 0
    long = pd.read_parquet(out)
    n_points = sum(len(r["trace"]) for r in records)
    assert len(long) == n_points and {"key", "step", "restart_outer_loss"} <= set(long.columns)


def test_baseline_merge_ranks_new_cells_among_shipped_ones(toy, tmp_path):
    """`leaderboard --baseline` ranks a user's new cells beside the shipped records, without
    their cells; a cell of the user's store replaces the same cell of the baseline."""
    from blobench.reporting.leaderboard import write_leaderboard

    reg, res = toy
    base = tmp_path / "shipped"
    write_leaderboard(reg, ResultsStore(res), base, figures=False, site=False)
    assert (base / "records" / "ridge_ho-quick.parquet").exists()
    timings = json.loads((base / "cell_seconds.json").read_text())  # the next run's ETA
    assert set(timings) == {f"ridge_ho|quick|{r['label']}" for r in ResultsStore(res).records()}
    mine = tmp_path / "mine"
    cells, _ = plan(reg, ["ridge_ho"], ["implicit_cg"], [0, 1], steps=6, eval_every=3)
    store = ResultsStore(mine)
    for cell in cells:
        store.write(run_cell(reg, cell))
    out = tmp_path / "merged"
    write_leaderboard(reg, ResultsStore(mine), out, figures=False, site=False, baseline=base)
    labels = set(pd.read_csv(out / "ridge_ho-quick.csv")["algorithm"])
    assert labels == {"implicit_cg", OwnThetaCheat.name, GoodLambda.name}
    shipped = load_records(base)
    newer = dict(shipped[0], finished=shipped[0]["finished"] + 1, label="replaced")
    merged = merge_records(shipped, [newer])
    assert len(merged) == len(shipped) and "replaced" in {r["label"] for r in merged}


def test_read_only_commands_create_nothing_and_keep_pages(tmp_path, capsys):
    missing, out = tmp_path / "no_results", tmp_path / "lb"
    out.mkdir()
    (out / "README.md").write_text("committed board")
    assert main(["leaderboard", "--results", str(missing), "--out", str(out)]) != 0
    assert main(["results", "--results", str(missing)]) != 0
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["leaderboard", "--results", str(empty), "--out", str(out)]) != 0
    assert main(["results", "--results", str(empty)]) != 0
    assert (out / "README.md").read_text() == "committed board"
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]
    assert "blobench run" in capsys.readouterr().err


# ----------------------------------------------------------------- the site in a browser
def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
         *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium installed")
def test_site_renders_in_headless_chromium(toy, tmp_path):
    """Each page loads offline, its tables and plot render (plotly draws an SVG inside the
    plot div), and the in-page error hook caught no script error."""
    from blobench.reporting.leaderboard import write_leaderboard

    reg, res = toy
    out = tmp_path / "lb"
    write_leaderboard(reg, ResultsStore(res), out, figures=False)
    site = out / "site"
    html_text = (site / "ridge_ho-quick.html").read_text()
    assert "https://" not in html_text.split("<body>")[0]  # no CDN: plotly is vendored
    for page, plots in (("index.html", 0), ("ridge_ho-quick.html", 1)):
        dom = _chromium(["--dump-dom", (site / page).as_uri()], tmp_path / "profile").stdout
        assert 'data-rendered="1"' in dom, page
        assert "<table" in dom and "<td" in dom, page
        errors = dom.split('<pre id="errors">')[1].split("</pre>")[0]
        assert errors == "", errors
        if plots:
            assert 'class="main-svg"' in dom and "toy_good_lambda" in dom
    shot = tmp_path / "page.png"
    _chromium([f"--screenshot={shot}", "--window-size=1400,1200",
               (site / "ridge_ho-quick.html").as_uri()], tmp_path / "profile")
    assert shot.exists() and shot.stat().st_size > 20000
    shutil.copy(shot, Path("/tmp") / "board_site_shot.png")
