"""Leaderboard figures (matplotlib, Agg backend): one PNG per figure per problem.

Every figure names the problem in its title, labels its axes in words with units, colours
configurations by algorithm family (one hue per family, shades within it) with a line style
per member of a family, and lists the legend in rank order (:class:`FigureStyle`).

- ``<stem>-outer_loss.png`` / ``<stem>-primary.png``: a metric of the trace against solver
  time, per configuration the median over seeds with a 20–80 % band (each seed's trace held
  constant between evaluations, on a common time grid; log time axis when it spans > 20×).
- ``<stem>-calls.png``: the same against cumulative oracle calls.
- ``<stem>-memory.png``: the algorithm's peak memory against the unroll length / inner steps
  for algorithms run at ≥ 2 lengths; else one bar per configuration.
- ``<stem>-pareto.png``: final ranked metric against solver time, Pareto front drawn.
- ``<stem>-bias.png``: implicit bias — distance of θ to the min-norm inner solution over steps
  (or ‖θ − θ₀‖), distance of λ to the min-norm outer solution (or ‖λ − λ₀‖), and the final
  cold-restart gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

GRID_POINTS = 60
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 3))]
#: values beyond this magnitude (a run blowing up) are not drawn; the status tables show them
HUGE = 1e30


@dataclass
class FigureStyle:
    """Rank order, family of each configuration and the page title, shared by its figures."""

    order: list[str]
    families: dict[str, str]
    title: str
    colors: dict[str, Any] = field(init=False)
    styles: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        fams = sorted({self.families.get(lab, "") for lab in self.order})
        base = plt.get_cmap("tab10")
        self.colors, self.styles = {}, {}
        for f_idx, fam in enumerate(fams):
            members = [lab for lab in self.order if self.families.get(lab, "") == fam]
            rgb = np.array(base(f_idx % 10)[:3])
            for m_idx, lab in enumerate(members):
                shade = 0.55 * m_idx / max(len(members) - 1, 1)  # mix toward white / black
                mix = np.ones(3) if m_idx % 2 else np.zeros(3)
                self.colors[lab] = tuple((1 - shade) * rgb + shade * mix)
                self.styles[lab] = LINESTYLES[m_idx % len(LINESTYLES)]

    def sort(self, labels: Any) -> list[str]:
        rank = {lab: i for i, lab in enumerate(self.order)}
        return sorted(labels, key=lambda lab: (rank.get(lab, len(rank)), lab))

    def legend_label(self, label: str) -> str:
        fam = self.families.get(label, "")
        return f"{self.order.index(label) + 1}. {label}" + (f" [{fam}]" if fam else "") \
            if label in self.order else label

    def rank_label(self, label: str) -> str:
        """The configuration's rank alone (the figure's legend names it): a tick label that
        still fits when 30 configurations share a narrow panel."""
        return str(self.order.index(label) + 1) if label in self.order else label


def _legend(ax: Any, n: int) -> None:
    if n > 4:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False,
                  title="rank. configuration [family]", title_fontsize=7)
    elif n:
        ax.legend(fontsize=8)


def _log_if_wide(ax: Any, values: np.ndarray, axis: str = "y", bounded: bool = False) -> None:
    """Log scale when positive values span > 100× (never for a metric bounded in [0, 1])."""
    v = values[np.isfinite(values) & (np.abs(values) < HUGE)]
    if not len(v) or bounded:
        return
    lo, hi = float(v.min()), float(v.max())
    if lo > 0 and hi / lo > 100:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _bounded(metric: str) -> bool:
    return "accuracy" in metric or "cosine" in metric


def _on_scale(peaks: dict[str, float], factor: float = 1e6) -> tuple[set[str], list[str]]:
    """Labels whose largest value is within ``factor`` × the median of the largest values;
    the others (a run blowing up) are left out of the axes and named in the title."""
    finite = {k: v for k, v in peaks.items() if np.isfinite(v) and abs(v) < HUGE}
    if not finite:
        return set(), sorted(peaks)
    ref = float(np.median(np.abs(list(finite.values())))) or 1.0
    keep = {k for k, v in finite.items() if abs(v) <= factor * ref}
    return keep, sorted(set(peaks) - keep)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def band_over_seeds(traces: pd.DataFrame, metric: str, x: str = "seconds"
                    ) -> dict[str, pd.DataFrame]:
    """Per label: x grid, median and 20/80 % quantiles of ``metric`` over seeds."""
    out = {}
    for label, group in traces.groupby("label", sort=True):
        group = group[np.isfinite(pd.to_numeric(group[metric], errors="coerce"))]
        if group.empty:
            continue
        xmax = group[x].max()
        grid = np.linspace(0.0, xmax, GRID_POINTS) if xmax > 0 else np.array([0.0])
        curves = []
        for _, seed in group.groupby("seed"):
            seed = seed.sort_values(x)
            idx = np.searchsorted(seed[x].to_numpy(), grid, side="right") - 1
            vals = seed[metric].to_numpy(dtype=float)[np.clip(idx, 0, None)]
            vals[(idx < 0) | ~(np.abs(vals) < HUGE)] = np.nan
            curves.append(vals)
        arr = np.vstack(curves)
        out[label] = pd.DataFrame({x: grid, "median": nanquantile_columns(arr, 0.5),
                                   "low": nanquantile_columns(arr, 0.2),
                                   "high": nanquantile_columns(arr, 0.8)})
    return out


def nanquantile_columns(arr: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each column of ``arr`` ignoring NaN (NaN where a column has no
    value), linear interpolation between order statistics — ``np.nanquantile(arr, q, 0)``
    vectorized: numpy's loops over the columns in Python (≈ 8 CPU-s per site page of 30
    configurations, most of the site's cost)."""
    ordered = np.sort(arr, axis=0)  # NaN last
    n = np.sum(~np.isnan(arr), axis=0)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    cols = np.arange(arr.shape[1])
    low, high = ordered[lo, cols], ordered[hi, cols]
    with np.errstate(invalid="ignore"):
        values = low + (pos - lo) * (high - low)
    return np.where(n > 0, values, np.nan)


