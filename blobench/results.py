"""Results as tables: every finished cell as one flat row (config, metrics, status)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from blobench.store import ResultsStore


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


def results_frame(store: ResultsStore, all_versions: bool = False) -> pd.DataFrame:
    """All records of ``store`` as a DataFrame (latest per config unless ``all_versions``)."""
    records = list(store.records())
    if not all_versions:
        records = latest(records)
    frame = pd.DataFrame([flatten(r) for r in records])
    if frame.empty:
        return frame
    return frame.sort_values(["problem", "size", "label", "seed"]).reset_index(drop=True)
