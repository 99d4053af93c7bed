"""Checks on untrusted input: names that become paths, records read from a store, options.

Everything here turns bad input into a :class:`~blobench.contracts.errors.UserError` (one line, exit
code 2) or, for a record, into the reason it is rejected — before the input is used.

- **Names that become paths** (problem and size names in leaderboard file names, record keys
  in the store): allow-list ``[a-z0-9_]`` (``-`` too for a stem joining two names), then the
  resolved path is checked to lie inside its folder. A record is data anyone can forge — its
  checksum is a plain SHA-256 — so nothing in it is trusted to be a safe file name.
- **Records**: :func:`record_problem` checks the fields and types every reader relies on
  (it does not define the schema: :mod:`blobench.execution.harness` does, and the store may add a
  schema version); a record failing it is reported as corrupt, never used.
- **Options**: numbers that must be finite and bounded, output files and folders that must be
  writable, a device torch knows.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blobench.contracts.errors import UserError

NAME = re.compile(r"[a-z0-9_]+")
#: a page stem: names joined by "-" (e.g. ``<problem>-<size>``)
STEM = re.compile(r"[a-z0-9_]+(-[a-z0-9_]+)*")
KEY = re.compile(r"[0-9a-f]{8,64}")
STATUSES = ("ok", "error", "diverged", "timeout", "crashed", "not_applicable")
#: the longest wait we accept (--cell-timeout): poll() and alarm() take it, and no cell of a
#: benchmark should run for more than a week
MAX_SECONDS = 7 * 24 * 3600.0


def safe_name(kind: str, text: object) -> str:
    """``text`` if it is a safe path component (``[a-z0-9_]+``), else a :class:`UserError`."""
    if not isinstance(text, str) or not NAME.fullmatch(text):
        raise UserError(f"{kind} {text!r} is not a safe name (only a-z, 0-9 and _)")
    return text


def path_inside(root: Path | str, stem: str, suffix: str = "") -> Path:
    """``root/stem+suffix`` after checking that ``stem`` is a safe stem and that the resolved
    path stays inside ``root`` (no ``..``, no absolute name, no symlink out)."""
    if not isinstance(stem, str) or not STEM.fullmatch(stem):
        raise UserError(f"file name {stem!r} is not safe (only a-z, 0-9, _ and -)")
    root = Path(root)
    path = root / f"{stem}{suffix}"
    base = root.resolve()
    if base not in path.resolve().parents:
        raise UserError(f"{str(path)!r} would be written outside {str(root)!r}")
    return path


def page_stem(out: Path | str, *names: object) -> str:
    """The file stem ``name1-name2...`` for pages written in ``out`` (each name checked by
    :func:`safe_name`, the result by :func:`path_inside`); its suffixed files stay in ``out``."""
    stem = "-".join(safe_name("name", n) for n in names)
    path_inside(out, stem)
    return stem


# -------------------------------------------------------------------------- records
_NUMBER = (int, float)
_OPT_NUMBER = (int, float, type(None))
#: field -> accepted types, for every field a reader of the store relies on
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "key": (str,), "config_id": (str,), "config": (dict,), "label": (str,),
    "code_version": (str,), "git": (str,), "status": (str,), "message": (str,),
    "failed_step": (int, type(None)), "steps_done": (int,), "solver_seconds": _NUMBER,
    "seconds_per_step": _OPT_NUMBER, "peak_memory_mib": _OPT_NUMBER,
    "oracle_calls": (dict,), "trace": (list,), "final": (dict,), "finished": _NUMBER,
}
CONFIG_FIELDS: dict[str, tuple[type, ...]] = {
    "problem": (str,), "problem_params": (dict,), "algorithm": (str,),
    "algorithm_params": (dict,), "seed": (int,), "size": (str,), "device": (str,),
}
_SCALAR = (int, float, bool, str, type(None))


def _bad_type(where: str, value: Any, types: tuple[type, ...]) -> str | None:
    if isinstance(value, bool) and bool not in types:
        return f"{where} is a boolean"
    if not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        return f"{where} is {type(value).__name__}, expected {expected}"
    return None


def record_problem(record: Any) -> str | None:
    """Why ``record`` (a parsed JSON object) cannot be used, or None if it can."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    for table, fields, prefix in ((record, RECORD_FIELDS, ""),
                                  (record.get("config"), CONFIG_FIELDS, "config.")):
        for name, types in fields.items():
            if name not in table:
                return f"missing field {prefix}{name}"
            problem = _bad_type(prefix + name, table[name], types)
            if problem:
                return problem
    cfg = record["config"]
    for name in ("problem", "algorithm", "size"):
        if not NAME.fullmatch(cfg[name]):
            return f"config.{name} {cfg[name]!r} is not a valid name"
    if not KEY.fullmatch(record["key"]):
        return f"key {record['key']!r} is not a hexadecimal hash"
    if record["status"] not in STATUSES:
        return f"unknown status {record['status']!r}"
    for name in ("problem_params", "algorithm_params"):
        if not all(isinstance(v, _SCALAR) for v in cfg[name].values()):
            return f"config.{name} holds a non-scalar value"
    rows = [("final", record["final"]), ("oracle_calls", record["oracle_calls"])]
    rows += [(f"trace[{i}]", row) for i, row in enumerate(record["trace"])]
    for where, row in rows:
        if not isinstance(row, dict):
            return f"{where} is {type(row).__name__}, expected an object"
        if not all(isinstance(v, _OPT_NUMBER) for v in row.values()):
            return f"{where} holds a non-numeric value"
    return None


