"""Run hand-written mutants against the test suite (and ``blobench check``); see README.md.

Each mutant replaces one exact snippet of one source file. It is applied to a temporary copy
of the repository (``git archive HEAD`` or the working tree's tracked files), the mutant's test
selection runs there with ``PYTHONPATH`` pointing at the copy (so ``blobench``, ``algorithms/``
and ``problems/`` are the copy's), and the mutant is *killed* when the tests fail (or time
out). Results go to ``results/<family>.json``; :mod:`report` turns every results file into
``REPORT.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MUTANTS = HERE / "mutants"
RESULTS = HERE / "results"
FAMILIES = ("explicit", "implicit", "approximation", "meta-learning", "primitives",
            "penalty/value-function", "stochastic")
KILLED, SURVIVED, TIMEOUT, ERROR = "killed", "survived", "timeout", "error"


def family_key(name: str) -> str:
    """File-name form of a family: 'penalty/value-function' → 'penalty_value_function'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    description: str
    family: str
    tests: list[str]
    check: str | None = None
    check_args: list[str] = field(default_factory=list)
    occurrence: int | None = None
    equivalent: str | None = None
    source: str | None = None

    def apply(self, text: str) -> str:
        """``text`` with the chosen occurrence of ``original`` replaced (ValueError if the
        snippet is missing, or ambiguous without ``occurrence``)."""
        count = text.count(self.original)
        if count == 0:
            raise ValueError(f"{self.id}: original snippet not found in {self.file}")
        if self.occurrence is None and count > 1:
            raise ValueError(f"{self.id}: original occurs {count}× in {self.file}; "
                             "give `occurrence`")
        n = self.occurrence or 1
        if n > count:
            raise ValueError(f"{self.id}: occurrence {n} > {count} in {self.file}")
        start = -1
        for _ in range(n):
            start = text.index(self.original, start + 1)
        return text[:start] + self.replacement + text[start + len(self.original):]


def load(path: Path) -> tuple[str, list[str], list[Mutant]]:
    """(family, default tests, mutants) of one list file."""
    data = tomllib.loads(path.read_text())
    family = data.get("family")
    if family_key(family or "") != path.stem:
        raise ValueError(f"{path.name}: family {family!r} does not match the file name")
    tests = list(data.get("tests", []))
    check_args = list(data.get("check_args", []))
    mutants, seen = [], set()
    for raw in data.get("mutant", []):
        missing = {"id", "file", "original", "replacement", "description"} - set(raw)
        if missing:
            raise ValueError(f"{path.name}: mutant {raw.get('id', '?')} lacks {sorted(missing)}")
        if raw["id"] in seen:
            raise ValueError(f"{path.name}: duplicate mutant id {raw['id']!r}")
        seen.add(raw["id"])
        known = {f for f in Mutant.__dataclass_fields__ if f not in ("family", "tests")}
        extra = set(raw) - known - {"tests"}
        if extra:
            raise ValueError(f"{path.name}: mutant {raw['id']}: unknown keys {sorted(extra)}")
        fields = {"check_args": check_args, **{k: v for k, v in raw.items() if k != "tests"}}
        mutants.append(Mutant(family=family, tests=list(raw.get("tests", tests)), **fields))
    return family, tests, mutants


def load_all(families: list[str] | None = None) -> dict[str, list[Mutant]]:
    out = {}
    for path in sorted(MUTANTS.glob("*.toml")):
        family, _, mutants = load(path)
        if families and family_key(family) not in {family_key(f) for f in families}:
            continue
        out[family] = mutants
    if families:
        unknown = {family_key(f) for f in families} - {family_key(f) for f in out}
        if unknown:
            valid = ", ".join(p.stem for p in sorted(MUTANTS.glob("*.toml")))
            raise SystemExit(f"unknown family {', '.join(sorted(unknown))}; valid: {valid}")
    return out


