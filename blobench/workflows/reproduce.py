"""``blobench reproduce NAME``: re-derive the claims of blobench's two seed papers.

Each reproduction is a registered set of *experiments*: (problems, algorithms, seeds, budget)
expanded by :func:`blobench.execution.harness.plan` into ordinary cells, run by
:func:`blobench.execution.runner.run_cells` into the ordinary results store (cached: a rerun only
runs what
is missing), then a report step reads the records back, checks every claim against a stated
numeric criterion and writes ``<out>/<name>.md`` with its figures (``<out>/<name>-*.png``).

- ``vicol2022``: Vicol, Lorraine, Pedregosa, Duvenaud, Grosse, "On Implicit Bias in
  Overparameterized Bilevel Optimization", ICML 2022 (claims 1–4 of issue 9).
- ``mehra2021``: Mehra & Hamm, "Penalty Method for Inversion-Free Deep Bilevel Optimization",
  ACML 2021 (claims 1–3).

Sizes: ``default`` (a laptop CPU, minutes), ``full`` (``--full``: the problems' full size, more
seeds and steps, closer to the papers) and ``smoke`` (the tests: only the mathematically
guaranteed claims, fewer steps).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.contracts.errors import UserError
from blobench.execution.harness import Cell, cell_version, plan
from blobench.execution.registry import Registry, get_registry
from blobench.execution.runner import run_cells
from blobench.execution.store import ResultsStore
from blobench.reporting.results import flatten

DEFAULT_OUT = "leaderboards/reproductions"
SIZES = ("smoke", "default", "full")
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


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}"


def _table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v)
                                       for v in row) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ running
def _run(registry: Registry, experiments: list[Experiment], store: ResultsStore, size: str,
         seeds: list[int], n_jobs: int, progress: bool, isolate: bool
         ) -> dict[str, pd.DataFrame]:
    """Run every experiment's cells; per experiment, one row per cell (with its trace)."""
    planned: dict[str, list[Cell]] = {}
    problem_size = "full" if size == "full" else "quick"
    scale = 3 if size == "full" else 1
    for exp in experiments:
        if size not in exp.sizes:
            continue
        cells, _ = plan(registry, exp.problems, exp.algorithms, seeds, size=problem_size,
                        steps=exp.steps * scale, eval_every=exp.eval_every * scale)
        planned[exp.key] = cells
    every = [c for cells in planned.values() for c in cells]
    summary = run_cells(registry, every, store, n_jobs=n_jobs, progress=progress,
                        isolate=isolate)
    if summary.failures:
        print(summary.text())
    frames = {}
    for key, cells in planned.items():
        rows = []
        for cell in cells:
            record = store.load(cell.key(cell_version(registry, cell)))
            if record is None:
                continue
            row = flatten(record)
            row["trace"] = record["trace"]
            rows.append(row)
        frames[key] = pd.DataFrame(rows)
    return frames


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"] if not frame.empty else frame


def _trace(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    for _, r in frame.iterrows():
        for t in r["trace"]:
            if metric in t:
                rows.append({"label": r["label"], "seed": r["seed"], "step": t["step"],
                             "seconds": t["seconds"], metric: t[metric]})
    return pd.DataFrame(rows)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str, stem: str, report: Report) -> None:
    path = out / f"{stem}-{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    report.figures.append(path.name)


# ============================================================== vicol2022
T1 = "overparam_linreg[setting=inner_overparam,dim_lambda=10,n_outer=3]"
T3 = "overparam_linreg[setting=outer_overparam]"
ADAM = "outer_optimizer=adam,outer_lr=0.05"
K_GRID = [0, 2, 10, 50]
#: ConvNet-3 distillation on Fashion-MNIST (Table 3 at ConvNet scale): default = ConvNet-3's
#: structure (3 blocks, instance norm, average pooling) at width 16 on 500 real images (CPU
#: minutes); full = the problem's full size (width 128, 10,000 real images, mini-batches 256)
CONVNET = {"default": "distill_convnet[per_class=[1,10],width=16,depth=3,n_train=500,"
                      "n_test=1000]",
           "full": "distill_convnet[per_class=[1,10]]"}
#: warm: T = 10 steps continued across outer steps; cold: T = 20 from θ₀, the re-train's budget
CONVNET_ALGOS = ["unrolled[inner_steps=10,warm_start=true]",
                 "unrolled[inner_steps=20,warm_start=false]"]


def vicol_experiments() -> list[Experiment]:
    ks = ",".join(map(str, K_GRID))
    kt = ",".join(str(k + 1) for k in K_GRID)
    return [
        Experiment("c1", [T1], ["exact[warm_start=false,inner_steps=200]"], 60, 10),
        Experiment("c2", ["distill_linear[n_synthetic=1]"],
                   [f"unrolled[inner_steps=1,warm_start=[true,false],{ADAM}]"], 100, 10),
        Experiment("c3_linear", ["distill_linear[n_synthetic=[1,10]]"],
                   [f"unrolled[inner_steps=1,warm_start=true,{ADAM}]",
                    f"unrolled[inner_steps=50,warm_start=false,{ADAM}]"], 100, 20,
                   ("default", "full")),
        Experiment("c3_digits", ["distill_digits[per_class=[1,10]]"],
                   ["unrolled[inner_steps=10,warm_start=true]",
                    "unrolled[inner_steps=50,warm_start=false]"], 100, 20, ("default", "full")),
        *[Experiment("c3_convnet", [CONVNET[size]], CONVNET_ALGOS, 40, 20, (size,))
          for size in ("default", "full")],
        Experiment("c4", [T3], ["exact[warm_start=false,inner_steps=150]",
                                f"neumann[terms=[{ks}],warm_start=false,inner_steps=150]",
                                f"truncated[truncation=[{kt}],inner_steps=150]"], 60, 10,
                   ("default", "full")),
    ]