# -------------------------------------------------------------------------- options
def bounded_seconds(option: str, value: float | None) -> float | None:
    """``value`` if finite and at most :data:`MAX_SECONDS` (a week), else a UserError."""
    if value is not None and not (math.isfinite(value) and value <= MAX_SECONDS):
        raise UserError(f"{option} {value:g} s is too large (at most {MAX_SECONDS:g} s, "
                        "a week); leave it out for no limit")
    return value


def writable_file(option: str, path: str | Path) -> Path:
    """``path`` if a file can be written there, checked before any work is done by opening it
    for appending (a file this creates is removed again: nothing is left behind)."""
    path = Path(path)
    if not str(path).strip() or str(path) == ".":
        raise UserError(f"{option}: empty file name")
    if path.is_dir():
        raise UserError(f"{option} {str(path)!r} is a folder, expected a file")
    if not path.parent.is_dir():
        raise UserError(f"{option} {str(path)!r}: folder {str(path.parent)!r} does not exist")
    existed = path.exists()
    if existed and not path.is_file():
        raise UserError(f"{option} {str(path)!r} is not a regular file")
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise UserError(f"{option} {str(path)!r} cannot be written: "
                        f"{exc.strerror or exc}") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def writable_folder(option: str, path: str | Path) -> Path:
    """``path`` if it is (or can be created as) a writable folder. Checked by creating what is
    missing and removing it again, so that bad input leaves no folder behind."""
    path = Path(path)
    if not str(path).strip():
        raise UserError(f"{option}: empty folder name")
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {str(path)!r} exists and is not a folder")
    created = []
    try:
        for folder in [*reversed(path.parents), path]:
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        probe = tempfile.TemporaryFile(dir=path)
        probe.close()
    except OSError as exc:
        why = f"{str(exc.filename)!r}: {exc.strerror}" if exc.filename else str(exc)
        raise UserError(f"{option} {str(path)!r} cannot be created or written ({why})"
                        ) from None
    finally:
        for folder in reversed(created):
            folder.rmdir()
    return path


def existing_file(option: str, path: str | Path) -> Path:
    """``path`` if it is an existing regular file (a folder or a missing file is an error)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {str(path)!r} is a folder, expected a file")
    if not path.is_file():
        raise UserError(f"{option} {str(path)!r} does not exist")
    return path


def device(text: str) -> str:
    """``text`` if torch knows the device and it exists on this machine."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {text!r} is not a device; valid: cpu, cuda, cuda:<i>, "
                        "mps") from None
    if dev.type == "cpu":
        return text
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {text}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {text}: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        return text
    if dev.type == "mps" and torch.backends.mps.is_available():
        return text
    raise UserError(f"--device {text}: not available on this machine; valid: cpu"
                    + (", cuda" if torch.cuda.is_available() else ""))


# ------------------------------------------------------------ the command line, at once
#: the most seeds a run plans (0..N-1); more is a typo, and planning them takes minutes
MAX_SEEDS = 10_000
_SCHEDULER = re.compile(r"([a-z][a-z0-9+]*://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}")


