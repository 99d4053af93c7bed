"""Progress of a run: a bar on a terminal, one line per finished cell otherwise, and an ETA.

:class:`Progress` weights each cell by its expected seconds: its earlier record on this
machine, else its **shipped timing** — the median seconds of the same (problem, size, label)
in the records the committed leaderboard was made from (``leaderboards/cell_seconds.json``,
written by ``blobench leaderboard``: :func:`cell_seconds_table`) times this machine's speed
relative to that one, learned from the cells finished so far — else the means of its
problem's and its algorithm's finished cells. :func:`order_cells` runs cells longest first
when every cell has a timing. Used by :func:`blobench.execution.runner.run_cells`.

Why shipped timings (issue 15): a fresh clone has no earlier records, and cell costs span
three orders of magnitude (forward-mode cells 10–30 s among cells of 0.3 s), so an ETA from
the cells finished so far was 20–50 % off at 10–75 % of the default run (replayed on a
measured run); with the shipped timings of another run of the suite it was within 11 %.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from blobench.execution.harness import Cell


def progress_mode(enabled: bool = True, verbose: bool = False,
                  stream: TextIO | None = None) -> str:
    """How to show progress: "bar" on a terminal, "lines" (one per finished cell) otherwise,
    "both" with ``verbose`` on a terminal, "off" when disabled or ``TQDM_DISABLE`` is set."""
    stream = stream or sys.stderr
    if not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false"):
        return "off"
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return "lines"
    return "both" if verbose else "bar"


def _clock(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def record_seconds(record: dict[str, Any]) -> float:
    """A record's wall seconds as its supervisor saw them (process start to record)."""
    if record.get("cell_seconds") is not None:
        return float(record["cell_seconds"])
    return max(0.0, record.get("finished", 0.0) - record.get("started", 0.0))


#: the shipped timings' file name, in the project's leaderboards/ (module docstring)
CELL_SECONDS = "cell_seconds.json"


def cell_time_key(cell: Cell) -> str:
    """What a shipped timing is keyed by: the cell's problem, size and label (seeds pooled)."""
    return f"{cell.problem}|{cell.size}|{cell.label}"


def shipped_seconds(cell: Cell, table: dict[str, float]) -> float | None:
    """A cell's shipped timing: its own (problem, size, label), else — a configuration the
    table's run did not have, e.g. a newly tuned step size, which changes the label but not
    the work of a step — the median over the table's configurations of the same algorithm on
    the same problem and size; None if there is none."""
    own = table.get(cell_time_key(cell))
    if own is not None:
        return own
    base = f"{cell.problem}|{cell.size}|{cell.algorithm}"
    peers = [v for k, v in table.items() if k == base or k.startswith(base + "[")]
    return statistics.median(peers) if peers else None


