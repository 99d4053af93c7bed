"""blobench tune: selection by validation, provenance, stale flags, tuned settings in run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from blobench.cli import main
from blobench.contracts.params import Choice, IntRange, LogUniform
from blobench.execution.harness import plan
from blobench.execution.registry import Registry, get_registry
from blobench.execution.store import ResultsStore
from blobench.reporting.leaderboard import write_leaderboard
from blobench.workflows.tuning import (
    TUNING_SEED_BASE,
    default_space,
    load_settings,
    save_settings,
    score_trials,
    stale_entries,
    tune_pair,
)

PLUGINS = str(Path(__file__).parent / "tuning_plugins")


def _tune(tmp_path: Path, plugins: str = PLUGINS, extra: tuple[str, ...] = ()) -> Path:
    settings = tmp_path / "tuned.json"
    argv = ["tune", "--plugins", plugins, "-p", "tuning_toy", "-a", "toy_descent",
            "--settings", str(settings), "--results", str(tmp_path / "res"), "--in-process",
            *extra]
    assert main(argv) == 0
    return settings


def test_selection_by_validation_not_test(tmp_path):
    registry = Registry([PLUGINS])
    store = ResultsStore(tmp_path / "tuning")
    [entry] = tune_pair(registry, "tuning_toy", "toy_descent", size="quick",
                        seeds=[TUNING_SEED_BASE], steps=None, seconds=None, store=store,
                        isolate=False)
    trials = {t["params"]["outer_lr"]: t for t in entry["trials"]}
    assert entry["params"] == {"outer_lr": 1.0}  # validation-best
    assert trials[1.0]["score"] == pytest.approx(0.0)
    assert trials[2.0]["score"] == pytest.approx(0.5)
    # the overflowing step size diverged and lost
    assert trials[1e200]["status"] == "diverged" and trials[1e200]["score"] is None
    # and the test metric really prefers another setting: selection did not read it
    tests = {r["config"]["algorithm_params"]["outer_lr"]: r["final"]["test_loss"]
             for r in store.records() if r["status"] == "ok"}
    assert min(tests, key=tests.get) == 2.0 and tests[2.0] < tests[1.0]
    assert all(r["config"]["seed"] == TUNING_SEED_BASE for r in store.records())
    assert entry["budget"] == {"steps": 1, "seconds": None}


def test_score_trials_failures_lose_and_ties_go_to_the_faster():
    trials = [{"params": {"a": 1}, "status": "diverged", "score": None, "solver_seconds": 0.1},
              {"params": {"a": 2}, "status": "ok", "score": 0.5, "solver_seconds": 3.0},
              {"params": {"a": 3}, "status": "ok", "score": 0.5, "solver_seconds": 1.0},
              {"params": {"a": 4}, "status": "ok", "score": float("nan"), "solver_seconds": 0.0},
              {"params": {"a": 5}, "status": "error", "score": -1.0, "solver_seconds": 0.0}]
    assert score_trials(trials)["params"] == {"a": 3}
    assert score_trials(trials[:1]) is None


def test_search_spaces():
    reg = get_registry()
    soba = default_space(reg.algorithm("soba"))
    assert soba["outer_lr"].relative == "outer" and soba["inner_lr"].relative == "inner"
    assert "inner_steps" not in default_space(reg.algorithm("implicit_cg"))
    assert isinstance(default_space(reg.algorithm("implicit_cg"), True)["inner_steps"],
                      IntRange)
    assert LogUniform(0.1, 10.0, 3).grid(2.0) == [0.2, 2.0, 20.0]
    assert IntRange(5, 50, 3, log=True).grid() == [5, 16, 50]
    assert Choice([1, 2]).grid() == [1, 2]
    with pytest.raises(ValueError):
        LogUniform(0.0, 1.0)


def test_settings_provenance_run_uses_them_explicit_overrides(tmp_path, capsys):
    settings = _tune(tmp_path)
    data = load_settings(settings)
    entry = data["settings"]["tuning_toy/quick/toy_descent"]
    assert entry["params"] == {"outer_lr": 1.0} and entry["tuning_seeds"] == [TUNING_SEED_BASE]
    assert entry["search_space"]["outer_lr"] == {"kind": "choice",
                                                 "values": [0.5, 1.0, 2.0, 1e200]}
    assert len(entry["trials"]) == 4 and entry["validation_metric"] == "restart_outer_loss"
    code = entry["code"]
    assert code["algorithm_file"].endswith("tuning_toy.py") and len(code["problem_sha256"]) == 64
    assert entry["command"].startswith("blobench tune") and entry["date"]
    # the file round-trips: written again, read again, same entry
    json.loads(settings.read_text())
    res = tmp_path / "run"
    base = ["run", "--plugins", PLUGINS, "-p", "tuning_toy", "--seeds", "2", "--in-process",
            "--no-progress", "--settings", str(settings)]
    assert main([*base, "-a", "toy_descent", "--results", str(res)]) == 0
    records = list(ResultsStore(res).records())
    assert sorted(r["config"]["seed"] for r in records) == [0, 1]  # fresh seeds, not 1000
    assert {r["label"] for r in records} == {"toy_descent[outer_lr=1.0]"}
    assert all(r["tuned"]["params"] == ["outer_lr"] for r in records)
    # explicit bracket values override the tuned ones
    assert main([*base, "-a", "toy_descent[outer_lr=2.0]", "--results", str(tmp_path / "b")]) == 0
    [rec, _] = list(ResultsStore(tmp_path / "b").records())
    assert rec["label"] == "toy_descent[outer_lr=2.0]" and rec["tuned"] is None
    # --no-tuned: defaults; another budget than the tuned one: defaults too
    for extra in (["--no-tuned"], ["--steps", "2"]):
        out = tmp_path / extra[0].strip("-")
        assert main([*base, "-a", "toy_descent", "--results", str(out), *extra]) == 0
        assert {r["label"] for r in ResultsStore(out).records()} == {"toy_descent"}
    # the leaderboard marks the tuned row and states the budget
    assert main(["leaderboard", "--plugins", PLUGINS, "--results", str(res), "--out",
                 str(tmp_path / "lb"), "--no-figures"]) == 0
    page = (tmp_path / "lb" / "tuning_toy-quick.md").read_text()
    assert "`toy_descent[outer_lr=1.0]` (tuned)" in page
    assert "1 outer step" in page and "stale" not in page


def test_tuned_cell_has_the_cache_key_of_the_explicit_one(tmp_path):
    settings = _tune(tmp_path)
    registry = get_registry([PLUGINS])
    tuned = load_settings(settings)
    [a], _ = plan(registry, ["tuning_toy"], ["toy_descent"], [0], tuned=tuned)
    [b], _ = plan(registry, ["tuning_toy"], ["toy_descent[outer_lr=1.0]"], [0])
    assert a.tuned and not b.tuned and a.key("v") == b.key("v") and a.label == b.label


def test_stale_setting_is_flagged(tmp_path):
    plugins = tmp_path / "plugins"
    shutil.copytree(PLUGINS, plugins, ignore=shutil.ignore_patterns("__pycache__"))
    settings = _tune(tmp_path, str(plugins))
    res = tmp_path / "run"
    assert main(["run", "--plugins", str(plugins), "-p", "tuning_toy", "-a", "toy_descent",
                 "--seeds", "1", "--in-process", "--no-progress", "--settings", str(settings),
                 "--results", str(res)]) == 0
    assert stale_entries(Registry([plugins]), load_settings(settings)) == []
    source = plugins / "tuning_toy.py"
    source.write_text(source.read_text() + "\n# edited after tuning\n")
    registry = Registry([plugins])
    [(key, changed)] = stale_entries(registry, load_settings(settings))
    assert key == "tuning_toy/quick/toy_descent" and changed[0].endswith("tuning_toy.py")
    # the edited problem's cells rerun (pages use current-code results only), with the stale
    # tuned setting, and the page says so
    assert main(["run", "--plugins", str(plugins), "-p", "tuning_toy", "-a", "toy_descent",
                 "--seeds", "1", "--in-process", "--no-progress", "--settings", str(settings),
                 "--results", str(res)]) == 0
    write_leaderboard(registry, ResultsStore(res), tmp_path / "lb", figures=False)
    page = (tmp_path / "lb" / "tuning_toy-quick.md").read_text()
    assert "stale" in page and "tuning_toy.py" in page
    # --missing retunes the stale pair only, and the refreshed entry is no longer stale
    before = load_settings(settings)["settings"]["tuning_toy/quick/toy_descent"]["date"]
    _tune(tmp_path, str(plugins), ("--missing",))
    assert stale_entries(Registry([plugins]), load_settings(settings)) == []
    entry = load_settings(settings)["settings"]["tuning_toy/quick/toy_descent"]
    assert entry["params"] == {"outer_lr": 1.0} and entry["date"] >= before


def test_all_trials_diverge_entry_recorded_not_applied(tmp_path):
    settings = tmp_path / "tuned.json"
    assert main(["tune", "--plugins", PLUGINS, "-p", "tuning_toy", "-a",
                 "toy_descent[outer_lr=[1e200,1e300]]", "--settings", str(settings),
                 "--results", str(tmp_path / "res"), "--in-process"]) == 1
    entry = load_settings(settings)["settings"]["tuning_toy/quick/toy_descent"]
    assert entry["params"] is None and {t["status"] for t in entry["trials"]} == {"diverged"}
    [cell], _ = plan(get_registry([PLUGINS]), ["tuning_toy"], ["toy_descent"], [0],
                     tuned=load_settings(settings))
    assert cell.label == "toy_descent" and not cell.tuned


def test_prune_removes_entries_of_pairs_planning_now_skips():
    from blobench.workflows.tuning import prune_inapplicable

    reg = get_registry()
    sinus = reg.problem("sinusoid")
    params = {**{k: p.default for k, p in sinus.params.items()}, **sinus.sizes["quick"]}

    def entry(algorithm, **overrides):
        return {"problem": "sinusoid", "algorithm": algorithm, "fixed": {},
                "problem_params": {**params, **overrides}}

    settings = {"settings": {"a": entry("implicit_cg"), "b": entry("maml"),
                             "c": entry("implicit_cg", proximal=2.0),
                             "d": {**entry("implicit_cg"), "algorithm": "not_loaded"}}}
    removed = prune_inapplicable(reg, settings)
    assert [k for k, _ in removed] == ["a"] and "θ's initialization" in removed[0][1]
    assert sorted(settings["settings"]) == ["b", "c", "d"]


def test_a_winner_that_diverges_on_fresh_seeds_gives_way_to_the_next(tmp_path, capsys):
    """blobench/workflows/tuning/confirm.py on fragile_toy (tests/tuning_plugins): the search
    on seed 1000 prefers α = 1.9, which diverges on every other draw; confirmation on seeds
    1001–1002 rejects it and keeps the next trial in score order that is ok there (α = 1:
    its score on 1000 beats α = 0.3's). The entry records both checks."""
    settings = tmp_path / "tuned.json"
    argv = ["tune", "--plugins", PLUGINS, "-p", "fragile_toy", "-a", "curved_descent",
            "--settings", str(settings), "--results", str(tmp_path / "res"), "--in-process"]
    assert main([*argv, "--confirm-seeds", "0"]) == 0
    entry = load_settings(settings)["settings"]["fragile_toy/quick/curved_descent"]
    assert entry["params"] == {"outer_lr": 1.9} and "confirmation" not in entry
    scores = {t["params"]["outer_lr"]: t["score"] for t in entry["trials"]}
    assert scores[1.9] < scores[1.0] < scores[0.3]

    assert main([*argv, "--confirm-only", "--confirm-seeds", "2"]) == 0
    entry = load_settings(settings)["settings"]["fragile_toy/quick/curved_descent"]
    done = entry["confirmation"]
    assert entry["params"] == {"outer_lr": 1.0} and entry["score"] == scores[1.0]
    assert done["seeds"] == [1001, 1002] and done["passed"]
    assert [(c["params"]["outer_lr"], c["status"]) for c in done["checked"]] == [
        (1.9, "diverged"), (1.0, "ok")]
    assert done["checked"][1]["score"] == pytest.approx(1.0)  # oscillates: F = ½ · 2 · 1
    out = capsys.readouterr().out
    assert "(was {'outer_lr': 1.9})" in out and "after 1 better-scored trial(s)" in out
    # resumable: confirmed on the same seeds, nothing runs again
    assert main([*argv, "--confirm-only", "--confirm-seeds", "2"]) == 0
    assert "fragile_toy/quick/curved_descent" not in capsys.readouterr().out
    # the default search confirms its winner in the same command
    settings.unlink()
    assert main(argv) == 0
    entry = load_settings(settings)["settings"]["fragile_toy/quick/curved_descent"]
    assert entry["params"] == {"outer_lr": 1.0}
    assert entry["confirmation"]["seeds"] == [1001, 1002, 1003]
    # the page says which setting is not the search's best, and why
    res = tmp_path / "run"
    assert main(["run", "--plugins", PLUGINS, "-p", "fragile_toy", "-a", "curved_descent",
                 "--settings", str(settings), "--results", str(res), "--in-process",
                 "--no-progress"]) == 0
    write_leaderboard(Registry([PLUGINS]), ResultsStore(res), tmp_path / "lb", figures=False,
                      site=False, settings=load_settings(settings))
    page = " ".join((tmp_path / "lb" / "fragile_toy-quick.md").read_text().split())
    assert "1 of these settings was also confirmed `ok` on seeds 1001, 1002, 1003" in page
    assert ("- `curved_descent[outer_lr=1.0]`: the best trial, `outer_lr=1.9`, was "
            "`diverged` there") in page
    # without the settings file (or with another setting in it) the page says nothing of it
    write_leaderboard(Registry([PLUGINS]), ResultsStore(res), tmp_path / "lb2", figures=False,
                      site=False)
    assert "confirmed" not in (tmp_path / "lb2" / "fragile_toy-quick.md").read_text()


def test_confirmation_keeps_the_search_winner_when_no_trial_passes(tmp_path):
    settings = tmp_path / "tuned.json"
    assert main(["tune", "--plugins", PLUGINS, "-p", "fragile_toy", "-a",
                 "curved_descent[outer_lr=[1.9,1.5]]", "--settings", str(settings),
                 "--results", str(tmp_path / "res"), "--in-process"]) == 0
    entry = load_settings(settings)["settings"]["fragile_toy/quick/curved_descent"]
    assert entry["params"] == {"outer_lr": 1.9} and not entry["confirmation"]["passed"]
    assert {c["status"] for c in entry["confirmation"]["checked"]} == {"diverged"}


def test_confirm_seeds_must_be_positive_with_confirm_only(tmp_path, capsys):
    assert main(["tune", "--confirm-only", "--confirm-seeds", "0", "--settings",
                 str(tmp_path / "t.json")]) == 2
    assert "--confirm-seeds must be >= 1, got 0" in capsys.readouterr().err


def test_pairs_refused_at_run_time_are_skipped_not_failed(tmp_path, capsys):
    """A pair whose every trial is not_applicable (e.g. exact over its dense-Hessian size
    limit on sparse_ho) has nothing to tune: no entry, exit 0, the reason on stderr."""
    settings = tmp_path / "tuned.json"
    assert main(["tune", "--plugins", PLUGINS, "-p", "tuning_toy", "-a", "refused_descent",
                 "--settings", str(settings), "--results", str(tmp_path / "res"),
                 "--in-process"]) == 0
    assert load_settings(settings)["settings"] == {}
    assert "skipped tuning_toy/quick/refused_descent: refused_descent: this instance is too " \
           "large" in capsys.readouterr().err
    # such an entry written by an older blobench is pruned by the next tune
    data = load_settings(settings)
    data["settings"]["tuning_toy/quick/refused_descent"] = {
        "problem": "tuning_toy", "algorithm": "refused_descent", "fixed": {},
        "problem_params": {}, "params": None,
        "trials": [{"params": {}, "status": "not_applicable", "message": "too large"}]}
    save_settings(data, settings)
    assert main(["tune", "--plugins", PLUGINS, "-p", "tuning_toy", "-a", "toy_descent",
                 "--settings", str(settings), "--results", str(tmp_path / "res"),
                 "--in-process", "--confirm-seeds", "0"]) == 0
    assert list(load_settings(settings)["settings"]) == ["tuning_toy/quick/toy_descent"]
    assert "removed tuning_toy/quick/refused_descent: the pair no longer runs (too large)" \
        in capsys.readouterr().err