def check_args(args: Any) -> None:
    """Every option of a parsed command line whose value can be checked before work starts
    (the command's own code checks the rest): files and folders to write, numbers, names.
    Raises :class:`UserError`; creates nothing."""
    command = getattr(args, "command", None)
    seeds = getattr(args, "seeds", None)
    if isinstance(seeds, int) and seeds > MAX_SEEDS:
        raise UserError(f"--seeds {seeds}: at most {MAX_SEEDS}")
    bounded_seconds("--cell-timeout", getattr(args, "cell_timeout", None))
    seconds = getattr(args, "max_seconds", None)
    unbounded = seconds is not None and not math.isfinite(seconds)
    if unbounded and getattr(args, "steps", None) is None:
        raise UserError("--max-seconds inf without --steps would never stop; give a finite "
                        "--max-seconds or --steps")
    if seconds is not None:
        bounded_seconds("--max-seconds", seconds if math.isfinite(seconds) else None)
    if getattr(args, "in_process", False) and (
            getattr(args, "n_jobs", None) not in (None, 1) or getattr(args, "backend", "local")
            != "local" or getattr(args, "cell_timeout", None) is not None):
        raise UserError("--in-process runs cells one by one in this process: it cannot be "
                        "combined with --n-jobs N > 1, --backend dask or --cell-timeout")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and not _SCHEDULER.fullmatch(scheduler):
        raise UserError(f"--scheduler {scheduler!r} is not an address like tcp://host:8786")
    if command in ("run", "tune", "reproduce") and getattr(args, "device", None) is not None:
        device(args.device)
    settings = getattr(args, "settings", None)
    if settings is not None and not getattr(args, "no_tuned", False):
        if command == "run":  # given explicitly (its default is not in args)
            existing_file("--settings", settings)
        elif Path(settings).is_dir():
            raise UserError(f"--settings {settings!r} is a folder, expected a file")
    if getattr(args, "results", None) is not None and not str(args.results).strip():
        raise UserError("--results: empty folder name")
    out = getattr(args, "out", None)
    if command == "leaderboard" and out is not None:
        writable_folder("--out", out)
    elif command == "results" and out is not None:
        writable_file("--out", out)
    if command == "new" and getattr(args, "dir", None) is not None:
        writable_folder("--dir", args.dir)
    if command == "bench" and getattr(args, "report", None) is not None:
        base = Path(args.report)  # as blobench.workflows.bench.write_report names its two files
        base = base.with_suffix("") if base.suffix in (".md", ".json") else base
        writable_folder("--report", base.parent)
        if base.parent.is_dir():
            for suffix in (".json", ".md"):
                writable_file("--report", base.with_suffix(suffix))


@contextlib.contextmanager
def corrupt_report(enabled: bool = True) -> Iterator[None]:
    """Around a command: one warning line per corrupt or forged record any store met during
    it (file and reason), once the command succeeded — readers skip them, never silently."""
    from blobench.execution.store import CORRUPT_MET

    CORRUPT_MET.clear()
    yield
    if enabled:
        for path, reason in CORRUPT_MET.items():
            print(f"blobench: warning: corrupt record {path} ({reason}); left out",
                  file=sys.stderr)
    CORRUPT_MET.clear()


# ----------------------------------------------------------------- a problem's losses
def check_losses(problem: Any, theta0: Any, lam0: Any) -> None:
    """Raise :class:`~blobench.contracts.errors.PluginError` naming the cause when a problem's loss
    cannot carry a hypergradient: half precision (round-off ~1e-3 swamps it), an integer
    dtype (no gradient), detached from θ and λ, or on another device than θ₀. Run once per
    cell, after :meth:`~blobench.contracts.problem.Problem.check_api` (scalar tensors)."""
    import torch

    from blobench.contracts.errors import PluginError

    theta = theta0.detach().clone().requires_grad_(True)
    lam = lam0.detach().clone().requires_grad_(True)
    for label, fn in (("inner_loss", problem.inner_loss), ("outer_loss", problem.outer_loss)):
        value = fn(theta, lam)
        if not isinstance(value, torch.Tensor):
            continue  # check_api names it
        where = f"problem {problem.name!r}: {label} returned"
        if not value.dtype.is_floating_point:
            raise PluginError(f"{where} dtype {value.dtype}: an integer loss has no gradient; "
                              "compute it in float32 or float64")
        if value.dtype in (torch.float16, torch.bfloat16):
            raise PluginError(f"{where} dtype {value.dtype}: half precision is too coarse for "
                              "hypergradients; compute it in float32 or float64")
        if value.device != theta0.device:
            raise PluginError(f"{where} a tensor on {value.device} but θ₀ is on "
                              f"{theta0.device}: build the problem's tensors on its device")
        if not value.requires_grad:
            raise PluginError(f"{where} a tensor detached from θ and λ (no autograd graph: "
                              ".item(), .detach(), numpy or torch.no_grad inside it)")