def metric_vs_time(traces: pd.DataFrame, metric: str, ylabel: str, path: Path,
                   style: FigureStyle, target: float | None = None) -> Path | None:
    """``metric`` against solver time; ``target``: the time-to-target level, drawn."""
    return _band_plot(traces, metric, ylabel, path, "seconds", "solver time (s)", style,
                      target)


def metric_vs_calls(traces: pd.DataFrame, metric: str, ylabel: str, path: Path,
                    style: FigureStyle, target: float | None = None) -> Path | None:
    """``metric`` against cumulative oracle calls (``calls_total`` of the trace), so that
    machine speed does not decide the comparison alone."""
    if "calls_total" not in traces or not (traces["calls_total"] > 0).any():
        return None
    return _band_plot(traces, metric, ylabel, path, "calls_total",
                      "oracle calls (gradients + Hessian- and Jacobian-vector products)", style,
                      target)


def _band_plot(traces: pd.DataFrame, metric: str, ylabel: str, path: Path, x: str,
               xlabel: str, style: FigureStyle, target: float | None = None) -> Path | None:
    """``metric`` against the trace column ``x``: median over seeds with the 20–80 % band,
    diverging runs left off the axes (named in the title); the figure grows with the legend
    (one line per configuration); ``target`` is drawn as a dotted horizontal line."""
    bands = band_over_seeds(traces, metric, x=x)
    if not bands:
        return None
    keep, off = _on_scale({k: float(np.nanmax(b["high"].to_numpy())) if b["high"].notna().any()
                           else np.nan for k, b in bands.items()})
    labels = style.sort(keep)
    fig, ax = plt.subplots(figsize=(10 if len(labels) > 4 else 6.5,
                                    max(4.4, 0.16 * len(labels) + 1.0)))
    allv = []
    values = traces[x].to_numpy(dtype=float)
    pos = values[values > 0]
    log_x = bool(len(pos) and pos.max() / pos.min() > 20)
    for label in labels:
        b = bands[label]
        if log_x:
            b = b[b[x] >= pos.min()]
        ax.plot(b[x], b["median"], color=style.colors.get(label), label=style.legend_label(label),
                linestyle=style.styles.get(label, "-"), linewidth=1.4)
        ax.fill_between(b[x], b["low"], b["high"], color=style.colors.get(label), alpha=0.15,
                        linewidth=0)
        allv.append(b[["median", "low", "high"]].to_numpy().ravel())
    if target is not None and np.isfinite(target):
        ax.axhline(target, color="black", linestyle=":", linewidth=1.0,
                   label="target (time to target)")
    if allv:
        _log_if_wide(ax, np.concatenate(allv), bounded=_bounded(metric))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel + (" — log scale" if log_x else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{style.title}: {ylabel} — median over seeds, 20–80 % band"
                 + (f"\noff scale (diverging): {', '.join(off)}" if off else ""), fontsize=9)
    _legend(ax, len(labels))
    return _save(fig, path)