def vicol_report(frames: dict[str, pd.DataFrame], out: Path, stem: str) -> Report:
    plt = _plt()
    rep = Report()
    # ---- claim 1
    if "c1" in frames:
        f = _ok(frames["c1"])
        lam_rel = (f["lam_min_norm_dist"] / f["lam_displacement"]).max()
        th_rel = (f["min_norm_dist"] / f["theta_displacement"]).max()
        ok = [lam_rel < 1e-3, th_rel < 1e-3]
        rep.verdicts.append(Verdict(
            "1. cold-start + exact hypergradient → min-displacement outer solution and "
            "min-‖θ − θ₀‖ inner solution",
            "max over seeds of ‖λ_T − u_mn‖/‖λ_T − λ₀‖ < 1e-3 and "
            "‖θ_T − w_cs(λ)‖/‖θ_T − θ₀‖ < 1e-3",
            f"λ: {_fmt(lam_rel)}, θ: {_fmt(th_rel)} ({len(f)} seeds)",
            REPRODUCED if all(ok) else PARTIAL if any(ok) else NOT,
            "exact convergence (theory, sec. 4)"))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for metric, ls in (("lam_min_norm_dist", "-"), ("min_norm_dist", "--")):
            tr = _trace(f, metric)
            for seed, g in tr.groupby("seed"):
                ax.semilogy(g["step"], g[metric].clip(lower=1e-17), ls,
                            label=f"{metric} (seed {seed})")
        ax.set_xlabel("outer step")
        ax.set_ylabel("distance")
        ax.set_title("Claim 1: cold-start exact BLO on T1 (quadratic)")
        ax.legend(fontsize=7)
        _save(fig, out, "claim1", stem, rep)
        rep.sections.append(
            "## Claim 1 — cold start finds the minimum-displacement solutions\n\n"
            f"Problem `{T1}` (T1: ½‖Aθ − (Bλ + b)‖² inner with A 10×40, outer ½‖Cθ − c‖² with "
            "C 3×40 and λ ∈ ℝ¹⁰: both levels underdetermined), algorithm "
            "`exact[warm_start=false,inner_steps=200]`. `lam_min_norm_dist` = ‖λ − u_mn‖ with "
            "u_mn = λ₀ + J⁺(c − C w_cs(λ₀)), `min_norm_dist` = ‖θ − w_cs(λ)‖ with "
            "w_cs(λ) = θ₀ + A⁺(Bλ + b − Aθ₀) (closed forms).\n\n"
            + _table(f[["seed", "outer_loss", "lam_min_norm_dist", "lam_displacement",
                        "min_norm_dist", "theta_displacement"]])
            + f"\n\n![claim 1]({stem}-claim1.png)\n")
    # ---- claim 2
    if "c2" in frames:
        f = _ok(frames["c2"])
        warm = f[f["algorithm.warm_start"]]
        cold = f[~f["algorithm.warm_start"]]
        tr = _trace(f, "min_norm_dist")
        tr = tr[tr["step"] > 0]
        cold_max = float(tr[tr["label"].isin(cold["label"])]["min_norm_dist"].max())
        wt = tr[tr["label"].isin(warm["label"])]
        first = wt[wt["step"] == wt["step"].min()]["min_norm_dist"].mean()
        last_min = float(warm["min_norm_dist"].min())
        last_mean = float(warm["min_norm_dist"].mean())
        ok_cold, ok_warm = cold_max < 1e-8, last_min > 1e-3 and last_mean > first
        rep.verdicts.append(Verdict(
            "2. warm start = proximal best response: the inner min-norm gap grows under warm "
            "start, stays ~0 under cold start",
            "cold: max over trace ‖θ − w_cs(λ)‖ < 1e-8; warm: final gap > 1e-3 in every seed and "
            "mean final gap > mean gap at the first evaluation",
            f"cold max {_fmt(cold_max)}; warm first {_fmt(first)} → final mean "
            f"{_fmt(last_mean)} (min over seeds {_fmt(last_min)})",
            REPRODUCED if ok_cold and ok_warm else PARTIAL if ok_cold or ok_warm else NOT,
            "qualitative (sec. 5, Fig. 3)"))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for (label, seed), g in tr.groupby(["label", "seed"]):
            warm_l = "warm_start=True" in label
            ax.semilogy(g["step"], g["min_norm_dist"].clip(lower=1e-17),
                        color="C1" if warm_l else "C0",
                        label=("warm start" if warm_l else "cold start") if seed == 0 else None)
        ax.set_xlabel("outer step")
        ax.set_ylabel("‖θ − w_cs(λ)‖ (inner min-norm gap)")
        ax.set_title("Claim 2: distill_linear, n = 1, exact one-step inner solve")
        ax.legend()
        _save(fig, out, "claim2", stem, rep)
        rep.sections.append(
            "## Claim 2 — warm start acts as a proximal best response\n\n"
            "Problem `distill_linear[n_synthetic=1]` (T2: one learned point (x_s, y_s), 65 "
            "Fourier features with ‖φ(x)‖ = 1). With one synthetic point and the step 1/‖φ‖² "
            "= 1, a single inner gradient step lands exactly on the solution set: warm start "
            "gives θ_{k+1} = θ_k + φ(y_s − φᵀθ_k), the projection of θ_k onto S(λ_{k+1}) (the "
            "proximal best response, exactly); cold start gives w_cs(λ). Algorithm "
            f"`unrolled[inner_steps=1,{ADAM}]` with warm_start true / false. Because x_s moves, "
            "S(λ) rotates and the warm iterate leaves the minimum-norm solution.\n\n"
            + _table(f[["label", "seed", "min_norm_dist", "test_mse", "restart_test_mse"]])
            + f"\n\n![claim 2]({stem}-claim2.png)\n")
    # ---- claim 3
    rows = []
    for key, prob, param, metric, higher in (
            ("c3_digits", "digits (linear softmax)", "problem.per_class", "test_accuracy", True),
            ("c3_linear", "distill_linear (1-D regression)", "problem.n_synthetic", "test_mse",
             False),
            ("c3_convnet", CONVNET_SETTING, "problem.per_class", "test_accuracy", True)):
        if key not in frames:
            continue
        f = _ok(frames[key])
        for k, g in f.groupby(param):
            w = g[g["algorithm.warm_start"]]
            c = g[~g["algorithm.warm_start"]]
            sign = 1 if higher else -1
            wv, cv, rv = (w[metric].mean(), c[metric].mean(), w[f"restart_{metric}"].mean())
            n_syn = int(k) * (1 if key == "c3_linear" else 10)
            rows.append({"setting": prob, "synthetic points": n_syn, "metric": metric,
                         "cold": cv, "warm": wv, "warm + re-train": rv,
                         "warm > cold": bool(sign * (wv - cv) > 0),
                         "cold > warm+re-train": bool(sign * (cv - rv) > 0),
                         "warm > warm+re-train": bool(sign * (wv - rv) > 0)})
    convnet_rows = [r for r in rows if r["setting"] == CONVNET_SETTING]
    rows = [r for r in rows if r["setting"] != CONVNET_SETTING]
    if convnet_rows:
        _convnet_claim(pd.DataFrame(convnet_rows), out, stem, rep)
    if rows:
        t3 = pd.DataFrame(rows)
        full = (t3["warm > cold"] & t3["cold > warm+re-train"])
        verdict = REPRODUCED if full.all() else PARTIAL if (
            full.any() or t3["warm > warm+re-train"].all()) else NOT
        rep.verdicts.append(Verdict(
            "3. inner overparameterized: warm > cold > warm + re-train",
            "the ordering of the seed means holds in each setting (digits k = 1, 10 per class; "
            "distill_linear n = 1, 10)",
            f"full ordering in {int(full.sum())}/{len(t3)} settings; warm better than "
            f"warm + re-train in {int(t3['warm > warm+re-train'].sum())}/{len(t3)}",
            verdict,
            "MNIST 1 / 10 samples: cold 30.7 / 89.1, warm 90.8 / 97.5, warm + re-train "
            "12.9 / 17.1 (% test accuracy)"))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, (prob, g) in zip(axes, t3.groupby("setting", sort=False), strict=False):
            x = np.arange(len(g))
            for i, col in enumerate(("cold", "warm", "warm + re-train")):
                ax.bar(x + (i - 1) * 0.27, g[col], 0.27, label=col)
            ax.set_xticks(x, [f"{n} points" for n in g["synthetic points"]])
            ax.set_title(prob)
            ax.set_ylabel(g["metric"].iloc[0])
            if g["metric"].iloc[0] == "test_mse":
                ax.set_yscale("log")
        axes[0].legend(fontsize=8)
        _save(fig, out, "claim3", stem, rep)
        rep.sections.append(
            "## Claim 3 — the cold-restart gap (Table 3 pattern)\n\n"
            "Paper (MNIST, LeNet/MLP inner model): cold 30.7 / 89.1, warm 90.8 / 97.5, "
            "warm + re-train 12.9 / 17.1 % test accuracy for 1 / 10 synthetic samples.\n\n"
            "**Our setting differs**: scikit-learn digits (8×8) with a *linear softmax* inner "
            "model with ridge μ = 1e-2 (`distill_digits`, strongly convex inner problem, "
            "k = 1 and 10 images per class, i.e. 10 and 100 synthetic points), and the linear "
            "1-D setting `distill_linear` (n = 1 and 10 learned points, 65 Fourier features; "
            "lower test MSE is better). Warm = `unrolled[inner_steps=10,warm_start=true]` "
            f"(digits) / `unrolled[inner_steps=1,warm_start=true,{ADAM}]` (linear); cold = "
            "`unrolled[inner_steps=50,warm_start=false]` (same outer settings); warm + re-train "
            "= the harness's cold restart at the warm run's final λ (`restart_<metric>`: the "
            "exact inner solution, Newton for digits, θ₀ + Φ⁺(y_s − Φθ₀) for the linear "
            "setting). Means over seeds:\n\n" + _table(t3)
            + f"\n\n![claim 3]({stem}-claim3.png)\n")
    # ---- claim 4
    if "c4" in frames:
        f = _ok(frames["c4"])
        f = f.assign(K=[(r["algorithm.terms"] if r["algorithm"] == "neumann" else
                         r["algorithm.truncation"] - 1 if r["algorithm"] == "truncated"
                         else np.inf) for _, r in f.iterrows()])
        ex = f[f["algorithm"] == "exact"]
        scale = float(ex["lam_displacement"].mean())
        ex_rel = float((ex["lam_min_norm_dist"] / ex["lam_displacement"]).max())
        zero = float(f["cold_outer_loss"].max())
        agg = f[f["algorithm"] != "exact"].groupby(["algorithm", "K"])[
            ["lam_min_norm_dist", "cold_outer_loss"]].mean().reset_index()
        agg["relative distance"] = agg["lam_min_norm_dist"] / scale
        smallest = agg[agg["K"] == agg["K"].min()]["relative distance"].min()
        mono = all(np.all(np.diff(g.sort_values("K")["lam_min_norm_dist"].to_numpy()) < 0)
                   for _, g in agg.groupby("algorithm"))
        ok = [ex_rel < 1e-3, zero < 1e-8, smallest > 1e-2]
        rep.verdicts.append(Verdict(
            "4. outer overparameterized: the hypergradient approximation picks the solution",
            "exact: ‖λ − u_mn‖/‖λ − λ₀‖ < 1e-3; every run at zero loss (F < 1e-8); the "
            "smallest-K Neumann / truncated runs > 1e-2 relative away from u_mn; distance "
            "decreasing in K",
            f"exact {_fmt(ex_rel)}; max F {_fmt(zero)}; smallest K: {_fmt(smallest)}; "
            f"decreasing in K: {mono}",
            REPRODUCED if all(ok) and mono else PARTIAL if ok[0] and ok[1] else NOT,
            "qualitative (sec. 5, anti-distillation figure)"))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for alg, g in agg.groupby("algorithm"):
            g = g.sort_values("K")
            ax.loglog(g["K"] + 1, g["relative distance"].clip(lower=1e-16), "o-",
                      label=f"{alg} (x = K + 1 = terms + 1 / truncation)")
        ax.axhline(max(ex_rel, 1e-16), color="k", ls=":", label="exact (CG-equivalent)")
        ax.set_xlabel("K + 1")
        ax.set_ylabel("‖λ_final − u_mn‖ / ‖u_mn − λ₀‖")
        ax.set_title("Claim 4: T3 anti-distillation, all runs at zero outer loss")
        ax.legend(fontsize=7)
        _save(fig, out, "claim4", stem, rep)
        rep.sections.append(
            "## Claim 4 — the hypergradient approximation decides the outer solution\n\n"
            f"Problem `{T3}` (T3: M = 20 learnable targets on 40 Fourier features, one outer "
            "point: a 19-dimensional affine set of zero-loss λ). Cold start with 150 inner "
            "steps (converged); `exact` (dense pseudo-inverse solve, the CG limit), "
            f"`neumann[terms=K]` and `truncated[truncation=K+1]` for K in {K_GRID} (the two "
            "coincide: the last K+1 unrolled steps at the converged θ are the K-term series). "
            "Every run reaches zero outer loss; the distance to u_mn (the min-displacement "
            "solution exact hypergradients find) shrinks as K grows. The distance *between* "
            "two runs' final λ is within ± the exact run's own distance (≈ 0) of the values "
            "below, by the triangle inequality (the records hold metrics, not λ).\n\n"
            + _table(agg.rename(columns={"cold_outer_loss": "F(λ_final)"}))
            + f"\n\n![claim 4]({stem}-claim4.png)\n")
    return rep


