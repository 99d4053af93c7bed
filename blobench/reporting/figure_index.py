"""The figures of a problem page, in page order: which :mod:`blobench.reporting.plots`
figure is drawn for which metric, with its title on the page; and the drawing of every
page's figures on the available cores (:func:`draw_all`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from blobench.reporting import plots
from blobench.reporting.tables import Ranking


def target_name(ranking: Ranking) -> str:
    """The words for the curve that time to target is measured on."""
    return "F(λ) = f(θ*(λ), λ)" if ranking.retrained else "outer loss f(θ, λ)"


def page_figures(stem: str, out: Path, traces: pd.DataFrame, final: pd.DataFrame,
                 table: pd.DataFrame, ranking: Ranking, title: str) -> list[tuple[str, Path]]:
    """Draw the page's figures into ``out`` (``<stem>-<kind>.png``); returns (title, path) of
    those drawn: F(λ) (or the own outer loss) and the ranked metric vs solver time, memory vs
    unroll length, the accuracy / time Pareto front, F(λ) vs oracle calls, implicit bias;
    the curves of F(λ) show the time-to-target level (``final["target"]``).
    Styles and legend follow the page's rank order (``table``)."""
    figs: list[tuple[str, Path | None]] = []
    ok_traces = traces[traces["status"] == "ok"] if not traces.empty else traces
    order = list(table["algorithm"])
    families = dict(zip(table["algorithm"], table["family"], strict=True))
    style = plots.FigureStyle(order, families, title)
    name = target_name(ranking)
    curves = not ok_traces.empty and ranking.target in ok_traces
    # the time-to-target level (median over seeds where seeds draw different instances)
    levels = pd.to_numeric(final["target"], errors="coerce").dropna() \
        if "target" in final else pd.Series(dtype=float)
    level = float(levels.median()) if len(levels) else None
    if curves:
        figs.append((f"{name} vs solver time", plots.metric_vs_time(
            ok_traces, ranking.target, name, out / f"{stem}-outer_loss.png", style, level)))
        if ranking.column in ok_traces and ranking.column != ranking.target:
            figs.append((f"{ranking.header()} vs solver time", plots.metric_vs_time(
                ok_traces, ranking.column, ranking.header(), out / f"{stem}-primary.png",
                style)))
    ok_final = final[final["status"] == "ok"]
    mem = "peak_tensor_mib" if ok_final["peak_tensor_mib"].notna().any() else "peak_memory_mib"
    figs.append(("Peak memory vs unroll length / inner steps",
                 plots.memory_vs_steps(ok_final, mem, out / f"{stem}-memory.png", style)))
    figs.append(("Accuracy vs time (Pareto)",
                 plots.pareto(table, ranking.column, ranking.header(), ranking.higher,
                              out / f"{stem}-pareto.png", style)))
    if curves:
        figs.append((f"{name} vs oracle calls", plots.metric_vs_calls(
            ok_traces, ranking.target, name, out / f"{stem}-calls.png", style, level)))
    if not ok_traces.empty:
        figs.append(("Implicit bias", plots.implicit_bias(ok_traces, ok_final,
                                                          out / f"{stem}-bias.png", style)))
    return [(t, p) for t, p in figs if p is not None]


#: the pages' figure arguments, set before the drawing processes fork (they inherit them)
_TASKS: list[tuple[Any, ...]] = []


def _draw(index: int) -> list[tuple[str, Path]]:
    return page_figures(*_TASKS[index])


def draw_all(tasks: list[tuple[Any, ...]], jobs: int | None = None
             ) -> list[list[tuple[str, Path]]]:
    """:func:`page_figures` of every page (``tasks``: its arguments per page), in order.

    Drawing is most of ``blobench leaderboard``'s time (matplotlib's text layout: 85 s of a
    16-page quick board on 2 cores, one process) and the pages are independent, so they are
    drawn by ``jobs`` forked processes (default: the available cores), each inheriting the
    frames instead of receiving them pickled. The PNGs are the same bytes as drawn in one
    process (tests/test_leaderboard.py). One page or one core, or no ``fork`` (Windows): here.
    """
    import multiprocessing

    if not jobs:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    jobs = min(jobs, len(tasks))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [page_figures(*task) for task in tasks]
    _TASKS[:] = tasks
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            # biggest pages first: the traces' rows are the drawing's work
            order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][2]))
            drawn = dict(zip(order, pool.map(_draw, order, chunksize=1), strict=True))
    finally:
        _TASKS.clear()
    return [drawn[i] for i in range(len(tasks))]