MEMORY_LABEL = {"peak_tensor_mib": "algorithm peak: live tensors of one outer step (MiB)",
                "peak_memory_mib": "RSS above baseline (MiB)"}


def memory_vs_steps(final: pd.DataFrame, memory_col: str, path: Path, style: FigureStyle
                    ) -> Path | None:
    """The algorithm's peak memory against the unroll length (``algorithm.inner_steps``) for
    algorithms run at ≥ 2 lengths; without any, one bar per configuration (rank order)."""
    if memory_col not in final or not final[memory_col].notna().any():
        return None
    data = final[final[memory_col].notna()].copy()
    ylabel = MEMORY_LABEL.get(memory_col, memory_col)
    steps = "algorithm.inner_steps"
    multi = []
    if steps in data:
        counts = data[data[steps].notna()].groupby("algorithm")[steps].nunique()
        multi = sorted(counts[counts >= 2].index)
    if multi:
        fig, ax = plt.subplots(figsize=(8.5, 4.4))
        for name in multi:
            rows = data[data["algorithm"] == name]
            curve = rows.groupby(steps)[memory_col].median().sort_index()
            first = style.sort(rows["label"].unique())[0]
            ax.plot(curve.index.astype(float), curve.values, marker="o",
                    color=style.colors.get(first), linestyle=style.styles.get(first, "-"),
                    label=name)
        if data[steps].max() / max(data[steps].min(), 1) > 20:
            ax.set_xscale("log")
        ax.set_xlabel("inner steps T (unroll length)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{style.title}: peak memory vs unroll length (median over seeds)",
                     fontsize=9)
        _legend(ax, len(multi))
        return _save(fig, path)
    med = data.groupby("label")[memory_col].median()
    labels = style.sort(med.index)
    fig, ax = plt.subplots(figsize=(8.5, 0.3 * len(labels) + 1.5))
    ax.barh(range(len(labels)), [med[lab] for lab in labels],
            color=[style.colors.get(lab) for lab in labels])
    ax.set_yticks(range(len(labels)), [style.legend_label(lab) for lab in labels], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    ax.set_title(f"{style.title}: peak memory per configuration (one T each; median over "
                 "seeds)", fontsize=9)
    return _save(fig, path)


def pareto(table: pd.DataFrame, column: str, header: str, higher: bool, path: Path,
           style: FigureStyle) -> Path | None:
    """Mean final ranked metric vs mean solver time per configuration (95 % intervals), front
    highlighted."""
    data = table[table[f"{column}_mean"].notna() & table["solver_seconds_mean"].notna()]
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(10 if len(data) > 4 else 6.5, 4.4))
    for _, row in data.iterrows():
        lab = row["algorithm"]
        ax.errorbar(row["solver_seconds_mean"], row[f"{column}_mean"],
                    xerr=np.nan_to_num(row["solver_seconds_ci"]),
                    yerr=np.nan_to_num(row[f"{column}_ci"]), fmt="o", capsize=2,
                    color=style.colors.get(lab), label=style.legend_label(lab))
    front, best = [], None
    for _, row in data.sort_values("solver_seconds_mean").iterrows():
        v = row[f"{column}_mean"]
        if best is None or (v > best if higher else v < best):
            best = v
            front.append((row["solver_seconds_mean"], v))
    if len(front) > 1:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="black", alpha=0.5, linewidth=1,
                label="Pareto front")
    _log_if_wide(ax, data[f"{column}_mean"].to_numpy(dtype=float), bounded=_bounded(column))
    _log_if_wide(ax, data["solver_seconds_mean"].to_numpy(dtype=float), axis="x")
    ax.set_xlabel("solver time (s), mean over seeds")
    ax.set_ylabel(header)
    ax.set_title(f"{style.title}: final {header} vs solver time (bars: 95 % intervals)",
                 fontsize=9)
    _legend(ax, len(data) + 1)
    return _save(fig, path)


