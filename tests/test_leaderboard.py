"""Leaderboard pages from a real (tiny) results store: tables, failures kept, time to target
by hand, figures written, --compare of two stores and of two configurations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from blobench.cli import main
from blobench.execution.store import ResultsStore

ALGS = ["-a", "unrolled[inner_steps=[5,20],warm_start=[true,false]]", "-a", "implicit_cg",
        "-a", "unrolled[outer_lr=1e9]"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    res = tmp_path_factory.mktemp("lb") / "res"
    argv = ["run", "-p", "ridge_ho", *ALGS, "--seeds", "2", "--steps", "6", "--eval-every",
            "2", "--results", str(res), "--no-progress"]
    assert main(argv) == 0
    return res


def test_pages_tables_figures(store, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["leaderboard", "--results", str(store), "--out", str(out)]) == 0
    page = (out / "ridge_ho-quick.md").read_text()
    for label in ("`unrolled[inner_steps=5]`", "`unrolled[warm_start=True]`", "`implicit_cg`",
                  "`unrolled[outer_lr=1000000000.0]`"):
        assert label in page, label
    assert "diverged" in page  # failed cells shown with their status
    for words in ("Ranking rules", "time to target", "cold-restart gap", "‖λ − λ₀‖",
                  "hypergrad rel. err", "RSS above baseline", "algorithm peak",
                  "re-trained", "95 % Student-t", "Made by `blobench leaderboard"):
        assert words in page, words
    for fig in ("outer_loss", "primary", "memory", "pareto", "bias"):
        png = out / f"ridge_ho-quick-{fig}.png"
        assert png.stat().st_size > 5000 and f"]({png.name})" in page
    table = pd.read_csv(out / "ridge_ho-quick.csv")
    assert len(table) == 6 and table["rank"].iloc[0] == 1
    # shared rank 1 for ties with the best, else the position
    for i, (rank, tied) in enumerate(zip(table["rank"], table["tied"], strict=True)):
        assert rank == (1 if tied else i + 1)
    # ranked by the re-trained primary metric, failed configuration (no ok seed) last
    assert table["ok"].iloc[-1] == 0
    means = table["restart_test_mse_mean"].dropna()
    assert means.is_monotonic_increasing
    index = (out / "README.md").read_text()
    assert "fastest to target" in index and "[ridge_ho](ridge_ho-quick.md)" in index


def test_time_to_target_by_hand(store, tmp_path):
    out = tmp_path / "lb"
    assert main(["leaderboard", "--results", str(store), "--out", str(out),
                 "--no-figures"]) == 0
    records = [json.loads(p.read_text()) for p in Path(store).glob("*.json")]
    ok = [r for r in records if r["status"] == "ok"]
    for seed in (0, 1):
        mine = [r for r in ok if r["config"]["seed"] == seed]
        first = sorted(r["trace"][0]["restart_outer_loss"] for r in mine)
        initial = (first[(len(first) - 1) // 2] + first[len(first) // 2]) / 2  # median
        # half of the median final decrease over the configurations that decreased F
        drops = sorted(initial - r["trace"][-1]["restart_outer_loss"] for r in mine)
        drops = [d for d in drops if d > 0]
        typical = (drops[(len(drops) - 1) // 2] + drops[len(drops) // 2]) / 2
        target = initial - 0.5 * typical
        for r in mine:
            hits = [t["seconds"] for t in r["trace"] if t["restart_outer_loss"] <= target]
            r["_ttt"] = min(hits) if hits else None
    by_label: dict[str, list[float]] = {}
    for r in ok:
        if r["_ttt"] is not None:
            by_label.setdefault(r["label"], []).append(r["_ttt"])
    table = pd.read_csv(out / "ridge_ho-quick.csv").set_index("algorithm")
    assert by_label  # someone reached the target (half of the median decrease)
    for label, values in by_label.items():
        assert table.loc[label, "time_to_target_mean"] == pytest.approx(
            sum(values) / len(values), rel=1e-9)
        assert table.loc[label, "reached_target"] == len(values)


def test_compare_two_configs_and_two_stores(store, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["leaderboard", "--results", str(store), "--out", str(out), "--compare",
                 "implicit_cg", "unrolled"]) == 0
    text = (out / "compare.md").read_text()
    assert "A = `implicit_cg`" in text and "| restart_test_mse |" in text and "B − A" in text
    assert main(["leaderboard", "--out", str(out), "--compare", str(store), str(store)]) == 0
    text = (out / "compare.md").read_text()
    assert "Two results stores" in text and "+0 |" in text
    assert main(["leaderboard", "--results", str(store), "--out", str(out), "--compare",
                 "nope", "nada"]) == 2
    err = capsys.readouterr().err
    assert "valid:" in err or "known:" in err


def test_not_applicable_cells_are_listed_not_ranked(tmp_path):
    """A configuration that declines the built problem (forward mode over its tangent size
    limit) is recorded as not_applicable and listed apart: not a failure, not a ranked row."""
    res, out = tmp_path / "res", tmp_path / "lb"
    assert main(["run", "-p", "quadratic", "-a", "implicit_cg", "-a",
                 "forward_mode[max_tangent_size=100]", "--seeds", "1", "--steps", "3",
                 "--results", str(res), "--no-progress"]) == 0
    statuses = sorted(json.loads(p.read_text())["status"] for p in res.glob("*.json"))
    assert statuses == ["not_applicable", "ok"]
    assert main(["leaderboard", "--results", str(res), "--out", str(out), "--no-figures"]) == 0
    page = (out / "quadratic-quick.md").read_text()
    ranking = page.split("## Accuracy and cost")[1].split("##")[0]
    assert "forward_mode" not in ranking and "`implicit_cg`" in ranking
    section = page.split("## Not applicable here")[1]
    assert "`forward_mode[max_tangent_size=100]`" in section and "dim θ · dim λ" in section
    assert len(pd.read_csv(out / "quadratic-quick.csv")) == 1


def test_pages_use_only_records_of_the_current_code(store, tmp_path):
    """A record made by older code of its entries (another code version) is left out of the
    pages by default and shown with --all-versions."""
    res = tmp_path / "res"
    shutil.copytree(store, res)
    old = json.loads(next(res.glob("*.json")).read_text())
    old["code_version"], old["label"] = "000000000000", "unrolled[inner_steps=7]"
    old["config_id"] = old["key"] = "0ad0" * 6  # a hexadecimal key, as the store requires
    old["config"]["algorithm_params"]["inner_steps"] = 7
    ResultsStore(res).write(old)
    out = tmp_path / "lb"
    assert main(["leaderboard", "--results", str(res), "--out", str(out), "--no-figures"]) == 0
    assert "inner_steps=7" not in (out / "ridge_ho-quick.md").read_text()
    assert main(["leaderboard", "--results", str(res), "--out", str(out), "--no-figures",
                 "--all-versions"]) == 0
    assert "inner_steps=7" in (out / "ridge_ho-quick.md").read_text()


def test_figures_drawn_in_parallel_are_the_bytes_drawn_in_one_process(store, tmp_path,
                                                                      monkeypatch):
    """Issue 15: ``blobench leaderboard`` draws the pages' figures in forked processes
    (figure_index.draw_all); each PNG is the same file as drawn in this process, and the
    (title, path) lists come back in page order."""
    from blobench.reporting import figure_index
    seen = []
    original = figure_index.page_figures

    def spy(*args):
        seen.append(args)
        return original(*args)

    monkeypatch.setattr(figure_index, "page_figures", spy)
    assert main(["leaderboard", "--results", str(store), "--out", str(tmp_path / "lb")]) == 0
    stem, _, *rest = seen[0]
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        out.mkdir()
        tasks = [(f"{stem}-{i}", out, *rest) for i in range(3)]
        runs[jobs] = figure_index.draw_all(tasks, jobs=jobs)
        assert [[t for t, _ in page] for page in runs[jobs]] == [[t for t, _ in runs[jobs][0]]] * 3
    for page1, page2 in zip(runs[1], runs[2], strict=True):
        assert [p.name for _, p in page1] == [p.name for _, p in page2] and page1
        for (_, p1), (_, p2) in zip(page1, page2, strict=True):
            assert p1.read_bytes() == p2.read_bytes(), p1.name