def cell_seconds_table(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Median wall seconds per (problem, size, label) of finished records: the shipped
    timings (module docstring). Cells that ended ``not_applicable`` are timed too (a cell that
    refuses in ``init`` costs its process and set-up, ~50 ms): left out, the ETA had guessed
    them from their problem's and algorithm's mean — forward_mode on a network problem, 10–20 s
    each — and :func:`order_cells` lacked a timing for every cell, so it fell back to a
    shuffle (issue 15: ETA error 54 % at half of a fresh-clone default run)."""
    groups: dict[str, list[float]] = {}
    for record in records:
        config = record.get("config") or {}
        if "problem" not in config or (record.get("cell_seconds") is None
                                       and not record.get("finished")):
            continue  # a baseline's shipped records carry no timing
        key = f"{config['problem']}|{config.get('size', 'quick')}|{record.get('label')}"
        groups.setdefault(key, []).append(record_seconds(record))
    return {key: round(statistics.median(v), 3) for key, v in sorted(groups.items())}


def load_cell_seconds(path: Path) -> dict[str, float]:
    """The shipped timings at ``path``; empty if it is absent or unreadable (then the ETA
    learns from the run alone)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {str(k): float(v) for k, v in table.items()
            if isinstance(v, (int, float)) and v >= 0}


#: the folder of a results store holding the timing tables its runs read
TIMINGS_DIR = "timings"


def save_run_timings(root: Path, table: dict[str, float]) -> str:
    """Keep the timing table a run reads in its results store, as
    ``<root>/timings/<digest>.json``; returns the digest its records carry (``run.timings``).
    ``blobench bench --run-results`` replays the run's ETA with this table: the committed
    ``cell_seconds.json`` may have been rewritten since (``blobench leaderboard`` does so
    from the very run it reads — a replay with that table measured nothing)."""
    import hashlib

    text = json.dumps(table, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(root) / TIMINGS_DIR
    target = folder / f"{digest}.json"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{os.getpid()}-{digest}.json"
        tmp.write_text(text)
        os.replace(tmp, target)
    return digest


def load_run_timings(root: Path, digest: str) -> dict[str, float] | None:
    """The timing table a run read (:func:`save_run_timings`); None if it was not kept."""
    path = Path(root) / TIMINGS_DIR / f"{digest}.json"
    return load_cell_seconds(path) if path.is_file() else None


class Progress:
    """Finished cells with an ETA that weights each cell by its expected seconds.

    A cell's expected seconds: its ``prior`` (an earlier record of the same configuration),
    else the mean of the finished or prior cells of its problem, else of all finished cells.
    ETA = (expected seconds of the cells left − seconds the running ones already ran) /
    cells at once. Shown as a tqdm bar ("bar"), one line per finished cell with its label and
    status ("lines"; what logs and CI get: no carriage-return frames), both, or nothing.
    """

    def __init__(self, cells: list[Cell], prior: dict[str, float], n_jobs: int, mode: str,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter,
                 shipped: dict[str, float] | None = None):
        self.cells = {c.config_id(): c for c in cells}
        self.prior = prior
        timings = {cid: shipped_seconds(c, shipped) for cid, c in self.cells.items()
                   } if shipped else {}
        self.shipped = {cid: t for cid, t in timings.items() if t is not None}
        self.n_jobs = n_jobs
        self.mode = mode
        self.stream = stream or sys.stderr
        self.done: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.clock = clock
        self.t0 = clock()
        self.color = mode in ("bar", "both") and "NO_COLOR" not in os.environ
        self.bar = None
        if mode in ("bar", "both"):
            from tqdm import tqdm

            self.bar = tqdm(total=len(cells), desc="cells", unit="cell", file=self.stream,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def started(self, cell: Cell) -> None:
        self.running[cell.config_id()] = self.clock()

    def eta(self) -> float | None:
        """Seconds left (None until something is known about the cells left).

        A cell without an earlier record is expected to cost overall × (its problem's mean /
        overall) × (its algorithm's mean / overall), the means over the known cells (a
        factor is 1 until its problem or algorithm has one): cost ≈ problem × algorithm."""
        groups: dict[tuple[str, str], list[float]] = {}
        for cid, seconds in [*self.prior.items(), *self.done.items()]:
            cell = self.cells.get(cid)
            if cell is not None:
                groups.setdefault(("p", cell.problem), []).append(seconds)
                groups.setdefault(("a", cell.algorithm), []).append(seconds)
        known = [*self.done.values(), *self.prior.values()]
        if not known:
            return None
        overall = sum(known) / len(known)
        factor = {k: sum(v) / len(v) / overall if overall > 0 else 1.0
                  for k, v in groups.items()}
        speed = self.speed()
        now, left = self.clock(), 0.0
        for cid, cell in self.cells.items():
            if cid in self.done:
                continue
            if cid in self.prior:
                expected = self.prior[cid]
            elif cid in self.shipped:
                expected = self.shipped[cid] * speed
            else:
                expected = (overall * factor.get(("p", cell.problem), 1.0)
                            * factor.get(("a", cell.algorithm), 1.0))
            if cid in self.running:
                expected = max(0.0, expected - (now - self.running[cid]))
            left += expected
        jobs = self.n_jobs if self.n_jobs > 0 else max(1, len(self.running))
        return left / jobs

    def speed(self) -> float:
        """This machine's seconds per shipped second: the median of actual / shipped over the
        finished cells that have a shipped timing (1 until one has finished). A median, so
        that a cell whose cost changed since the table was made (a refusal that now ends it
        at once, say) does not skew the rest."""
        ratios = [seconds / self.shipped[cid] for cid, seconds in self.done.items()
                  if self.shipped.get(cid, 0.0) > 0]
        return statistics.median(ratios) if ratios else 1.0

    def finished(self, cell: Cell, record: dict[str, Any]) -> None:
        cid = cell.config_id()
        self.running.pop(cid, None)
        self.done[cid] = record_seconds(record)
        if self.mode == "off":
            return
        eta = self.eta()
        when = f"elapsed {_clock(self.clock() - self.t0)}, ETA " + (
            "?" if eta is None else _clock(eta))
        status = record["status"]
        if self.color:
            status = f"\033[{32 if status == 'ok' else 33 if status == 'not_applicable' else 31}m" \
                     f"{status}\033[0m"
        if self.mode in ("lines", "both"):
            n = len(self.done)
            width = len(str(len(self.cells)))
            line = (f"[{n:{width}d}/{len(self.cells)}] {cell.problem} × {record['label']} seed "
                    f"{cell.seed}: {status} {self.done[cid]:.1f} s ({when})")
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.set_postfix_str(when.split(", ")[1], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def order_cells(cells: list[Cell], prior: dict[str, float],
                shipped: dict[str, float] | None = None) -> list[Cell]:
    """Longest first when every cell has an earlier or a shipped timing
    (:func:`shipped_seconds`; fewer idle cores at the end; a cell's own earlier timing wins);
    otherwise a fixed shuffle, so that the cells done at any time are a fair sample of
    problems and algorithms alike and the ETA learns both early (in name order the cheap
    algorithms came first: the ETA was 85 % short at half the run)."""
    table = shipped or {}

    def known(c: Cell) -> float | None:
        own = prior.get(c.config_id())
        return own if own is not None else shipped_seconds(c, table)
    if cells and all(known(c) is not None for c in cells):
        return sorted(cells, key=lambda c: -(known(c) or 0.0))
    import random

    out = list(cells)
    random.Random(0).shuffle(out)
    return out