CONVNET_SETTING = "ConvNet-3 (Fashion-MNIST)"


def _convnet_claim(t3: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    """Claim 3 at ConvNet scale: warm ≫ cold > warm + re-train (Vicol et al. 2022, Table 3)."""
    plt = _plt()
    full = t3["warm > cold"] & t3["cold > warm+re-train"]
    rep.verdicts.append(Verdict(
        "3b. Table 3 at ConvNet scale (distill_convnet, Fashion-MNIST): warm > cold > "
        "warm + re-train",
        "the ordering of the seed means of test accuracy holds at 1 and 10 images per class",
        f"full ordering in {int(full.sum())}/{len(t3)} settings; warm better than warm + "
        f"re-train in {int(t3['warm > warm+re-train'].sum())}/{len(t3)}",
        REPRODUCED if full.all() else PARTIAL if full.any() or t3[
            "warm > warm+re-train"].all() else NOT,
        "MNIST 1 / 10 samples: cold 30.7 / 89.1, warm 90.8 / 97.5, warm + re-train "
        "12.9 / 17.1 (% test accuracy)"))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = np.arange(len(t3))
    for i, col in enumerate(("cold", "warm", "warm + re-train")):
        ax.bar(x + (i - 1) * 0.27, t3[col], 0.27, label=col)
    ax.set_xticks(x, [f"{n} images" for n in t3["synthetic points"]])
    ax.set_ylabel("test accuracy")
    ax.set_title(CONVNET_SETTING)
    ax.legend(fontsize=8)
    _save(fig, out, "claim3b", stem, rep)
    rep.sections.append(
        "## Claim 3b — the Table 3 pattern at ConvNet scale\n\n"
        "Problem `distill_convnet` (λ = 10 or 100 synthetic Fashion-MNIST images, inner = a "
        "ConvNet-3: conv–instance norm–ReLU–average pooling × 3; default size at width 16 on "
        "500 real images, `--full` at width 128 on 10,000). Warm = "
        f"`{CONVNET_ALGOS[0]}`, cold = `{CONVNET_ALGOS[1]}`; warm + re-train = the "
        "harness's re-train at the warm run's final λ: a network trained from the cell's θ₀ "
        "on the synthetic images alone for the problem's fixed budget `retrain_steps` = 20 "
        "full-batch steps (the cold runs' own inner budget). Means over seeds:\n\n"
        + _table(t3) + f"\n\n![claim 3b]({stem}-claim3b.png)\n")


# ============================================================== mehra2021
GAMMAS = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
PEN_FIXED = "optimizer=sgd,inner_weight=0,multiplier_init=0,tol=0,outer_lr=1e-12,inner_steps=200"
T_GRID = [10, 20, 40, 80]
SYN_T = [1, 5, 10]
SYN_BASELINES = {"GD": "alternating", "RMD": "unrolled[warm_start=true]",
                 "ApproxGrad": "approxgrad", "Penalty": "penalty",
                 "Penalty (γ₀ = 1)": "penalty[penalty=1]"}
SYN_TOL = 1e-3


def mehra_experiments() -> list[Experiment]:
    gs = ",".join(map(str, GAMMAS))
    ts = ",".join(map(str, T_GRID))
    return [
        Experiment("p1", ["quadratic"], [f"penalty[penalty=[{gs}],{PEN_FIXED}]"], 10, 5),
        Experiment("p2", ["reweight_digits"],
                   ["penalty", "unrolled[warm_start=true]", "approxgrad", "alternating"], 100,
                   10, ("default", "full")),
        Experiment("p3", ["reweight_digits"],
                   [f"penalty[inner_steps=[{ts}]]",
                    f"unrolled[inner_steps=[{ts}],warm_start=true]"],
                   2, 1, ("default", "full")),
        Experiment("p4", ["penalty_synthetic[example=[1,2,3,4]]"],
                   [_with_t(a) for a in SYN_BASELINES.values()], 600, 50, ("default", "full")),
    ]


def _with_t(entry: str) -> str:
    """``entry`` with ``inner_steps`` swept over the paper's T ∈ {1, 5, 10}."""
    t = f"inner_steps=[{','.join(map(str, SYN_T))}]"
    return entry[:-1] + f",{t}]" if entry.endswith("]") else f"{entry}[{t}]"


def _syn_label(row: pd.Series) -> str:
    """Baseline name of a p4 record (from its algorithm and γ₀)."""
    if row["algorithm"] == "penalty":
        return "Penalty (γ₀ = 1)" if row.get("algorithm.penalty") == 1.0 else "Penalty"
    return {"alternating": "GD", "unrolled": "RMD", "approxgrad": "ApproxGrad"}[
        row["algorithm"]]


def _synthetic_report(frame: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    plt = _plt()
    f = frame.copy()
    f["method"] = f.apply(_syn_label, axis=1)
    f["T"] = f["algorithm.inner_steps"].astype(int)
    f["example"] = f["problem.example"].astype(int)
    f["final_error"] = np.where(f["status"] == "ok", f["error"], np.inf)
    worst = f.groupby(["example", "method", "T"])["final_error"].max().unstack("T")
    pen = worst.xs("Penalty", level="method")
    ok_examples = [int(e) for e in pen.index if bool((pen.loc[e] < SYN_TOL).all())]
    n_ok = len(ok_examples)
    rep.verdicts.append(Verdict(
        "4. synthetic problems: the penalty method converges to the optimum for T ∈ {1, 5, 10}",
        f"worst final ‖(λ, θ) − (λ*, θ*)‖ over seeds < {SYN_TOL:g} for every T, per example "
        "(penalty at its defaults: γ₀ = 1e-2, the paper's schedule)",
        f"converged on example(s) {', '.join(map(str, ok_examples)) or 'none'} of 1–4",
        REPRODUCED if n_ok == 4 else PARTIAL if n_ok else NOT,
        "penalty converges on all four; GD / RMD / ApproxGrad fail on the non-unique ones"))
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), sharey=True)
    tr = _trace(f[f["status"] == "ok"].assign(label=f["method"] + " T=" + f["T"].astype(str)),
                "error")
    for ax, ex in zip(axes, (1, 2, 3, 4), strict=True):
        labels = set(f[f["example"] == ex]["method"] + " T=" + f[f["example"] == ex]["T"]
                     .astype(str))
        for label, g in tr[tr["label"].isin(labels)].groupby("label"):
            if not label.endswith("T=10"):
                continue
            m = g.groupby("step")["error"].median()
            ax.semilogy(m.index, m.to_numpy(), label=label.replace(" T=10", ""))
        ax.set_title(f"example {ex}")
        ax.set_xlabel("outer step")
    axes[0].set_ylabel("‖(λ, θ) − (λ*, θ*)‖ (median, T = 10)")
    axes[0].legend(fontsize=7)
    _save(fig, out, "claim4", stem, rep)
    table = worst.reset_index()
    table.columns.name = None
    table = table.rename(columns={t: f"T={t}" for t in SYN_T})
    rep.sections.append(
        "## Claim 4 — the synthetic problems\n\n"
        "Problem `penalty_synthetic[example=1..4]` (u = λ, v = θ ∈ ℝ^10; examples 3 and 4 with "
        "a 5 × 10 Gaussian A; initialization uniform in [−5, 5]; error = ‖(λ, θ) − (λ*, θ*)‖ "
        "to the closed-form (optimistic) optimum). **Our setting differs**: the four "
        "functional forms are our reconstruction of the paper's family (see the problem's "
        "docstring), not copied from the paper; 600 outer steps. Baselines: GD = "
        "`alternating`, RMD = `unrolled[warm_start=true]`, ApproxGrad = `approxgrad`, "
        "Penalty = `penalty` at its defaults (γ₀ = 1e-2, multiplier ν, the schedule "
        "γ ← 1.1γ, ε ← 0.9ε on ‖∇h‖ < ε; gradient steps with a backtracked λ step instead of "
        "the paper's Adam — see `algorithms/penalty.py`), and `penalty[penalty=1]`. Worst "
        "final error over seeds (inf = diverged):\n\n" + _table(table)
        + "\n\nWhere it does not reproduce: in examples 2 and 4 the outer loss has negative "
        "curvature in λ − θ, so the penalized objective f + (γ/2)‖∇_θ g‖² is unbounded below "
        "for γ < ½ (example 2) or γ < 1/(2σ_min(A)²) (example 4); from γ₀ = 1e-2 the "
        "iterates diverge before the schedule can grow γ (its test ‖∇h‖ < ε never holds on "
        "a diverging run). Starting above the threshold (γ₀ = 1) converges on example 2; on "
        "example 4 the penalized problem is ill-conditioned along null(A) (no curvature "
        "from g there), and the table shows how far it gets. GD, RMD and ApproxGrad reach "
        "the optimum on the unique lower levels and stop at a non-optimistic point of S(λ) "
        "on the non-unique ones (they follow gradient descent's selection of θ).\n\n"
        f"![claim 4]({stem}-claim4.png)\n")


