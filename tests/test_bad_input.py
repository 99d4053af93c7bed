"""Bad input, as an adversarial user gives it (issue 18): crafted records, junk files in a
store, bad options of every subcommand. Each is one line on stderr, exit code 2, no
traceback, nothing written outside the output folder, and a populated store left unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blobench.contracts.errors import UserError
from blobench.execution.harness import plan
from blobench.execution.runner import run_cells
from blobench.execution.store import CHECKSUM, ResultsStore, _canonical
from blobench.execution.validate import page_stem, path_inside, record_problem
from blobench.reporting.leaderboard import write_leaderboard
from blobench.reporting.results import results_frame

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def populated(registry, tmp_path_factory) -> Path:
    """A store with two real records (ridge_ho × unrolled, seeds 0-1, 2 steps)."""
    root = tmp_path_factory.mktemp("populated") / "res"
    cells, _ = plan(registry, ["ridge_ho"], ["unrolled"], [0, 1], steps=2)
    run_cells(registry, cells, ResultsStore(root), isolate=False, progress=False)
    assert len(list(root.glob("*.json"))) == 2
    return root


@pytest.fixture()
def store_copy(populated, tmp_path) -> Path:
    """A copy of the populated store, free to spoil."""
    return Path(shutil.copytree(populated, tmp_path / "res"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def forge(store: Path, name: str, **changes: object) -> Path:
    """A copy of a real record with ``changes`` (dotted keys reach into ``config``), its
    checksum recomputed as a forger would: the checksum alone proves nothing."""
    record = json.loads(sorted(store.glob("*.json"))[0].read_text())
    record.pop(CHECKSUM)
    for key, value in changes.items():
        table = record
        *parents, last = key.split(".")
        for parent in parents:
            table = table[parent]
        if value is _DROP:
            del table[last]
        else:
            table[last] = value
    record[CHECKSUM] = hashlib.sha256(_canonical(record)).hexdigest()
    path = store / name
    path.write_text(json.dumps(record))
    return path


_DROP = object()
KEY = "ab" * 12


# ------------------------------------------------------------------ item 1: traversal
@pytest.mark.parametrize("problem", ["../../x", "/tmp/blobench_abs_x", "a/b", "..", "X"])
def test_crafted_problem_name_writes_nothing_outside_out(registry, store_copy, tmp_path,
                                                         problem):
    forge(store_copy, f"{KEY}.json", key=KEY, config_id="c" * 16, **{"config.problem": problem})
    out = tmp_path / "deep" / "er" / "lb"
    before = snapshot(tmp_path)
    store = ResultsStore(store_copy)
    write_leaderboard(registry, store, out, figures=False, all_versions=True)
    after = snapshot(tmp_path)
    new = {f for f in after if f not in before}
    assert new and all(f.startswith("deep/er/lb/") for f in new), new
    assert not Path(problem + "-quick.md").exists()
    assert not (tmp_path / "x-quick.md").exists() and not (tmp_path / "deep/x-quick.md").exists()
    assert [Path(p).name for p, _ in store.corrupt] == [f"{KEY}.json"]
    assert "config.problem" in store.corrupt[0][1]


@pytest.mark.parametrize("names", [("../../x", "quick"), ("/abs", "quick"), ("ok", "../q"),
                                   ("Ridge", "quick"), ("a b", "quick"), ("", "quick")])
def test_page_stem_rejects_unsafe_names(tmp_path, names):
    with pytest.raises(UserError):
        page_stem(tmp_path, *names)


def test_path_inside_rejects_a_symlink_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "evil-quick.md").symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(UserError, match="outside"):
        path_inside(tmp_path / "out", "evil-quick", ".md")
    assert page_stem(tmp_path / "out", "ridge_ho", "quick") == "ridge_ho-quick"


def test_record_schema_check_names_the_problem(populated):
    record = json.loads(sorted(populated.glob("*.json"))[0].read_text())
    assert record_problem(record) is None
    for change, words in [
        ({"status": "great"}, "unknown status"),
        ({"key": "../../x"}, "key"),
        ({"trace": [{"step": "x"}]}, "trace[0] holds a non-numeric value"),
        ({"trace": ["row"]}, "trace[0] is str"),
        ({"config": {**record["config"], "seed": "0"}}, "config.seed is str"),
        ({"steps_done": True}, "steps_done is a boolean"),
        ({"final": []}, "final is list"),
    ]:
        assert words in record_problem({**record, **change})
    assert "missing field label" in record_problem(
        {k: v for k, v in record.items() if k != "label"})
    assert "not a JSON object" in record_problem([record])


# ------------------------------------------------------ item 3: junk files in a store
def _junk_binary(store: Path) -> str:
    (store / "junk.json").write_bytes(bytes(range(256)) * 4)
    return "junk.json"


def _junk_forged(store: Path) -> str:
    forge(store, f"{KEY}.json", key=KEY, config_id="c" * 16, label=_DROP)
    return f"{KEY}.json"


def _junk_fifo(store: Path) -> str:
    os.mkfifo(store / "pipe.json")
    return "pipe.json"


def _junk_folder(store: Path) -> str:
    (store / "folder.json").mkdir()
    return "folder.json"


def _junk_key(store: Path) -> str:
    forge(store, f"{'cd' * 12}.json", key=KEY, config_id="c" * 16)  # not its own file name
    return f"{'cd' * 12}.json"


JUNK = [_junk_binary, _junk_forged, _junk_fifo, _junk_folder, _junk_key]


@pytest.mark.parametrize("junk", JUNK, ids=lambda f: f.__name__[6:])
def test_reporting_skips_junk_with_a_warning(registry, store_copy, tmp_path, junk):
    name = junk(store_copy)
    store = ResultsStore(store_copy)
    frame = results_frame(store)
    assert len(frame) == 2 and set(frame["status"]) == {"ok"}
    assert [Path(p).name for p, _ in store.corrupt] == [name]
    store = ResultsStore(store_copy)
    written = write_leaderboard(registry, store, tmp_path / "lb", figures=False,
                                all_versions=True)
    assert any(p.name == "ridge_ho-quick.md" for p in written)
    assert [Path(p).name for p, _ in store.corrupt] == [name]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blobench", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["results", "leaderboard"])
def test_reporting_commands_warn_about_each_junk_file_and_do_not_hang(store_copy, tmp_path,
                                                                      command):
    names = [junk(store_copy) for junk in JUNK]
    extra = ["--out", str(tmp_path / "lb"), "--no-figures", "--all-versions"] \
        if command == "leaderboard" else []
    out = _cli(command, "--results", str(store_copy), *extra, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    warnings = [line for line in out.stderr.splitlines() if "corrupt record" in line]
    assert sorted(Path(w.split("corrupt record ")[1].split(" (")[0]).name
                  for w in warnings) == sorted(names)


def main_in_process(argv: list[str]) -> tuple[int, str, str]:
    """``blobench.cli.main(argv)`` in this process: (exit code, stdout, stderr)."""
    from blobench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------ the table (item 10)
#: (argv, words of the one-line error). Placeholders: {store} the populated store (must stay
#: byte-identical), {file} an existing file, {dir} an existing folder, {missing} a path that
#: does not exist. Every command runs with the working directory in a scratch folder that
#: must also be unchanged afterwards.
TABLE = [
    # run
    (["run", "-p", "ridge"], "unknown problem 'ridge' (did you mean 'ridge_ho'?)"),
    (["run", "-a", "implicit"], "unknown algorithm 'implicit'"),
    (["run", "-a", "implicit_cg[cg_steps=-1]"], "cg_steps=-1 must be >= 1"),
    (["run", "-a", "implicit_cg[cg_steps=[1,2]"], "unbalanced '['"),
    (["run", "-a", "implicit_cg[nope=1]"], "nope"),
    (["run", "-p", "ridge_ho", "--size", "huge"], "no size 'huge'"),
    (["run", "--results", "/proc/nope"], "cannot be created"),
    (["run", "--results", "{file}"], "exists and is not a folder"),
    (["run", "--results", ""], "empty"),
    (["run", "--plugins", "/nonexistent/dir"], "does not exist"),
    (["run", "--seeds", "0"], "must be >= 1"),
    (["run", "--seeds", "10000000"], "at most 10000"),
    (["run", "--steps", "abc"], "expected a whole number"),
    (["run", "--n-jobs", "0"], "must be >= 1"),
    (["run", "--eval-every", "-3"], "must be >= 1"),
    (["run", "--cell-timeout", "inf"], "--cell-timeout inf s is too large"),
    (["run", "--cell-timeout", "1e12"], "--cell-timeout 1e+12 s is too large"),
    (["run", "--cell-timeout", "-1"], "must be > 0"),
    (["run", "--max-seconds", "inf"], "without --steps would never stop"),
    (["run", "--max-seconds", "nan"], "must be > 0"),
    (["run", "--backend", "slurm"], "invalid choice"),
    (["run", "--backend", "dask", "--scheduler", "not a url"], "not an address"),
    (["run", "--device", "garbage"], "'garbage' is not a device"),
    (["run", "--device", "cuda:7"], "--device cuda:7"),
    (["run", "--settings", "{dir}"], "is a folder, expected a file"),
    (["run", "--settings", "{missing}"], "does not exist"),
    (["run", "--config", "{missing}"], "missing"),
    (["run", "-p", "ridge_ho", "-a", "unrolled", "--in-process", "--n-jobs", "2"],
     "--in-process runs cells one by one"),
    # tune
    (["tune", "-p", "ridge_ho", "-a", "implicit_cg", "--only", "no_such_param"],
     "--only 'no_such_param' is not in the search space"),
    (["tune", "--settings", "{dir}"], "is a folder, expected a file"),
    (["tune", "-p", "nope"], "unknown problem 'nope'"),
    (["tune", "--seeds", "0", "-p", "ridge_ho"], "must be >= 1"),
    # new
    (["new", "algorithm", "Bad-Name"], "must be lower_snake_case"),
    (["new", "algorithm", "x_hard", "--dir", "{file}"], "exists and is not a folder"),
    (["new", "algorithm", "x_hard", "--dir", "/proc/x"], "cannot be created"),
    (["new", "widget", "x_hard"], "invalid choice"),
    (["new", "algorithm", "implicit_cg"], "already exists"),
    # check
    (["check", "nope"], "unknown algorithm 'nope'"),
    (["check"], "name an algorithm"),
    # leaderboard
    (["leaderboard", "--results", "{store}", "--out", "{file}"], "exists and is not a folder"),
    (["leaderboard", "--results", "{store}", "--out", "/proc/x"], "cannot be created"),
    (["leaderboard", "--results", "{missing}"], "does not exist"),
    (["leaderboard", "--results", "{store}", "--compare", "a_label", "b_label"], "a_label"),
    # results
    (["results", "--results", "{store}", "--out", "{missing}/x.csv"], "does not exist"),
    (["results", "--results", "{store}", "--out", "{dir}"], "is a folder, expected a file"),
    (["results", "--results", "{store}", "--out", "/proc/x.csv"], "cannot be written"),
    (["results", "--results", "{store}", "--format", "xml"], "invalid choice"),
    (["results", "--results", "{store}", "--format", "parquet"], "--out"),
    # list, top level
    (["list", "widgets"], "invalid choice"),
    (["no_such_command"], "invalid choice"),
    # bench
    (["bench", "--report", "/proc/x/REPORT"], "cannot be"),
    (["bench", "--report", "{file}/REPORT"], "exists and is not a folder"),
    (["bench", "-p", "nope"], "no benchmark case for problem 'nope'"),
    # reproduce, data
    (["reproduce", "no_such_paper"], "no_such_paper"),
    (["data", "fetch", "no_such_dataset"], "no_such_dataset"),
]


@pytest.fixture()
def scratch(populated, tmp_path, monkeypatch) -> dict[str, str]:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    (tmp_path / "a_dir").mkdir()
    return {"store": str(populated), "file": str(tmp_path / "a_file.txt"),
            "dir": str(tmp_path / "a_dir"), "missing": str(tmp_path / "missing")}


@pytest.mark.parametrize("argv, words", TABLE, ids=[" ".join(a)[:60] for a, _ in TABLE])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(populated, scratch, tmp_path,
                                                          argv, words):
    argv = [arg.format(**scratch) for arg in argv]
    if "--results" not in argv and argv[0] in ("run", "tune", "leaderboard", "results"):
        argv += ["--results", scratch["store"]]
    store_before, scratch_before = snapshot(populated), snapshot(tmp_path)
    code, _, err = main_in_process(argv)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert words in err
    assert snapshot(populated) == store_before
    assert snapshot(tmp_path) == scratch_before
    assert not Path(scratch["missing"]).exists()


def test_the_table_covers_every_subcommand_40_times():
    from blobench.cli import build_parser

    parser = build_parser(["run"])
    commands = set(parser._subparsers._group_actions[0].choices)
    assert len(TABLE) >= 40
    assert commands - {argv[0] for argv, _ in TABLE} == set()


def test_plugin_that_exits_at_import_is_named_and_the_rest_load(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exits.py").write_text("import sys\nsys.exit(4)\n")
    (plugins / "mine.py").write_text(
        "from blobench.bases.algorithm import ImplicitDoubleLoop\n"
        "class Identity(ImplicitDoubleLoop):\n"
        "    name = 'identity_hard_test'\n"
        "    def solve(self, problem, ops, b, previous):\n"
        "        return b\n")
    code, out, err = main_in_process(["list", "algorithms", "--plugins", str(plugins)])
    assert code == 0
    assert "identity_hard_test" in out and "implicit_cg" in out
    assert "exits.py" in err and "SystemExit: 4" in err
    code, out, _ = main_in_process(["run", "--help"])
    assert code == 0 and "EXECUTES the code it loads" in " ".join(out.split())


@pytest.mark.parametrize("argv", [["run", "-p", "ridge"], ["run", "--seeds", "0"],
                                  ["run", "--device", "garbage"], ["tune", "-p", "nope"]])
def test_bad_input_creates_no_results_folder(tmp_path, argv):
    results = tmp_path / "new" / "results"
    code, _, _ = main_in_process([*argv, "--results", str(results)])
    assert code == 2 and not (tmp_path / "new").exists()


def test_duplicate_grid_points_are_one_cell(registry):
    cells, _ = plan(registry, ["ridge_ho", "ridge_ho[n_train=100]"],
                    ["implicit_cg", "implicit_cg[cg_steps=[10,10,5]]", "implicit_cg"], [0, 0])
    assert registry.algorithm("implicit_cg")().config["cg_steps"] == 10  # the default
    assert registry.problem("ridge_ho").sizes["quick"].get("n_train", 100) == 100
    assert sorted(c.label for c in cells) == ["implicit_cg", "implicit_cg[cg_steps=5]"]