def validate(families: dict[str, list[Mutant]], root: Path = ROOT) -> list[str]:
    """Problems with the lists: snippets missing or ambiguous, replacements that do not
    compile, no-op replacements."""
    problems = []
    for mutants in families.values():
        for m in mutants:
            try:
                new = m.apply((root / m.file).read_text())
                if m.original == m.replacement:
                    problems.append(f"{m.id}: replacement equals original")
                compile(new, m.file, "exec")
            except (OSError, ValueError, SyntaxError) as exc:
                problems.append(f"{m.family}/{m.id}: {exc}")
    return problems


# ------------------------------------------------------------------- copies
def make_copy(dest: Path, source: str) -> str:
    """Fill ``dest`` with the repository (``head``: the committed tree; ``worktree``: tracked
    files as they are now, plus untracked tests); returns a description of what was copied."""
    if source == "head":
        commit = _git("rev-parse", "--short", "HEAD").strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return f"HEAD {commit}"
    files = _git("ls-files", "-z").split("\0")
    files += _git("ls-files", "-z", "--others", "--exclude-standard", "tests").split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return f"working tree at HEAD {_git('rev-parse', '--short', 'HEAD').strip()}"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)  # before site-packages and the editable finder
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def assert_isolated(copy: Path) -> None:
    """The copy's ``blobench`` is the one imported there (not /work/main's editable install)."""
    out = subprocess.run([sys.executable, "-c", "import blobench; print(blobench.__file__)"],
                         cwd=copy, env=_env(copy), capture_output=True, text=True, check=True)
    if not Path(out.stdout.strip()).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"isolation broken: blobench imported from {out.stdout.strip()}")


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, list[str], float]:
    """(status, failing test ids, seconds) of the selection in ``copy``."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "-p", "no:randomly", "-m", "not slow", *tests]
    return _run(cmd, copy, timeout, r"^(?:FAILED|ERROR) (\S+)")


def run_check(copy: Path, entry: str, args: list[str], timeout: float
              ) -> tuple[str, list[str], float]:
    cmd = [sys.executable, "-m", "blobench", "check", entry, *args]
    return _run(cmd, copy, timeout, r"^\s*(FAIL.*)$")


def _run(cmd: list[str], copy: Path, timeout: float, pattern: str
         ) -> tuple[str, list[str], float]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return TIMEOUT, [], time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    failed = re.findall(pattern, text, flags=re.M)[:5]
    if proc.returncode == 0:
        return SURVIVED, [], seconds
    if proc.returncode in (1, 2):  # tests failed / collection error (mutated code broke)
        last = text.strip().splitlines()[-1][:200] if text.strip() else ""
        return KILLED, failed or [last], seconds
    return ERROR, [f"exit {proc.returncode}: {text.strip()[-300:]}"], seconds


# ---------------------------------------------------------------- the run
@dataclass
class Outcome:
    id: str
    file: str
    description: str
    tests: str
    tests_detail: list[str]
    seconds: float
    check: str | None = None
    check_detail: list[str] = field(default_factory=list)
    equivalent: str | None = None


def run_mutant(m: Mutant, copy: Path, timeout: float, with_check: bool,
               tests: bool = True) -> Outcome:
    target = copy / m.file
    pristine = target.read_text()
    target.write_text(m.apply(pristine))
    try:
        status, detail, seconds = (run_tests(copy, m.tests, timeout) if tests
                                   else ("not run", [], 0.0))
        out = Outcome(m.id, m.file, m.description, status, detail, round(seconds, 1),
                      equivalent=m.equivalent)
        if with_check and m.check:
            out.check, out.check_detail, _ = run_check(copy, m.check, m.check_args, timeout)
        return out
    finally:
        target.write_text(pristine)


def run_family(family: str, mutants: list[Mutant], args: argparse.Namespace) -> dict:
    jobs = max(1, args.jobs)
    with tempfile.TemporaryDirectory(prefix="blobench-mut-") as tmp:
        copies = [Path(tmp) / f"copy{i}" for i in range(jobs)]
        for c in copies:
            c.mkdir()
            described = make_copy(c, args.source)
        assert_isolated(copies[0])
        # baseline: every distinct selection (and check) must pass unmutated
        for tests in sorted({tuple(m.tests) for m in mutants} if not args.check_only else []):
            status, detail, seconds = run_tests(copies[0], list(tests), args.timeout)
            print(f"[{family}] baseline {' '.join(tests)}: {status} ({seconds:.0f} s)",
                  flush=True)
            if status != SURVIVED:
                raise SystemExit(f"[{family}] the unmutated selection does not pass "
                                 f"({status}: {detail}); fix that first")
        checks_ok = set()
        if args.check:
            for entry, cargs in sorted({(m.check, tuple(m.check_args)) for m in mutants
                                        if m.check}):
                status, detail, _ = run_check(copies[0], entry, list(cargs), args.timeout)
                print(f"[{family}] baseline check {entry}: {status}", flush=True)
                if status == SURVIVED:
                    checks_ok.add((entry, cargs))
        free = list(copies)

        def work(m: Mutant) -> Outcome:
            copy = free.pop()
            try:
                check = args.check and (m.check, tuple(m.check_args)) in checks_ok
                out = run_mutant(m, copy, args.timeout, check, tests=not args.check_only)
            finally:
                free.append(copy)
            print(f"[{family}] {m.id}: tests {out.tests} ({out.seconds:.0f} s)"
                  + (f", check {out.check}" if out.check else ""), flush=True)
            return out

        with ThreadPoolExecutor(jobs) as pool:
            outcomes = list(pool.map(work, mutants))
    return {"family": family, "source": described, "when": time.strftime("%Y-%m-%d %H:%M"),
            "command": "python tools/mutation/mutate.py " + " ".join(args.argv),
            "mutants": [asdict(o) for o in outcomes]}


def merge(old: dict | None, new: dict, ids: set[str], valid: set[str],
          check_only: bool = False) -> dict:
    """Results of a partial run (``-m``) merged into the family's previous results; a
    ``--check-only`` run only replaces the check columns."""
    if check_only and old is not None:
        fresh = {o["id"]: o for o in new["mutants"]}
        for o in old["mutants"]:
            if o["id"] in fresh:
                o["check"], o["check_detail"] = fresh[o["id"]]["check"], fresh[o["id"]][
                    "check_detail"]
        old["check_command"] = new["command"]
        return old
    if old is None or not ids:
        return new
    kept = [o for o in old["mutants"] if o["id"] not in ids and o["id"] in valid]
    new["mutants"] = kept + new["mutants"]
    order = {i: n for n, i in enumerate(sorted(valid))}
    new["mutants"].sort(key=lambda o: order.get(o["id"], 0))
    return new


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-f", "--family", action="append", help="family (file stem); repeatable")
    p.add_argument("-m", "--mutant", action="append", default=[], help="mutant id; repeatable")
    p.add_argument("--check", action="store_true", help="also run `blobench check ENTRY`")
    p.add_argument("--check-only", action="store_true",
                   help="only `blobench check` (merged into the family's earlier test results)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per test run")
    p.add_argument("--source", choices=("head", "worktree"), default="head")
    p.add_argument("--list", action="store_true")
    p.add_argument("--validate", action="store_true")
    p.add_argument("--report", action="store_true", help="only rewrite REPORT.md")
    args = p.parse_args(argv)
    args.argv = argv
    args.check = args.check or args.check_only
    from report import write_report

    if args.report:
        print(f"wrote {write_report()}")
        return 0
    families = load_all(args.family)
    if args.list:
        for fam, ms in families.items():
            print(f"{fam:<24} {len(ms):>3} mutants  ({family_key(fam)}.toml)")
        return 0
    problems = validate(families)
    if args.validate or problems:
        print("\n".join(problems) or "all mutants apply and compile")
        return 1 if problems else 0
    RESULTS.mkdir(exist_ok=True)
    for fam, mutants in families.items():
        chosen = [m for m in mutants if not args.mutant or m.id in args.mutant]
        if not chosen:
            continue
        result = run_family(fam, chosen, args)
        path = RESULTS / f"{family_key(fam)}.json"
        old = json.loads(path.read_text()) if path.exists() else None
        result = merge(old, result, set(args.mutant), {m.id for m in mutants}, args.check_only)
        path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {write_report()}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