def mehra_report(frames: dict[str, pd.DataFrame], out: Path, stem: str) -> Report:
    plt = _plt()
    rep = Report()
    if "p1" in frames:
        f = _ok(frames["p1"])
        agg = f.groupby("algorithm.penalty")["hypergrad_rel_error"].agg(["mean", "max"])
        agg = agg.reset_index().rename(columns={"algorithm.penalty": "γ"})
        errs = agg["mean"].to_numpy()
        mono = bool(np.all(np.diff(errs) < 0))
        g = agg["γ"].to_numpy()
        slope = float(np.polyfit(np.log10(g[-3:]), np.log10(errs[-3:]), 1)[0])
        ok = [mono, float(agg["max"].iloc[-1]) < 1e-2, -1.3 < slope < -0.7]
        rep.verdicts.append(Verdict(
            "1. the penalty hypergradient → the exact one as γ grows",
            "mean relative error decreasing in γ; max error at the largest γ < 1e-2; "
            "log-log slope over the last 3 γ in (−1.3, −0.7) (error O(1/γ))",
            f"errors {', '.join(_fmt(e) for e in errs)} for γ = {', '.join(_fmt(x) for x in g)}; "
            f"slope {slope:.2f}",
            REPRODUCED if all(ok) else PARTIAL if mono else NOT,
            "∇_u f̃ → exact hypergradient as γ → ∞ (Mehra & Hamm sec. 3)"))
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.loglog(f["algorithm.penalty"], f["hypergrad_rel_error"], "o", alpha=0.5,
                  label="seeds")
        ax.loglog(g, errs, "-", label="mean")
        ax.loglog(g, errs[-1] * g[-1] / g, "k:", label="∝ 1/γ")
        ax.set_xlabel("penalty γ")
        ax.set_ylabel("‖ĥ − h‖ / ‖h‖")
        ax.set_title("Penalty-1: quadratic, θ converged on h_θ at fixed λ")
        ax.legend()
        _save(fig, out, "claim1", stem, rep)
        rep.sections.append(
            "## Claim 1 — the penalty hypergradient approaches the exact one as γ grows\n\n"
            f"Problem `quadratic` (closed-form dF/dλ), algorithm `penalty[{PEN_FIXED}]` with a "
            "fixed γ per cell (schedule off: tol = 0; no multiplier ν and no g-term, so the "
            "estimate is the pure penalty gradient ∇_λ f + γ J ∇_θ g), λ held fixed by "
            "outer_lr = 1e-12, 10 × 200 SGD steps on θ; the record's `hypergrad_rel_error` "
            "compares its last estimate with `exact_hypergradient`.\n\n" + _table(agg)
            + f"\n\n![penalty-1]({stem}-claim1.png)\n")
    if "p2" in frames:
        f = _ok(frames["p2"])
        cols = ["test_accuracy", "corrupt_downweighted", "kept_fraction", "solver_seconds",
                "peak_tensor_mib", "peak_memory_mib"]
        agg = f.groupby("label")[cols].mean().reset_index()
        by = agg.set_index("label")
        needed = ["penalty", "unrolled[warm_start=True]", "approxgrad"]
        if not all(k in by.index for k in needed):
            raise UserError("mehra2021 claim 2: some cells have no ok record; see the "
                            "failures above and rerun")
        pen = by.loc["penalty"]
        rivals = by.loc[["unrolled[warm_start=True]", "approxgrad"]]
        acc_ok = pen["test_accuracy"] >= rivals["test_accuracy"].max() - 0.01
        time_ok = pen["solver_seconds"] <= rivals["solver_seconds"].min()
        mem_ok = pen["peak_tensor_mib"] <= rivals["peak_tensor_mib"].min()
        n_ok = int(acc_ok) + int(time_ok) + int(mem_ok)
        rep.verdicts.append(Verdict(
            "2. data denoising: penalty as accurate or better at lower time and memory than "
            "unrolling (RMD) and ApproxGrad",
            "penalty test accuracy ≥ best of (RMD, ApproxGrad) − 1 point; penalty solver "
            "seconds ≤ both; penalty peak tensor memory ≤ both",
            f"accuracy {pen['test_accuracy']:.3f} vs {rivals['test_accuracy'].max():.3f} "
            f"({'ok' if acc_ok else 'no'}); time {pen['solver_seconds']:.2f} s vs "
            f"{rivals['solver_seconds'].min():.2f} s ({'ok' if time_ok else 'no'}); memory "
            f"{pen['peak_tensor_mib']:.2f} MiB vs {rivals['peak_tensor_mib'].min():.2f} MiB "
            f"({'ok' if mem_ok else 'no'})",
            REPRODUCED if n_ok == 3 else PARTIAL if n_ok else NOT,
            "MNIST 25–50 % noise: penalty ≥ RMD / ApproxGrad accuracy, faster, less memory"))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        tr = _trace(f, "test_accuracy")
        for label, g in tr.groupby("label"):
            m = g.groupby("step")[["seconds", "test_accuracy"]].mean()
            axes[0].plot(m["seconds"], m["test_accuracy"], "o-", ms=3, label=label)
        axes[0].set_xlabel("solver seconds (mean over seeds)")
        axes[0].set_ylabel("test accuracy")
        axes[0].legend(fontsize=7)
        axes[1].barh(agg["label"], agg["peak_tensor_mib"])
        axes[1].set_xlabel("peak live tensors in one step (MiB)")
        fig.suptitle("Penalty-2: reweight_digits (25 % flipped labels)")
        _save(fig, out, "claim2", stem, rep)
        rep.sections.append(
            "## Claim 2 — data denoising\n\n"
            "**Our setting differs**: scikit-learn digits (500 noisy training images, 25 % "
            "flipped labels, 200 clean validation images) and a linear softmax inner model "
            "with ridge 1e-2 (`reweight_digits`), instead of MNIST with a neural network. "
            "Algorithms at their defaults: `penalty` (T = 20, the paper's γ/ν/ε schedule, "
            "gradient steps with a backtracked λ step), "
            "`unrolled[warm_start=true]` (RMD, T = 20), `approxgrad` (T = 20, 20 warm-started "
            "solver steps), `alternating` (GD). `corrupt_downweighted` = fraction of "
            "flipped-label images with weight < ½; `kept_fraction` = fraction with weight "
            "> 0.1; `peak_tensor_mib` = live tensors in one step (replayed), `peak_memory_mib`"
            " = process RSS growth (coarse on CPU). Means over seeds:\n\n" + _table(agg)
            + f"\n\n![penalty-2]({stem}-claim2.png)\n")
    if "p3" in frames:
        f = _ok(frames["p3"])
        agg = f.groupby(["algorithm", "algorithm.inner_steps"])["peak_tensor_mib"].mean()
        agg = agg.unstack(0)
        un, pe = agg["unrolled"], agg["penalty"]
        un_growth, pe_growth = float(un.iloc[-1] / un.iloc[0]), float(pe.iloc[-1] / pe.iloc[0])
        ok = [un_growth > 2, pe_growth < 1.25, bool((pe < un).all())]
        rep.verdicts.append(Verdict(
            "3. memory of penalty vs reverse-mode unrolling as T grows",
            f"unrolled peak grows > 2× from T = {T_GRID[0]} to {T_GRID[-1]}; penalty < 1.25×; "
            "penalty below unrolled at every T",
            f"unrolled ×{un_growth:.2f}, penalty ×{pe_growth:.2f}; penalty below at every T: "
            f"{ok[2]}",
            REPRODUCED if all(ok) else PARTIAL if any(ok) else NOT,
            "RMD memory O(T·dim θ), penalty O(dim θ)"))
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for col in agg.columns:
            ax.plot(agg.index, agg[col], "o-", label=col)
        ax.set_xlabel("inner steps T")
        ax.set_ylabel("peak live tensors in one step (MiB)")
        ax.set_title("Penalty-3: memory vs T (reweight_digits)")
        ax.legend()
        _save(fig, out, "claim3", stem, rep)
        table = agg.reset_index().rename(columns={"algorithm.inner_steps": "T"})
        table.columns.name = None
        rep.sections.append(
            "## Claim 3 — memory vs inner steps T\n\n"
            "`reweight_digits`, 2 outer steps per cell, `penalty[inner_steps=T]` vs "
            "`unrolled[inner_steps=T,warm_start=true]`; peak live-tensor MiB of one step "
            "(the harness's replayed measurement; the 650-dimensional θ is small, so absolute "
            "numbers are small, the growth is the point). Means over seeds:\n\n"
            + _table(table) + f"\n\n![penalty-3]({stem}-claim3.png)\n")
    if "p4" in frames and not frames["p4"].empty:
        _synthetic_report(frames["p4"], out, stem, rep)
    return rep


