"""The harness: cells = (problem config, algorithm config, seed), run under a budget.

:func:`plan` expands the command line's entries (bracket grids × seeds) into :class:`Cell`
objects whose parameters are fully resolved and validated before anything runs.
:func:`run_cell` runs one cell: it times ``algorithm.step`` alone with
``time.perf_counter`` (synchronizing CUDA first), evaluates on a schedule outside the timed
region, tracks the algorithm's peak memory, and returns one JSON-able record with the
config, code version, trace, final metrics and status (ok / diverged / error).
Evaluation costs little beside the solver (issue 15): the ground truth is memoized by λ
within the cell (:class:`blobench.execution.metrics.GroundTruth`), the reference λ's of
hypergradient quality are the problem instance's, computed once
(:func:`blobench.execution.metrics.shared_references`).
The live-tensor peak of one step (``peak_tensor_mib``) is the maximum over the states of the
expensive evaluations (a step's live tensors can depend on the state: replaying only the last
state's changed penalty_synthetic's figure): always at the final one, and at the ones before
once the cell has spent :data:`PROBE_FIRST_AFTER` seconds in its solver and while the replays
have cost at most :data:`PROBE_SHARE` of the solver time so far — a replay runs under a
dispatch mode that sees every op, 5–30× a plain step on small problems, which made the probe
alone 14–60 % of solver time (issue 15). A cell stopped by a timeout or a crash keeps the peak
of the replays before it (none for a cell that stopped within its first second).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from blobench import autodiff
from blobench.bases.algorithm import cell_theta0
from blobench.contracts.errors import NotApplicable, UserError
from blobench.contracts.params import resolve
from blobench.contracts.problem import Budget
from blobench.execution.memory import PeakMemory, step_tensor_peak
from blobench.execution.metrics import (
    GroundTruth,
    Retrainer,
    evaluate_state,
    probe_hypergradients,
    shared_references,
)
from blobench.execution.registry import Registry
from blobench.execution.spec import expand, format_entry
from blobench.execution.store import SCHEMA_VERSION
from blobench.execution.validate import check_losses
from blobench.execution.validate import device as check_device
from blobench.execution.version import code_version, git_describe


@dataclass(frozen=True)
class Cell:
    """One unit of work; every parameter resolved (defaults included)."""

    problem: str
    problem_params: dict[str, Any]
    algorithm: str
    algorithm_params: dict[str, Any]
    label: str  # the algorithm as the user reads it: name[non-default params]
    seed: int
    size: str = "quick"
    device: str = "cpu"
    steps: int | None = 100
    seconds: float | None = None
    eval_every: int = 10
    #: expensive metrics (e.g. the cold-restart gap) every this many evaluations, and at the end
    expensive_every: int = 5
    threads: int = 1
    plugins: tuple[str, ...] = field(default_factory=tuple)
    #: provenance when parameters came from a tuned-settings file (see
    #: blobench/workflows/tuning/settings.py):
    #: {"params": [names taken from it], "settings": file, "key": ..., hashes of the files}
    tuned: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """What determines the result (and so the cache key), without plugins/threads.

        The tuned provenance is not part of it: the parameters it set are in
        ``algorithm_params`` already, so the same setting given explicitly is the same cell.
        """
        cfg = asdict(self)
        cfg.pop("plugins")
        cfg.pop("label")
        cfg.pop("tuned")
        return cfg

    def key(self, version: str) -> str:
        blob = json.dumps({"config": self.config(), "code": version}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def config_id(self) -> str:
        """Hash of the config alone: the same cell across code versions."""
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _non_default(params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if defaults.get(k) != v}


def plan(registry: Registry, problems: list[str], algorithms: list[str], seeds: list[int],
         size: str = "quick", device: str = "cpu", steps: int | None = None,
         seconds: float | None = None, eval_every: int | None = None, threads: int = 1,
         plugins: tuple[str, ...] = (), tuned: dict[str, Any] | None = None
         ) -> tuple[list[Cell], list[tuple[str, str, str]]]:
    """Cells for every (problem grid point, algorithm grid point, seed) that applies.

    ``tuned`` is a tuned-settings file as loaded by :func:`blobench.workflows.tuning.load_settings`
    (``{"settings": {"<problem label>/<size>/<algorithm>": {"params": {...}, ...}}}``): a
    cell whose (problem, size, algorithm) has an entry takes every parameter of it that the
    command line did not give explicitly (explicit bracket values override), provided the
    cell's budget (steps, seconds) is the one the entry was tuned for — a step size tuned for
    100 steps is not the tuned one for 3. Its label then shows those parameters and
    ``Cell.tuned`` records where they came from.

    Returns the cells and the skipped (problem, algorithm, reason) pairs. A grid point given
    twice (``-a x -a x``, ``[k=[5,5]]``, or a value equal to the default) is one cell.
    """
    if not seeds:
        raise UserError("at least one seed is needed (--seeds N with N >= 1)")
    check_device(device)  # a typo is an error now, not a cell that dies later
    cells, skipped = [], []
    prob_points = []
    for text in problems:
        name, grid = expand(text)
        cls = registry.problem(name)
        if size not in cls.sizes:
            raise UserError(f"problem {name!r} has no size {size!r}; "
                            f"valid: {', '.join(cls.sizes)}")
        preset = resolve(name, cls.params, cls.sizes[size])
        for point in grid:
            params = resolve(name, cls.params, {**cls.sizes[size], **point})
            prob_points.append((cls, params, format_entry(name, _non_default(params, preset))))
    alg_points = []
    for text in algorithms:
        name, grid = expand(text)
        cls = registry.algorithm(name)
        defaults = resolve(name, cls.params, {})
        for point in grid:
            params = cls(**point).config  # validates, including cross-parameter checks
            label = format_entry(name, _non_default(params, defaults))
            alg_points.append((cls, params, label, point, defaults))
    table = (tuned or {}).get("settings", {})
    for pcls, pparams, plabel in prob_points:
        budget = pcls.budgets.get(size, Budget())
        cell_steps = steps if steps is not None else (budget.steps if seconds is None else None)
        cell_seconds = seconds if seconds is not None else budget.seconds
        for acls, aparams, label, point, defaults in alg_points:
            provenance: dict[str, Any] = {}
            entry = table.get(f"{plabel}/{size}/{acls.name}")
            if entry and (entry.get("params") is None or entry.get("budget") != {
                    "steps": cell_steps, "seconds": cell_seconds}):
                entry = None
            taken = sorted(set(entry["params"]) - set(point)) if entry else []
            if taken:
                aparams = acls(**{**entry["params"], **point}).config
                label = format_entry(acls.name, _non_default(aparams, defaults))
                provenance = {"params": taken, "settings": tuned.get("path", ""),
                              "key": f"{plabel}/{size}/{acls.name}",
                              "code": entry.get("code", {})}
            reason = acls(**aparams).skip_reason(pcls, pparams)
            if reason:
                skipped.append((pcls.name, label, reason))
                continue
            for seed in seeds:
                cells.append(Cell(
                    problem=pcls.name, problem_params=pparams, algorithm=acls.name,
                    algorithm_params=aparams, label=label, seed=seed, size=size,
                    device=device,
                    steps=cell_steps, seconds=cell_seconds,
                    eval_every=eval_every or budget.eval_every, threads=threads,
                    plugins=tuple(str(Path(p).resolve()) for p in plugins),
                    tuned=provenance))
    unique = {cell.config_id(): cell for cell in reversed(cells)}  # the first of duplicates
    return [cell for cell in cells if unique[cell.config_id()] is cell], skipped


def cell_version(registry: Registry, cell: Cell) -> str:
    return code_version(registry.source_file("problem", cell.problem),
                        registry.source_file("algorithm", cell.algorithm))


#: seconds between two "step reached" reports of an isolated cell to its supervisor
HEARTBEAT = 1.0
#: the growth rule of divergence: see :class:`Growth`
GROWTH = 1e6
#: replays of a step for its live-tensor peak at intermediate expensive evaluations stop once
#: they have cost this share of the solver time (the final one always runs)
PROBE_SHARE = 0.1
#: solver seconds before the first intermediate replay (a short cell replays its final step
#: only: one replay costs 5–30 plain steps)
PROBE_FIRST_AFTER = 1.0
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class Growth:
    """When a run has diverged (issue 18): its outer loss f, ‖θ‖ or ‖λ‖ at an evaluation is
    non-finite, beyond the float32 range (3.4e38), or more than ``GROWTH`` = 1e6 times its
    initial scale max(|x₀|, 1) (x₀ its value at the first evaluation, before any step).
    A run that explodes — e.g. a solver dividing by the zero eigenvalues of a singular inner
    Hessian, iterates of norm 1e49 while every value stays finite — is recorded ``diverged``
    at the evaluation that sees it, never ``ok``."""

    def __init__(self, row: dict[str, Any], state: Any) -> None:
        self.scale = {k: max(v, 1.0) if math.isfinite(v) else 1.0
                      for k, v in self.values(row, state).items()}

    @staticmethod
    def values(row: dict[str, Any], state: Any) -> dict[str, float]:
        return {"outer loss": abs(float(row.get("outer_loss", 0.0))),
                "‖θ‖": float(torch.linalg.vector_norm(state.theta.detach().double())),
                "‖λ‖": float(torch.linalg.vector_norm(state.lam.detach().double()))}

    def verdict(self, row: dict[str, Any], state: Any) -> str | None:
        """None while the run is sane, else what diverged and how."""
        for name, value in self.values(row, state).items():
            if not math.isfinite(value):
                return f"non-finite {name}"
            if value > FLOAT32_MAX:
                return f"{name} = {value:.3g} is beyond the float32 range"
            if value > GROWTH * self.scale[name]:
                return (f"{name} = {value:.3g} grew over {GROWTH:.0e} × its initial scale "
                        f"{self.scale[name]:.3g}")
        return None


def _judge(record: dict[str, Any], problem: Any, growth: Growth, row: dict[str, Any],
           state: Any, step: int) -> str:
    """Set ``record``'s status from an evaluation row: diverged (the growth rule), error
    (the problem's evaluate() gave no finite primary metric on sane iterates), or ok."""
    verdict = growth.verdict(row, state)
    primary = getattr(problem, "primary_metric", None)
    value = row.get(primary) if primary else 0.0
    if verdict is not None:
        record.update(status="diverged", failed_step=step, message=verdict)
    elif not isinstance(value, (int, float)) or not math.isfinite(value):
        record.update(status="error", failed_step=step,
                      message=f"problem {problem.name!r}: evaluate() returned {value!r} for "
                              f"its primary metric {primary!r} (finite iterates)")
    return record["status"]


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)[-1:]
    return f" at {tb[0].filename}:{tb[0].lineno}" if tb else ""