def implicit_bias(traces: pd.DataFrame, final: pd.DataFrame, path: Path, style: FigureStyle
                  ) -> Path | None:
    """Three panels: θ to min-norm inner solution, λ to min-norm outer, cold-restart gap."""
    theta_col = next((c for c in ("min_norm_dist", "theta_displacement") if c in traces
                      and traces[c].notna().any()), None)
    lam_col = next((c for c in ("lam_min_norm_dist", "lam_displacement") if c in traces
                    and traces[c].notna().any()), None)
    if theta_col is None and lam_col is None:
        return None
    labels = style.sort(traces["label"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    titles = {"min_norm_dist": "‖θ − θ_min-norm(λ)‖", "theta_displacement": "‖θ − θ₀‖",
              "lam_min_norm_dist": "‖λ − λ_min-norm‖", "lam_displacement": "‖λ − λ₀‖"}
    for ax, col in zip(axes[:2], (theta_col, lam_col), strict=True):
        if col is None:
            ax.set_visible(False)
            continue
        meds = {label: traces[traces["label"] == label].groupby("step")[col].median()
                for label in labels}
        keep, off = _on_scale({k: float(m.max()) if m.notna().any() else np.nan
                               for k, m in meds.items()})
        allv = []
        for label in labels:
            med = meds[label]
            if label in keep and med.notna().any():
                ax.plot(med.index, med.values, color=style.colors.get(label),
                        label=style.legend_label(label), linestyle=style.styles.get(label, "-"))
                allv.append(med.to_numpy(dtype=float))
        if allv:
            v = np.concatenate(allv)
            v = v[np.isfinite(v) & (v > 0)]
            if len(v) and v.max() / v.min() > 100:
                ax.set_yscale("symlog", linthresh=max(v.min(), 1e-12))
        ax.set_xlabel("outer step")
        ax.set_ylabel(titles[col])
        ax.set_title(titles[col] + " over outer steps (median over seeds)"
                     + (f"\noff scale: {', '.join(off)}" if off else ""), fontsize=9)
    ax = axes[2]
    if "cold_restart_gap" in final and final["cold_restart_gap"].notna().any():
        gaps = final.groupby("label")["cold_restart_gap"].apply(lambda v: v.abs().max())
        keep, off = _on_scale(gaps.to_dict())
        data = final[final["cold_restart_gap"].notna() & final["label"].isin(keep)]
        med = data.groupby("label")["cold_restart_gap"].median()
        order = style.sort(med.index)
        ax.barh(range(len(order)), [med[lab] for lab in order],
                color=[style.colors.get(lab) for lab in order])
        ax.set_yticks(range(len(order)), [style.rank_label(lab) for lab in order])
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("F(λ) − f(θ, λ) at the final λ (median over seeds)")
        ax.set_ylabel("configuration (rank, as in the legend)")
        ax.set_title("cold-restart gap at the final λ (> 0: θ carries outer information)"
                     + (f"\noff scale: {', '.join(off)}" if off else ""), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    else:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels() if theta_col else \
        axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(len(names), 1)), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{style.title}: implicit bias", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * (len(names) // 4), 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
