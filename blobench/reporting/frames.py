"""The records behind the pages as pandas frames: which records a page may use, one row per
cell (final values) and one row per (cell, evaluation) (the traces).

A page never mixes in results of code that has since changed: :func:`current_records` keeps
the latest record per cell and, given the registry, only those made by the current code of
their problem and algorithm entries and of the engine (``code_version``). Records of entries
not loaded now are kept (they cannot be judged here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from blobench.execution.registry import Registry
from blobench.execution.store import ResultsStore
from blobench.execution.version import code_version
from blobench.reporting.results import flatten, latest


def current_records(store: ResultsStore, registry: Registry | None = None
                    ) -> list[dict[str, Any]]:
    """The latest record per cell of ``store``; with ``registry``, only those of the current
    code (module docstring)."""
    records = latest(store.records())
    if registry is None:
        return records
    current: dict[tuple[str, str], str | None] = {}
    kept = []
    for rec in records:
        pair = (rec["config"]["problem"], rec["config"]["algorithm"])
        if pair not in current:
            try:
                current[pair] = code_version(registry.source_file("problem", pair[0]),
                                             registry.source_file("algorithm", pair[1]))
            except KeyError:
                current[pair] = None
        if current[pair] is None or rec["code_version"] == current[pair]:
            kept.append(rec)
    return kept


def trace_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (cell, evaluation): the cell's identity, every metric of the evaluation
    and ``calls_total`` (the oracle calls so far, all kinds)."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        for point in rec.get("trace", []):
            rows.append({"problem": cfg["problem"], "size": cfg["size"], "label": rec["label"],
                         "algorithm": cfg["algorithm"], "seed": cfg["seed"],
                         "status": rec["status"],
                         "warm_start": cfg["algorithm_params"].get("warm_start"),
                         **point})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        calls = [c for c in frame.columns if c.startswith("calls_")]
        frame["calls_total"] = frame[calls].fillna(0).sum(axis=1) if calls else np.nan
    return frame


def final_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell: the flat record (:func:`~blobench.reporting.results.flatten`) plus
    the memory method, total oracle calls and whether tuned settings set its parameters."""
    rows = []
    for rec in records:
        row = flatten(rec)
        row["peak_tensor_mib"] = rec.get("peak_tensor_mib")
        row["memory_method"] = rec.get("memory_method")
        row["calls_total"] = float(sum(rec.get("oracle_calls", {}).values()))
        row["tuned"] = bool(rec.get("tuned"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["problem", "size", "label", "seed"]).reset_index(drop=True)
