"""Leaderboard pages from the results store (and a baseline of shipped records) — the entry
point ``blobench leaderboard`` calls; the work is split by job:

=====================================  ==================================================
:mod:`blobench.reporting.frames`       which records a page uses (current code only);
                                       per-cell and per-evaluation frames
:mod:`blobench.reporting.tables`       what is ranked (:class:`Ranking`), the aggregate
                                       with intervals, ranks and ties, Markdown tables
:mod:`blobench.reporting.target`       the time-to-target rule and its computation
:mod:`blobench.reporting.figure_index` which figures a page shows
:mod:`blobench.reporting.provenance`   provenance line; stale tuned settings read from
                                       the records' own provenance
:mod:`blobench.reporting.pages`        page assembly (:func:`write_leaderboard`) from the
                                       templates in ``blobench/reporting/templates/``
:mod:`blobench.reporting.compare`      ``--compare``: two stores or two configurations
=====================================  ==================================================

For each (problem, size): one row per algorithm configuration, mean ± a 95 % interval over
seeds (:mod:`blobench.reporting.ranks`) of the final metrics of its successful cells; failed /
diverged cells are counted with their status, never dropped.

**What is ranked: the bilevel answer.** The answer of a bilevel problem is λ; its value is
F(λ) = f(θ*(λ), λ) and the deployed model is θ*(λ) re-trained at λ
(blobench/execution/metrics.py: ``restart_*``). Rows are ranked on the primary held-out
metric of θ*(λ) — unless the problem declares that the algorithm's own θ is the deployed
model (``own_theta_deployed``, MAML-type problems) — and time / oracle calls to target are
measured on F(λ). The metrics of the algorithm's own θ stay as their own columns: the
difference is the implicit-bias story.

**Time to target** (:mod:`blobench.reporting.target`): the solver time until a cell's F(λ)
first came within half of the typical decrease from λ₀ on its problem instance — target =
F(λ₀) − ½ · the median final decrease of the ok configurations that decreased F; robust to
one outlier and to transient dips, and reached by the methods that make typical progress.

The names below are this module's public API (tests, the CLI and the site import them here).
"""

from __future__ import annotations

from blobench.reporting.compare import COMPARE_COLUMNS, write_compare
from blobench.reporting.pages import INDEX_WINNERS, write_leaderboard
from blobench.reporting.tables import (
    BIAS_COLUMNS,
    COLUMNS,
    Ranking,
    aggregate,
    informative_columns,
    markdown_table,
    summary_rank_table,
)
from blobench.reporting.target import TARGET_FRACTION, add_time_to_target

__all__ = ["BIAS_COLUMNS", "COLUMNS", "COMPARE_COLUMNS", "INDEX_WINNERS", "TARGET_FRACTION",
           "Ranking", "add_time_to_target", "aggregate", "informative_columns",
           "markdown_table", "summary_rank_table", "write_compare", "write_leaderboard"]