@dataclass
class Reproduction:
    title: str
    citation: str
    experiments: Callable[[], list[Experiment]]
    report: Callable[[dict[str, pd.DataFrame], Path, str], Report]


REPRODUCTIONS: dict[str, Reproduction] = {
    "vicol2022": Reproduction(
        "Vicol et al. 2022 — On Implicit Bias in Overparameterized Bilevel Optimization",
        "Vicol, Lorraine, Pedregosa, Duvenaud, Grosse, ICML 2022 (arXiv 2212.14032)",
        vicol_experiments, vicol_report),
    "mehra2021": Reproduction(
        "Mehra & Hamm 2021 — Penalty Method for Inversion-Free Deep Bilevel Optimization",
        "Mehra & Hamm, ACML 2021 (arXiv 1911.03432)", mehra_experiments, mehra_report),
}


def reproduce(name: str, out: Path | str = DEFAULT_OUT, results: Path | str = "results",
              size: str = "default", n_jobs: int = 1, progress: bool = True,
              isolate: bool = True, registry: Registry | None = None,
              command: str | None = None) -> tuple[Path, list[Verdict]]:
    """Run reproduction ``name`` and write its page; returns the page and the verdicts."""
    if name not in REPRODUCTIONS:
        raise UserError(f"unknown reproduction {name!r}; valid: {', '.join(REPRODUCTIONS)}")
    if size not in SIZES:
        raise UserError(f"unknown reproduction size {size!r}; valid: {', '.join(SIZES)}")
    repro = REPRODUCTIONS[name]
    registry = registry or get_registry()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(5 if size == "full" else 3))
    t0 = time.perf_counter()
    frames = _run(registry, repro.experiments(), ResultsStore(results), size, seeds, n_jobs,
                  progress, isolate)
    stem = name if size != "full" else f"{name}-full"
    rep = repro.report(frames, out, stem)
    wall = time.perf_counter() - t0
    n_cells = sum(len(f) for f in frames.values())
    lines = [f"# Reproduction: {repro.title}", "",
             f"Paper: {repro.citation}.", "",
             f"Generated by `{command or f'blobench reproduce {name}'}` "
             f"(size {size}, seeds {seeds}, {n_cells} cells through the ordinary harness, "
             f"results store `{results}`; {wall:.0f} s wall-clock including cached cells).",
             "", "## Verdicts", "",
             "| claim | criterion | measured | paper | verdict |", "|---|---|---|---|---|"]
    for v in rep.verdicts:
        lines.append(f"| {v.claim} | {v.criterion} | {v.measured} | {v.paper} | "
                     f"**{v.verdict}** |")
    lines += ["", *rep.sections]
    page = out / f"{stem}.md"
    page.write_text("\n".join(lines) + "\n")
    return page, rep.verdicts


