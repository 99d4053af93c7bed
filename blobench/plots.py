"""Leaderboard figures (seaborn on matplotlib's Agg backend): one PNG per figure per problem.

- ``<stem>-outer_loss.png`` / ``<stem>-primary.png``: a metric of the trace against solver
  time, per algorithm configuration the median over seeds with a 20–80 % band (each seed's
  trace held constant between evaluations, on a common time grid).
- ``<stem>-memory.png``: peak memory against the unroll length / inner solver steps.
- ``<stem>-pareto.png``: final primary metric against solver time, Pareto front drawn.
- ``<stem>-bias.png``: implicit bias — distance of θ to the min-norm inner solution over steps
  (or ‖θ − θ₀‖), distance of λ to the min-norm outer solution (or ‖λ − λ₀‖), and the final
  cold-restart gap, warm-started configurations drawn solid, cold-started dashed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

GRID_POINTS = 60


def _palette(labels: list[str]) -> dict[str, Any]:
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colors, strict=True))


#: values beyond this magnitude (a run blowing up) are not drawn; the status tables show them
HUGE = 1e30


def _log_if_wide(ax: Any, values: np.ndarray, axis: str = "y") -> None:
    v = values[np.isfinite(values) & (np.abs(values) < HUGE)]
    if not len(v):
        return
    lo, hi = float(v.min()), float(v.max())
    if lo > 0 and hi / lo > 100:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        (ax.set_ylim if axis == "y" else ax.set_xlim)(lo / 1.5, hi * 1.5)
    elif axis == "y" and lo > 0 and hi / lo > 10:
        ax.set_yscale("log")


def _on_scale(peaks: dict[str, float], factor: float = 1e6) -> tuple[set[str], list[str]]:
    """Labels whose largest value is within ``factor`` × the median of the largest values;
    the others (a run blowing up) are left out of the axes and named in the title."""
    finite = {k: v for k, v in peaks.items() if np.isfinite(v) and abs(v) < HUGE}
    if not finite:
        return set(), sorted(peaks)
    ref = float(np.median(np.abs(list(finite.values())))) or 1.0
    keep = {k for k, v in finite.items() if abs(v) <= factor * ref}
    return keep, sorted(set(peaks) - keep)


def _legend(ax: Any, n: int) -> None:
    if n > 4:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    elif n:
        ax.legend(fontsize=8)


def _is_warm(traces: pd.DataFrame, label: str) -> bool | None:
    rows = traces[traces["label"] == label]
    if "warm_start" not in rows or rows["warm_start"].isna().all():
        return None
    return bool(rows["warm_start"].iloc[0])


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
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[label] = pd.DataFrame({
                    x: grid, "median": np.nanmedian(arr, 0),
                    "low": np.nanquantile(arr, 0.2, 0), "high": np.nanquantile(arr, 0.8, 0)})
    return out


def metric_vs_time(traces: pd.DataFrame, metric: str, title: str, path: Path) -> Path | None:
    return _band_plot(traces, metric, title, path, "seconds", "solver time (s)",
                      note_log=True)


def _band_plot(traces: pd.DataFrame, metric: str, title: str, path: Path, x: str,
               xlabel: str, note_log: bool = False) -> Path | None:
    """``metric`` against the trace column ``x``: median over seeds with the 20–80 % band,
    warm start solid and cold start dashed, diverging runs left off the axes."""
    bands = band_over_seeds(traces, metric, x=x)
    if not bands:
        return None
    keep, off = _on_scale({k: float(np.nanmax(b["high"].to_numpy())) if b["high"].notna().any()
                           else np.nan for k, b in bands.items()})
    labels = sorted(keep)
    colors = _palette(sorted(bands))
    fig, ax = plt.subplots(figsize=(8.5 if len(labels) > 4 else 6.5, 4.2))
    allv = []
    for label in labels:
        b = bands[label]
        warm = _is_warm(traces, label)
        ax.plot(b[x], b["median"], color=colors[label], label=label,
                linestyle="--" if warm is False else "-")
        ax.fill_between(b[x], b["low"], b["high"], color=colors[label], alpha=0.2,
                        linewidth=0)
        allv.append(b[["median", "low", "high"]].to_numpy().ravel())
    if allv:
        _log_if_wide(ax, np.concatenate(allv))
    values = traces[x].to_numpy(dtype=float)
    pos = values[values > 0]
    if len(pos) and pos.max() / pos.min() > 20:
        ax.set_xscale("symlog", linthresh=float(pos.min()))
        ax.set_xlim(left=0.0)
    ax.set_xlabel(xlabel + (" (log beyond the first evaluation)"
                            if note_log and ax.get_xscale() == "symlog" else ""))
    ax.set_ylabel(metric)
    ax.set_title(title + " — median over seeds, 20–80 % band"
                 + (f"\noff scale (diverging): {', '.join(off)}" if off else ""), fontsize=9)
    _legend(ax, len(labels))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def memory_vs_steps(final: pd.DataFrame, memory_col: str, path: Path) -> Path | None:
    """Peak memory against the unroll length (``algorithm.inner_steps``) per algorithm."""
    if "algorithm.inner_steps" not in final or memory_col not in final:
        return None
    data = final[final["algorithm.inner_steps"].notna() & final[memory_col].notna()].copy()
    if data.empty:
        return None
    data["inner steps T"] = data["algorithm.inner_steps"].astype(float)
    data["start"] = np.where(data.get("algorithm.warm_start", True).astype(bool), "warm", "cold")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=data, x="inner steps T", y=memory_col, hue="algorithm", style="start",
                 markers=True, errorbar=None, ax=ax)
    if data["inner steps T"].nunique() > 2 and data["inner steps T"].max() / max(
            data["inner steps T"].min(), 1) > 20:
        ax.set_xscale("log")
    ax.set_ylabel({"peak_tensor_mib": "peak live tensor memory per step (MiB)",
                   "peak_memory_mib": "peak memory (MiB)"}.get(memory_col, memory_col))
    ax.set_title("peak memory vs unroll length / inner steps", fontsize=10)
    _legend(ax, data["algorithm"].nunique() + 2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto(table: pd.DataFrame, primary: str, higher: bool, path: Path) -> Path | None:
    """Mean final primary metric vs mean solver time per configuration, front highlighted."""
    data = table[table[f"{primary}_mean"].notna() & table["solver_seconds_mean"].notna()]
    if data.empty:
        return None
    labels = list(data["algorithm"])
    colors = _palette(sorted(labels))
    fig, ax = plt.subplots(figsize=(8.5 if len(labels) > 4 else 6.5, 4.2))
    for _, row in data.iterrows():
        ax.errorbar(row["solver_seconds_mean"], row[f"{primary}_mean"],
                    xerr=row["solver_seconds_std"], yerr=row[f"{primary}_std"], fmt="o",
                    color=colors[row["algorithm"]], label=row["algorithm"], capsize=2)
    order = data.sort_values("solver_seconds_mean")
    front, best = [], None
    for _, row in order.iterrows():
        v = row[f"{primary}_mean"]
        if best is None or (v > best if higher else v < best):
            best = v
            front.append((row["solver_seconds_mean"], v))
    if len(front) > 1:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="black", alpha=0.5, linewidth=1,
                label="Pareto front")
    _log_if_wide(ax, data[f"{primary}_mean"].to_numpy(dtype=float))
    _log_if_wide(ax, data["solver_seconds_mean"].to_numpy(dtype=float), axis="x")
    ax.set_xlabel("solver time (s), mean over seeds")
    ax.set_ylabel(f"final {primary} ({'higher' if higher else 'lower'} is better)")
    ax.set_title("accuracy vs time (error bars: std over seeds)", fontsize=10)
    _legend(ax, len(labels) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def implicit_bias(traces: pd.DataFrame, final: pd.DataFrame, path: Path) -> Path | None:
    """Three panels: θ to min-norm inner solution, λ to min-norm outer, cold-restart gap."""
    theta_col = next((c for c in ("min_norm_dist", "theta_displacement") if c in traces
                      and traces[c].notna().any()), None)
    lam_col = next((c for c in ("lam_min_norm_dist", "lam_displacement") if c in traces
                    and traces[c].notna().any()), None)
    if theta_col is None and lam_col is None:
        return None
    labels = sorted(traces["label"].unique())
    colors = _palette(labels)
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
                warm = _is_warm(traces, label)
                ax.plot(med.index, med.values, color=colors[label], label=label,
                        linestyle="--" if warm is False else "-")
                allv.append(med.to_numpy(dtype=float))
        if allv:
            v = np.concatenate(allv)
            v = v[np.isfinite(v) & (v > 0)]
            if len(v) and v.max() / v.min() > 100:
                ax.set_yscale("symlog", linthresh=max(v.min(), 1e-12))
        ax.set_xlabel("outer step")
        ax.set_title(titles[col] + " over steps (median; dashed = cold start)"
                     + (f"\noff scale: {', '.join(off)}" if off else ""), fontsize=9)
    ax = axes[2]
    if "cold_restart_gap" in final and final["cold_restart_gap"].notna().any():
        gaps = final.groupby("label")["cold_restart_gap"].apply(lambda v: v.abs().max())
        keep, off = _on_scale(gaps.to_dict())
        data = final[final["cold_restart_gap"].notna() & final["label"].isin(keep)]
        sns.barplot(data=data, y="label", x="cold_restart_gap", hue="label", palette=colors,
                    errorbar=("pi", 60), ax=ax, legend=False, order=sorted(data["label"].unique()))
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("f(θ_restart, λ) − f(θ, λ) at the final λ")
        ax.set_ylabel("")
        ax.set_title("cold-restart gap at the final λ (> 0: θ carries outer information)"
                     + (f"\noff scale: {', '.join(off)}" if off else ""), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    else:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels() if theta_col else \
        axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(len(names), 1)), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06 + 0.04 * (len(names) // 4), 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def metric_vs_calls(traces: pd.DataFrame, metric: str, title: str, path: Path
                    ) -> Path | None:
    """``metric`` against cumulative oracle calls (gradients, Hessian-/Jacobian-vector
    products, ...: ``calls_total`` of the trace), so that machine speed does not decide the
    comparison alone. Median over seeds with the 20–80 % band; diverging runs left off."""
    if "calls_total" not in traces or not (traces["calls_total"] > 0).any():
        return None
    return _band_plot(traces, metric, title, path, "calls_total",
                      "oracle calls (gradients + HVPs + JVPs + ...)")
