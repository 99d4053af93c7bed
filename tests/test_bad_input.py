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

from blobench.errors import UserError
from blobench.harness import plan
from blobench.leaderboard import write_leaderboard
from blobench.results import results_frame
from blobench.runner import run_cells
from blobench.store import CHECKSUM, ResultsStore, _canonical
from blobench.validate import page_stem, path_inside, record_problem

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


def main_in_process(argv: list[str]) -> tuple[int, str]:
    """``blobench.cli.main(argv)`` in this process: (exit code, stderr)."""
    from blobench.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, err.getvalue()