# -------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help=f"which reproduction: {', '.join(REPRODUCTIONS)}")
    parser.add_argument("--full", action="store_true",
                        help="the papers' scale (problems' full size, 5 seeds, 3× steps)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"where the page and figures go (default {DEFAULT_OUT})")
    parser.add_argument("--n-jobs", type=int, default=1, metavar="N",
                        help="cells run at once (each in its own process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def command(args: argparse.Namespace) -> int:
    if args.name not in REPRODUCTIONS:
        raise UserError(f"unknown reproduction {args.name!r}; valid: "
                        f"{', '.join(REPRODUCTIONS)}")
    if args.n_jobs < 1:
        raise UserError(f"--n-jobs must be >= 1, got {args.n_jobs}")
    registry = get_registry(args.plugins)
    argv = getattr(args, "argv", None)
    cmd = "blobench " + " ".join(argv) if argv else None
    page, verdicts = reproduce(args.name, args.out, args.results,
                               "full" if args.full else "default", args.n_jobs,
                               not args.no_progress, registry=registry, command=cmd)
    width = max(len(v.claim) for v in verdicts) if verdicts else 10
    for v in verdicts:
        print(f"{v.claim[:70]:<{min(width, 70)}}  {v.verdict:<15}  {v.measured}")
    print(f"wrote {page}")
    return 0
