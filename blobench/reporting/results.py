"""Results as tables: every finished cell as one flat row (config, metrics, status), the
long per-evaluation table (``--traces``), and Parquet files of whole records.

The record layout is versioned (``record["schema"]``,
:data:`blobench.execution.store.SCHEMA_VERSION`;
documented in docs/results-schema.md). Parquet needs pyarrow (a dependency: columnar, typed,
compressed files that pandas, polars, R's arrow and DuckDB read directly).

**Shipped records** (:func:`write_records`, :func:`load_records`): one Parquet file per
(problem, size) under ``<leaderboard>/records/``, one row per cell: the flat columns of
:func:`flatten` plus ``record``, the whole record as JSON — so the file is a table for
anyone and round-trips exactly into blobench. :func:`merge_records` lays a user's new records
over them (a cell of the user's store replaces the same cell — ``config_id`` — of the
baseline), so adding one algorithm needs only its own cells.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from blobench.contracts.errors import UserError
from blobench.execution.store import SCHEMA_VERSION, ResultsStore
from blobench.execution.validate import page_stem, record_problem


def latest(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep, per cell config, the most recently finished record (older code versions drop)."""
    best: dict[str, dict[str, Any]] = {}
    for rec in records:
        cur = best.get(rec["config_id"])
        if cur is None or rec.get("finished", 0) > cur.get("finished", 0):
            best[rec["config_id"]] = rec
    return list(best.values())


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One flat row: config (``problem.*``/``algorithm.*`` for parameters), status, metrics."""
    cfg = record["config"]
    row: dict[str, Any] = {
        "schema": record.get("schema", 1),
        "problem": cfg["problem"], "size": cfg["size"], "algorithm": cfg["algorithm"],
        "label": record["label"], "seed": cfg["seed"], "device": cfg["device"],
        "status": record["status"], "message": record["message"],
        "failed_step": record["failed_step"], "steps": record["steps_done"],
        "solver_seconds": record["solver_seconds"],
        "seconds_per_step": record["seconds_per_step"],
        "peak_memory_mib": record["peak_memory_mib"],
        "peak_tensor_mib": record.get("peak_tensor_mib"),
    }
    row.update({f"problem.{k}": v for k, v in cfg["problem_params"].items()})
    row.update({f"algorithm.{k}": v for k, v in cfg["algorithm_params"].items()})
    row.update({f"calls.{k}": v for k, v in record.get("oracle_calls", {}).items()})
    row.update({k: v for k, v in record.get("final", {}).items()
                if k not in ("step", "seconds") and not k.startswith("calls_")})
    row.update(code_version=record["code_version"], git=record["git"], key=record["key"])
    return row


def _sorted(frame: pd.DataFrame, *extra: str) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame.sort_values(["problem", "size", "label", "seed", *extra],
                             kind="mergesort").reset_index(drop=True)


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One flat row per record (:func:`flatten`)."""
    return _sorted(pd.DataFrame([flatten(r) for r in records]))


def traces_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The long table: one row per (cell, evaluation) — the cell's identity (key, problem,
    size, algorithm, label, seed, status) and every metric of that evaluation."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        ident = {"schema": rec.get("schema", 1), "key": rec["key"], "problem": cfg["problem"],
                 "size": cfg["size"], "algorithm": cfg["algorithm"], "label": rec["label"],
                 "seed": cfg["seed"], "status": rec["status"]}
        rows += [{**ident, **point} for point in rec.get("trace", [])]
    return _sorted(pd.DataFrame(rows), "step")


def results_frame(store: ResultsStore, all_versions: bool = False, traces: bool = False
                  ) -> pd.DataFrame:
    """All records of ``store`` as a DataFrame (latest per config unless ``all_versions``);
    ``traces``: the long per-evaluation table instead."""
    records = list(store.records())
    if not all_versions:
        records = latest(records)
    return traces_frame(records) if traces else records_frame(records)


def write_parquet(frame: pd.DataFrame, path: Path | str) -> None:
    """``frame`` as a Parquet file; columns of mixed Python types (a parameter that is None in
    one row and a number in another) are written as text, numbers and booleans as such."""
    mixed = [c for c in frame.columns if frame[c].dtype == object
             and len({type(v) for v in frame[c] if v is not None and v == v}) > 1]
    frame.astype({c: str for c in mixed}).to_parquet(path, index=False)


def write_records(records: Iterable[dict[str, Any]], folder: Path) -> list[Path]:
    """One Parquet file per (problem, size) in ``folder`` (module docstring); returns them."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["config"]["problem"], rec["config"]["size"]), []).append(rec)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (problem, size), recs in sorted(groups.items()):
        frame = records_frame(recs)
        by_key = {r["key"]: r for r in recs}
        frame["record"] = [json.dumps(by_key[k], sort_keys=True, default=str)
                           for k in frame["key"]]
        path = folder / f"{page_stem(folder, problem, size)}.parquet"
        write_parquet(frame, path)
        written.append(path)
    return written


def load_records(folder: Path | str) -> list[dict[str, Any]]:
    """The records shipped with a leaderboard: ``<folder>/records/*.parquet`` (or
    ``<folder>/*.parquet``). Each record is checked like a store's (a forged one is refused
    with its file named); a newer schema than this code reads is an error."""
    folder = Path(folder)
    files = sorted((folder / "records").glob("*.parquet")) or sorted(folder.glob("*.parquet"))
    if not files:
        raise UserError(f"--baseline {folder}: no records (expected {folder}/records/*.parquet,"
                        " written by blobench leaderboard)")
    records = []
    for path in files:
        try:
            texts = pd.read_parquet(path, columns=["record"])["record"]
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise UserError(f"{path}: not a records file ({type(exc).__name__})") from None
        for text in texts:
            rec = json.loads(text)
            problem = record_problem(rec) if isinstance(rec, dict) else "not a record"
            if problem:
                raise UserError(f"{path}: invalid record: {problem}")
            if rec.get("schema", 1) > SCHEMA_VERSION:
                raise UserError(f"{path}: record schema {rec['schema']} is newer than this "
                                f"blobench reads ({SCHEMA_VERSION}); upgrade blobench")
            records.append(rec)
    return records


def merge_records(baseline: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """``baseline`` with ``new`` laid over it: per cell (``config_id``), a new record wins."""
    merged = {r["config_id"]: r for r in latest(baseline)}
    merged.update({r["config_id"]: r for r in latest(new)})
    return list(merged.values())
