"""The command line as a user drives it: run, rerun, resume, leaderboard, results, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blobench.cli import main
from blobench.contracts.errors import UserError
from blobench.execution.store import ResultsStore

RUN = ["run", "-p", "ridge_ho", "-a", "implicit_cg[cg_steps=[5,20]]", "-a", "unrolled",
       "--seeds", "2", "--steps", "3", "--no-progress"]


def test_run_rerun_force_leaderboard_results(tmp_path, capsys):
    res, out = str(tmp_path / "res"), tmp_path / "lb"
    assert main([*RUN, "--results", res]) == 0
    assert "6 cell(s) run, 0 cached (skipped), 6 ok" in capsys.readouterr().out
    assert len(list(Path(res).glob("*.json"))) == 6
    assert main([*RUN, "--results", res]) == 0
    assert "nothing to do: all 6 cell(s)" in capsys.readouterr().out
    assert main([*RUN, "--results", res, "--force"]) == 0
    assert "6 cell(s) run" in capsys.readouterr().out
    assert main(["leaderboard", "--results", res, "--out", str(out), "--all-versions"]) == 0
    page = (out / "ridge_ho-quick.md").read_text()
    for label in ("`implicit_cg[cg_steps=20]`", "`implicit_cg[cg_steps=5]`", "`unrolled`"):
        assert label in page
    assert "ridge_ho" in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["results", "--results", res, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and "problem,size,algorithm,label,seed" in lines[0]
    assert main(["results", "--results", res, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in rows} == {"ok"} and all("test_mse" in r for r in rows)


@pytest.mark.parametrize("argv, words", [
    (["run", "-p", "ridge"], "unknown problem 'ridge' (did you mean 'ridge_ho'?)"),
    (["run", "-a", "implicit"], "unknown algorithm 'implicit'"),
    (["run", "-a", "implicit_cg[cg_steps=-1]"], "cg_steps=-1 must be >= 1"),
    (["run", "-a", "implicit_cg[cg_steps=[1,2]"], "unbalanced '['"),
    (["run", "-p", "ridge_ho", "--size", "huge"], "no size 'huge'"),
    (["run", "--results", "/proc/nope"], "cannot be created"),
    (["run", "--plugins", "/nonexistent/dir"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_seeds_below_one_are_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--seeds", "0"])
    assert exc.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_broken_plugin_is_named_and_the_rest_load(tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("import nonexistent_module_xyz\n")
    (plugins / "mine.py").write_text(
        "from blobench.bases.algorithm import ImplicitDoubleLoop\n"
        "class Identity(ImplicitDoubleLoop):\n"
        "    name = 'identity_test'\n"
        "    def solve(self, problem, ops, b, previous):\n"
        "        return b\n")
    assert main(["list", "algorithms", "--plugins", str(plugins)]) == 0
    captured = capsys.readouterr()
    assert "identity_test" in captured.out and "implicit_cg" in captured.out
    assert "broken.py" in captured.err and "nonexistent_module_xyz" in captured.err


def test_corrupt_record_is_reported_and_rerun(tmp_path, capsys):
    res = tmp_path / "res"
    argv = ["run", "-p", "ridge_ho", "-a", "unrolled", "--seeds", "2", "--steps", "2",
            "--no-progress", "--results", str(res)]
    assert main(argv) == 0
    victim = sorted(res.glob("*.json"))[0]
    victim.write_text(victim.read_text()[:50])  # a torn write
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "1 cell(s) run, 1 cached" in captured.out
    assert "corrupt record" in captured.err and victim.name in captured.err
    json.loads(victim.read_text())


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "blobench", *args]


def test_kill_9_midway_then_rerun_finishes_each_cell_once(tmp_path):
    res = tmp_path / "res"
    # one cell at a time, 12 of them: after the first record the kill comes before the others
    # can all finish, however slowly this process polls on a loaded machine (with 6 cells on
    # 2 jobs, a poll delayed by the load could see all of them done: issue 24)
    n = 12
    argv = ["run", "-p", "ridge_ho", "-a", "exact[inner_steps=400]", "--seeds", str(n),
            "--steps", "40", "--n-jobs", "1", "--no-progress", "--results", str(res)]
    proc = subprocess.Popen(_cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    def complete() -> int:  # the store's own reader: never a write in progress (.tmp-*)
        return len(list(ResultsStore(res).records())) if res.is_dir() else 0

    deadline = time.time() + 600  # a loaded machine: the fork server alone may take minutes
    while time.time() < deadline and not complete():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = complete()
    assert 1 <= done_before < n
    # the rerun also removes the temporary file of a write the kill cut
    # (blobench/execution/store.py)
    out = subprocess.run(_cli(*argv), capture_output=True, text=True, check=True,
                         timeout=900).stdout
    assert f"{n - done_before} cell(s) run, {done_before} cached" in out
    records = [json.loads(p.read_text()) for p in res.glob("*.json")]
    assert sorted(r["config"]["seed"] for r in records) == list(range(n))
    assert not list(res.glob(".tmp-*"))


def test_python_dash_m_and_traceback_free_error():
    out = subprocess.run(_cli("run", "-a", "nope"), capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("blobench: error: unknown algorithm 'nope'")
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------ conventions (issue 15)
HEAVY = ("torch", "pandas", "matplotlib", "seaborn", "scipy", "sklearn")


def test_cli_module_imports_nothing_heavy():
    code = ("import sys, blobench.cli, blobench.workflows.api, blobench\n"
            "from blobench.cli import build_parser\n"
            "build_parser(['run']).parse_args(['run', '-p', 'ridge_ho'])\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    # the plugin API stays importable from the package (lazily)
    code = "from blobench import Problem, Algorithm, ImplicitDoubleLoop, Param; print(Param)"
    assert "Param" in subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True).stdout


def test_version_and_global_flags_after_the_subcommand(capsys):
    from blobench import __version__
    from blobench.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"blobench {__version__}"
    for argv in (["--debug", "-q", "run"], ["run", "--debug", "-q"]):
        args = build_parser(argv).parse_args(argv)
        assert args.debug is True and args.quiet == 1
    args = build_parser(["results"]).parse_args(["-v", "results", "-v"])
    assert args.verbose == 1  # the subcommand's own flag wins over the one before it
    assert build_parser(["check"]).parse_args(["check", "x", "-p", "a"]).problem == ["a"]


def test_non_tty_progress_is_one_line_per_cell_and_tqdm_disable(tmp_path, capsys, monkeypatch):
    argv = ["run", "-p", "ridge_ho", "-a", "unrolled", "--seeds", "2", "--steps", "2",
            "--in-process", "--results", str(tmp_path / "res")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and all("ridge_ho × unrolled" in x and ": ok" in x for x in lines)
    assert "ETA" in lines[0] and "[2/2]" in lines[1]
    assert "tuned settings:" in err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main([*argv, "--force"]) == 0
    assert not [x for x in capsys.readouterr().err.splitlines() if x.startswith("[")]
    monkeypatch.delenv("TQDM_DISABLE")
    assert main([*argv, "--force", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_config_file_round_trip_and_provenance(tmp_path, capsys):
    res, conf = tmp_path / "res", tmp_path / "run.toml"
    argv = ["run", "-p", "ridge_ho", "-a", "unrolled", "--steps", "2", "--in-process",
            "--no-tuned", "--results", str(res)]
    assert main([*argv, "--save-config", str(conf), "--dry-run"]) == 0
    assert "1 cell(s) planned" in capsys.readouterr().out and not res.exists()
    text = conf.read_text()
    assert 'problems = ["ridge_ho"]' in text and "steps = 2" in text and "tuned = false" in text
    assert main(["run", "--config", str(conf), "--seeds", "2", "-q"]) == 0  # CLI overrides
    assert "2 cell(s) run" in capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in res.glob("*.json")]
    assert len(records) == 2
    for record in records:
        assert record["run"]["config_file"] == str(conf.resolve())
        assert record["run"]["spec"]["seeds"] == 2 and record["run"]["spec"]["steps"] == 2
        assert record["cell_seconds"] > 0
    conf.write_text("[run]\nproblem = 'ridge_ho'\nsteeps = 3\n")
    assert main(["run", "--config", str(conf)]) == 2
    assert "unknown key in" in capsys.readouterr().err


def test_tuned_settings_found_from_any_directory(tmp_path, monkeypatch, capsys):
    from blobench.workflows.api import DEFAULT_SETTINGS

    monkeypatch.chdir(tmp_path)
    argv = ["run", "-p", "ridge_ho", "-a", "soba", "--dry-run"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    if DEFAULT_SETTINGS.exists():
        assert f"tuned settings: {DEFAULT_SETTINGS}" in err and "applied to 1 of 1" in err
    assert main([*argv, "--settings", "missing.json"]) == 2
    assert "'missing.json' does not exist" in capsys.readouterr().err
    assert main([*argv, "--no-tuned"]) == 0
    assert "not used (--no-tuned)" in capsys.readouterr().err


def test_strict_counts_cached_failures(tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom.py").write_text(
        "from blobench.bases.algorithm import ImplicitDoubleLoop\n"
        "class Boom(ImplicitDoubleLoop):\n"
        "    name = 'boom_test'\n"
        "    def solve(self, problem, ops, b, previous):\n"
        "        raise RuntimeError('boom')\n")
    argv = ["run", "-p", "ridge_ho", "-a", "boom_test", "--steps", "2", "--in-process", "-q",
            "--plugins", str(plugins), "--results", str(tmp_path / "res")]
    assert main([*argv, "--strict"]) == 1
    assert main(argv) == 0  # cached, not strict
    assert main([*argv, "--strict"]) == 1  # cached failure still counts
    out = capsys.readouterr().out
    assert "1 cached cell(s) failed in an earlier run" in out and "error (cached)" in out


def test_compare_unknown_label_is_an_error(tmp_path, capsys):
    res = tmp_path / "res"
    assert main(["run", "-p", "ridge_ho", "-a", "unrolled", "--steps", "2", "--in-process",
                 "-q", "--no-tuned", "--results", str(res)]) == 0
    code = main(["leaderboard", "--results", str(res), "--out", str(tmp_path / "lb"),
                 "--compare", "unrolled", "unroled"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown algorithm label" in err and "'unroled'" in err and "unrolled" in err


def test_python_api_runs_and_loads(tmp_path):
    import blobench

    res = str(tmp_path / "res")
    frame = blobench.run(problems="ridge_ho", algorithms=["unrolled", "implicit_cg"], seeds=2,
                         steps=2, in_process=True, results=res, tuned=False)
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    assert set(frame["label"]) == {"unrolled", "implicit_cg"}
    loaded = blobench.load_results(res)
    assert sorted(loaded["key"]) == sorted(frame["key"])
    with pytest.raises(blobench.UserError, match="does not exist"):
        blobench.load_results(tmp_path / "nope")


def test_run_summary_replays_the_eta(tmp_path):
    """blobench bench --run-results: cells, wall, efficiency and the ETA error of a run."""
    from blobench.workflows.speed import summarize_run

    res = tmp_path / "res"
    assert main(["run", "-p", "ridge_ho", "-p", "quadratic", "-a", "unrolled", "-a",
                 "implicit_cg", "--seeds", "2", "--steps", "3", "--in-process", "-q",
                 "--no-tuned", "--results", str(res)]) == 0
    summary = summarize_run(res)
    assert summary["cells"] == 8 and summary["n_jobs"] == 1 and summary["seeds"] == 2
    assert 0 < summary["solver_s"] <= summary["wall_s"] and 0 < summary["efficiency"] <= 1
    assert set(summary["eta_errors"]) == {"10%", "25%", "50%", "75%"}
    assert all(e is None or e >= 0 for e in summary["eta_errors"].values())


def test_list_is_served_from_its_cache_without_torch(tmp_path):
    code = ("import argparse, json, sys\n"
            "from blobench.cli import _listing_key, main\n"
            "args = argparse.Namespace(what='algorithms', plugins=[])\n"
            f"cache = {str(tmp_path)!r} + '/blobench/list-' + _listing_key(args) + '.json'\n"
            "import os; os.makedirs(os.path.dirname(cache), exist_ok=True)\n"
            "open(cache, 'w').write(json.dumps(['CACHED LISTING\\n', []]))\n"
            "main(['list', 'algorithms'])\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out == "CACHED LISTING\nNO-TORCH\n"


def test_list_cache_key_follows_the_source_files(tmp_path):
    import argparse

    from blobench.cli import _listing_key

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    args = argparse.Namespace(what=None, plugins=[str(plugins)])
    before = _listing_key(args)
    assert _listing_key(argparse.Namespace(what="problems", plugins=[str(plugins)])) != before
    (plugins / "mine.py").write_text("x = 1\n")
    assert _listing_key(args) != before


def test_suites_choose_problems_and_seeds_unless_given():
    from blobench.cli import build_parser, run_spec
    from blobench.execution.registry import get_registry
    from blobench.workflows.api import SUITES, RunSpec

    registered = get_registry().problems
    quick = RunSpec()
    assert quick.suite == "quick" and quick.seed_list == [0]
    assert quick.problem_list(registered) == [p for p in SUITES["quick"].problems
                                              if p in registered]
    standard = RunSpec(suite="standard")
    assert standard.seed_list == [0, 1, 2]
    assert standard.problem_list(registered) == sorted(registered)
    spec = run_spec(build_parser(["run"]).parse_args(
        ["run", "--suite", "standard", "--seeds", "1", "-p", "ridge_ho"]))
    assert spec.seed_list == [0] and spec.problem_list(registered) == ["ridge_ho"]
    with pytest.raises(UserError, match="unknown suite 'nope'"):
        RunSpec(suite="nope").the_suite()