def new_record(registry: Registry, cell: Cell, status: str = "ok", message: str = ""
               ) -> dict[str, Any]:
    """A record with the cell's identity and empty results (also for cells that never ran)."""
    version = cell_version(registry, cell)
    now = time.time()
    return {
        "schema": SCHEMA_VERSION, "key": cell.key(version), "config_id": cell.config_id(),
        "config": cell.config(),
        "label": cell.label, "code_version": version, "git": git_describe(),
        "torch": torch.__version__, "machine": platform.machine(), "host": platform.node(),
        "threads": cell.threads, "started": now, "finished": now, "status": status,
        "message": message, "failed_step": None, "steps_done": 0, "solver_seconds": 0.0,
        "seconds_per_step": None, "peak_memory_mib": None, "peak_tensor_mib": None,
        "memory_method": None, "oracle_calls": {}, "trace": [],
        "final": {}, "tuned": cell.tuned or None,
    }


def run_cell(registry: Registry, cell: Cell, report: Callable[[dict[str, Any]], None] | None
             = None, contain_exits: bool = False) -> dict[str, Any]:
    """Run one cell and return its record (never raises for a failing algorithm).

    ``report`` (isolated cells: a pipe to the supervisor) receives ``{"step", "row"}`` at each
    evaluation and ``{"step"}`` at most every :data:`HEARTBEAT` seconds, so that a cell killed
    on timeout or crashed keeps the last step it reached and its trace so far.
    ``contain_exits``: record ``SystemExit`` / ``KeyboardInterrupt`` raised by the cell's code
    as an error with their name (in a child process, where no user interrupt reaches).
    """
    torch.set_num_threads(cell.threads)
    record = new_record(registry, cell)
    trace: list[dict[str, float]] = []
    device = torch.device(cell.device)
    memory = PeakMemory(device)
    solver_seconds, steps_done = 0.0, 0
    tensor_peak: float | None = None  # MiB of live tensors in one step (replayed, untimed)
    probe_seconds = 0.0  # wall time of those replays
    quality: dict[str, float] = {}  # hypergradient quality at the reference λ's (final only)
    try:
        problem = registry.problem(cell.problem)(size=cell.size, seed=cell.seed, device=device,
                                                 **cell.problem_params)
        algorithm = registry.algorithm(cell.algorithm)(**cell.algorithm_params)
        generator = torch.Generator().manual_seed(cell.seed)
        lam0 = problem.init_outer(generator)
        theta0 = cell_theta0(problem, lam0)  # the one θ₀ of the cell (issue 23)
        retrainer = Retrainer(problem)  # θ*(λ) of the bilevel answer, evaluation to evaluation
        truth = GroundTruth(problem)  # θ*(λ), dF/dλ memoized by λ, outside the timed region
        problem.check_api(theta0, lam0)
        check_losses(problem, theta0, lam0)  # dtype, graph, device: named causes
        autodiff.oracle_counts.clear()
        memory.start()
        memory.enter()
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        state = algorithm.init(problem, theta0, lam0, generator)  # the algorithm's own set-up
        sync()
        solver_seconds = time.perf_counter() - t0  # is solver work (e.g. an initial inner solve)
        memory.exit()

        def observe(final: bool = False) -> dict[str, float]:
            row = {"step": steps_done, "seconds": solver_seconds,
                   **{f"calls_{k}": v for k, v in autodiff.oracle_counts.items()}}
            expensive = final or len(trace) % cell.expensive_every == 0
            with truth.active():
                row.update(evaluate_state(problem, state, theta0, lam0, expensive=expensive,
                                          retrainer=retrainer))
            nonlocal tensor_peak, probe_seconds
            if expensive and (final or (solver_seconds >= PROBE_FIRST_AFTER
                                        and probe_seconds < PROBE_SHARE * solver_seconds)):
                t_probe = time.perf_counter()
                try:
                    peak = step_tensor_peak(algorithm, problem, state)
                except Exception:  # the real step will report the failure
                    peak = None
                probe_seconds += time.perf_counter() - t_probe
                if peak is not None:
                    tensor_peak = peak if tensor_peak is None else max(tensor_peak, peak)
            trace.append(row)
            if report is not None:
                report({"step": steps_done, "row": row})
            return row

        growth = Growth(observe(), state)
        beat = time.monotonic()
        measuring = False  # the memory probe spans the steps between two evaluations
        while True:
            if cell.steps is not None and steps_done >= cell.steps:
                break
            if cell.seconds is not None and solver_seconds >= cell.seconds:
                break
            if not measuring:
                memory.enter()
                measuring = True
            sync()
            t0 = time.perf_counter()
            state = algorithm.step(problem, state)
            sync()
            solver_seconds += time.perf_counter() - t0
            steps_done += 1
            if report is not None and time.monotonic() - beat > HEARTBEAT:
                beat = time.monotonic()
                report({"step": steps_done})
            last = cell.steps is not None and steps_done >= cell.steps
            if steps_done % cell.eval_every == 0 or last:
                memory.exit()
                measuring = False
                row = observe(final=last)
                if _judge(record, problem, growth, row, state, steps_done) != "ok":
                    break
        if measuring:
            memory.exit()
        if trace[-1]["step"] != steps_done:
            row = observe(final=True)
            if record["status"] == "ok":
                _judge(record, problem, growth, row, state, steps_done)
        if record["status"] == "ok" and problem.has("exact_hypergradient"):
            # hypergradient quality where it is informative (issue 23), outside the timed run
            # (the reference points are the instance's: computed once, stored, shared)
            with truth.active():
                refs = shared_references(problem, lam0, {
                    "problem": cell.problem, "size": cell.size, "params": cell.problem_params,
                    "seed": cell.seed, "device": cell.device,
                    "code": code_version(registry.source_file("problem", cell.problem))})
                for lam, grad in refs:
                    truth.add("exact_hypergradient", lam, grad)
                quality.update(probe_hypergradients(algorithm, problem,
                                                    [lam for lam, _ in refs]))
    except NotApplicable as exc:
        record.update(status="not_applicable", message=str(exc))
    except (SystemExit, KeyboardInterrupt) as exc:
        if not contain_exits:
            raise
        code = f"({exc.code!r})" if isinstance(exc, SystemExit) else ""
        record.update(status="error", failed_step=steps_done,
                      message=f"{type(exc).__name__}{code} raised inside the cell{_where(exc)}")
    except Exception as exc:
        record.update(status="error", failed_step=steps_done,
                      message=f"{type(exc).__name__}: {exc}{_where(exc)}")
    record.update(
        finished=time.time(), steps_done=steps_done, solver_seconds=solver_seconds,
        seconds_per_step=solver_seconds / steps_done if steps_done else None,
        peak_memory_mib=memory.peak_mib, peak_tensor_mib=tensor_peak,
        memory_method=memory.method,
        oracle_calls=dict(autodiff.oracle_counts), trace=trace,
        final={**trace[-1], **quality} if trace else {},
    )
    return record
