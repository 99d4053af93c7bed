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
        "from blobench.algorithm import ImplicitDoubleLoop\n"
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
    argv = ["run", "-p", "ridge_ho", "-a", "exact[inner_steps=400]", "--seeds", "6",
            "--steps", "40", "--no-progress", "--results", str(res)]
    proc = subprocess.Popen(_cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    def records() -> list[Path]:  # not the temporary file of a write in progress
        return [p for p in res.glob("*.json") if not p.name.startswith(".tmp-")]

    deadline = time.time() + 120
    while time.time() < deadline and not records():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for orphan in res.glob(".tmp-*"):  # a write cut by the kill: never read as a record
        orphan.unlink()
    done_before = len(records())
    assert 1 <= done_before < 6
    out = subprocess.run(_cli(*argv), capture_output=True, text=True, check=True).stdout
    assert f"{6 - done_before} cell(s) run, {done_before} cached" in out
    records = [json.loads(p.read_text()) for p in res.glob("*.json")]
    assert sorted(r["config"]["seed"] for r in records) == list(range(6))
    assert not list(res.glob(".tmp-*"))


def test_python_dash_m_and_traceback_free_error():
    out = subprocess.run(_cli("run", "-a", "nope"), capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("blobench: error: unknown algorithm 'nope'")
    assert "Traceback" not in out.stderr
