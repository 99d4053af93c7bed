"""What a reproduction is made of: experiments, verdicts, the report a paper module returns.

A paper module (:mod:`~blobench.workflows.reproduce.vicol2022`,
:mod:`~blobench.workflows.reproduce.mehra2021`) declares its :class:`Experiment` s (the cells
of each claim) and a report function that reads the finished records (one DataFrame per
experiment: :func:`ok_rows`, :func:`trace_rows`) and returns a :class:`Report`: one
:class:`Verdict` per claim, its page sections and its figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: ``smoke``: the tests (only the mathematically guaranteed claims, fewer steps); ``default``:
#: a laptop CPU, minutes; ``full``: the problems' full size, more seeds and steps
SIZES = ("smoke", "default", "full")
#: the three verdicts a claim can get
REPRODUCED, PARTIAL, NOT = "reproduced", "partially", "not reproduced"


@dataclass
class Experiment:
    """Cells of one claim: bracket strings for the problems and algorithms, and a budget."""

    key: str
    problems: list[str]
    algorithms: list[str]
    steps: int
    eval_every: int
    #: run at these sizes (the tests' ``smoke`` size runs only the guaranteed claims)
    sizes: tuple[str, ...] = SIZES


@dataclass
class Verdict:
    """One claim checked: what is claimed, the numeric criterion, what was measured, the
    verdict (:data:`REPRODUCED`, :data:`PARTIAL` or :data:`NOT`) and what the paper reports."""

    claim: str
    criterion: str
    measured: str
    verdict: str
    paper: str = ""


@dataclass
class Report:
    """What a report step writes: verdicts, Markdown sections and figures."""

    verdicts: list[Verdict] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


#: a paper's report step: (frames by experiment key, output folder, file stem) -> Report
ReportFn = Callable[[dict[str, pd.DataFrame], Path, str], Report]


@dataclass
class Reproduction:
    """A registered reproduction: its page title, the citation, its experiments, its report."""

    title: str
    citation: str
    experiments: Callable[[], list[Experiment]]
    report: ReportFn


def fmt(x: float | None) -> str:
    """A measured number on a page: three significant digits, ``n/a`` for missing / NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}"


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The records of ``frame`` whose status is ``ok``."""
    return frame[frame["status"] == "ok"] if not frame.empty else frame


def trace_rows(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The long table of ``metric`` over the traces of ``frame``: one row per (cell, evaluation)
    with its label, seed, step and solver seconds."""
    rows = []
    for _, r in frame.iterrows():
        for t in r["trace"]:
            if metric in t:
                rows.append({"label": r["label"], "seed": r["seed"], "step": t["step"],
                             "seconds": t["seconds"], metric: t[metric]})
    return pd.DataFrame(rows)
