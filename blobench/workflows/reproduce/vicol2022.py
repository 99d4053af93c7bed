"""``blobench reproduce vicol2022``: Vicol, Lorraine, Pedregosa, Duvenaud, Grosse, "On Implicit
Bias in Overparameterized Bilevel Optimization", ICML 2022 (arXiv 2212.14032).

Claims (issue 9), each with its experiment, its numeric criterion and its verdict:

1. cold start + exact hypergradient → the minimum-displacement outer solution
   u_mn = λ₀ + J⁺(c − C w_cs(λ₀)) and the minimum-‖θ − θ₀‖ inner solution
   w_cs(λ) = θ₀ + A⁺(Bλ + b − Aθ₀) (T1, both levels underdetermined; sec. 4);
2. warm start is a proximal best response: the inner min-norm gap grows under warm start and
   stays ~0 under cold start (T2 with one synthetic point; sec. 5, Fig. 3);
3. inner overparameterized: warm > cold > warm + re-train (the Table 3 pattern; digits and
   the 1-D linear setting), 3b the same at ConvNet scale (``distill_convnet``);
4. outer overparameterized: the hypergradient approximation (Neumann terms / truncation K)
   decides which zero-loss λ is found (T3, the anti-distillation figure).

The page prose is in ``templates/reproduce/vicol2022/``; this module computes the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from blobench.workflows.reproduce.claims import (
    NOT,
    PARTIAL,
    REPRODUCED,
    Experiment,
    Report,
    Reproduction,
    Verdict,
    fmt,
    ok_rows,
    trace_rows,
)
from blobench.workflows.reproduce.page import add_section, pyplot, save_figure

T1 = "overparam_linreg[setting=inner_overparam,dim_lambda=10,n_outer=3]"
T3 = "overparam_linreg[setting=outer_overparam]"
ADAM = "outer_optimizer=adam,outer_lr=0.05"
C1_ALGORITHM = "exact[warm_start=false,inner_steps=200]"
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
CONVNET_SETTING = "ConvNet-3 (Fashion-MNIST)"
#: what the paper reports for claim 3 (Table 3)
TABLE3 = ("MNIST 1 / 10 samples: cold 30.7 / 89.1, warm 90.8 / 97.5, warm + re-train "
          "12.9 / 17.1 (% test accuracy)")


def vicol_experiments() -> list[Experiment]:
    ks = ",".join(map(str, K_GRID))
    kt = ",".join(str(k + 1) for k in K_GRID)
    return [
        Experiment("c1", [T1], [C1_ALGORITHM], 60, 10),
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
    """The verdicts, sections and figures of the claims whose experiments ran."""
    rep = Report()
    if "c1" in frames:
        _claim1(ok_rows(frames["c1"]), out, stem, rep)
    if "c2" in frames:
        _claim2(ok_rows(frames["c2"]), out, stem, rep)
    rows = _claim3_rows(frames)
    convnet_rows = [r for r in rows if r["setting"] == CONVNET_SETTING]
    rows = [r for r in rows if r["setting"] != CONVNET_SETTING]
    if convnet_rows:
        _claim3b(pd.DataFrame(convnet_rows), out, stem, rep)
    if rows:
        _claim3(pd.DataFrame(rows), out, stem, rep)
    if "c4" in frames:
        _claim4(ok_rows(frames["c4"]), out, stem, rep)
    return rep


def _claim1(f: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    """Cold start + exact hypergradient → the closed-form minimum-displacement solutions."""
    plt = pyplot()
    lam_rel = (f["lam_min_norm_dist"] / f["lam_displacement"]).max()
    th_rel = (f["min_norm_dist"] / f["theta_displacement"]).max()
    ok = [lam_rel < 1e-3, th_rel < 1e-3]
    rep.verdicts.append(Verdict(
        "1. cold-start + exact hypergradient → min-displacement outer solution and "
        "min-‖θ − θ₀‖ inner solution",
        "max over seeds of ‖λ_T − u_mn‖/‖λ_T − λ₀‖ < 1e-3 and "
        "‖θ_T − w_cs(λ)‖/‖θ_T − θ₀‖ < 1e-3",
        f"λ: {fmt(lam_rel)}, θ: {fmt(th_rel)} ({len(f)} seeds)",
        REPRODUCED if all(ok) else PARTIAL if any(ok) else NOT,
        "exact convergence (theory, sec. 4)"))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for metric, ls in (("lam_min_norm_dist", "-"), ("min_norm_dist", "--")):
        tr = trace_rows(f, metric)
        for seed, g in tr.groupby("seed"):
            ax.semilogy(g["step"], g[metric].clip(lower=1e-17), ls,
                        label=f"{metric} (seed {seed})")
    ax.set_xlabel("outer step")
    ax.set_ylabel("distance")
    ax.set_title("Claim 1: cold-start exact BLO on T1 (quadratic)")
    ax.legend(fontsize=7)
    save_figure(fig, out, "claim1", stem, rep)
    add_section(rep, "vicol2022/claim1.md.j2", problem=T1, algorithm=C1_ALGORITHM, stem=stem,
                table=f[["seed", "outer_loss", "lam_min_norm_dist", "lam_displacement",
                         "min_norm_dist", "theta_displacement"]])


def _claim2(f: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    """Warm start = proximal best response: the inner min-norm gap grows, cold stays ~0."""
    plt = pyplot()
    warm = f[f["algorithm.warm_start"]]
    cold = f[~f["algorithm.warm_start"]]
    tr = trace_rows(f, "min_norm_dist")
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
        f"cold max {fmt(cold_max)}; warm first {fmt(first)} → final mean "
        f"{fmt(last_mean)} (min over seeds {fmt(last_min)})",
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
    save_figure(fig, out, "claim2", stem, rep)
    add_section(rep, "vicol2022/claim2.md.j2", adam=ADAM, stem=stem,
                table=f[["label", "seed", "min_norm_dist", "test_mse", "restart_test_mse"]])


def _claim3_rows(frames: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per claim-3 setting and number of synthetic points: cold / warm / warm + re-train means
    and which orderings hold."""
    rows = []
    for key, prob, param, metric, higher in (
            ("c3_digits", "digits (linear softmax)", "problem.per_class", "test_accuracy", True),
            ("c3_linear", "distill_linear (1-D regression)", "problem.n_synthetic", "test_mse",
             False),
            ("c3_convnet", CONVNET_SETTING, "problem.per_class", "test_accuracy", True)):
        if key not in frames:
            continue
        f = ok_rows(frames[key])
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
    return rows


def _claim3(t3: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    """Inner overparameterized: warm > cold > warm + re-train (digits, distill_linear)."""
    plt = pyplot()
    full = (t3["warm > cold"] & t3["cold > warm+re-train"])
    verdict = REPRODUCED if full.all() else PARTIAL if (
        full.any() or t3["warm > warm+re-train"].all()) else NOT
    rep.verdicts.append(Verdict(
        "3. inner overparameterized: warm > cold > warm + re-train",
        "the ordering of the seed means holds in each setting (digits k = 1, 10 per class; "
        "distill_linear n = 1, 10)",
        f"full ordering in {int(full.sum())}/{len(t3)} settings; warm better than "
        f"warm + re-train in {int(t3['warm > warm+re-train'].sum())}/{len(t3)}",
        verdict, TABLE3))
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
    save_figure(fig, out, "claim3", stem, rep)
    add_section(rep, "vicol2022/claim3.md.j2", adam=ADAM, stem=stem, table=t3)


def _claim3b(t3: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    """Claim 3 at ConvNet scale: warm ≫ cold > warm + re-train (Vicol et al. 2022, Table 3)."""
    plt = pyplot()
    full = t3["warm > cold"] & t3["cold > warm+re-train"]
    rep.verdicts.append(Verdict(
        "3b. Table 3 at ConvNet scale (distill_convnet, Fashion-MNIST): warm > cold > "
        "warm + re-train",
        "the ordering of the seed means of test accuracy holds at 1 and 10 images per class",
        f"full ordering in {int(full.sum())}/{len(t3)} settings; warm better than warm + "
        f"re-train in {int(t3['warm > warm+re-train'].sum())}/{len(t3)}",
        REPRODUCED if full.all() else PARTIAL if full.any() or t3[
            "warm > warm+re-train"].all() else NOT,
        TABLE3))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = np.arange(len(t3))
    for i, col in enumerate(("cold", "warm", "warm + re-train")):
        ax.bar(x + (i - 1) * 0.27, t3[col], 0.27, label=col)
    ax.set_xticks(x, [f"{n} images" for n in t3["synthetic points"]])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)  # room above the bars for the legend, which covered a bar
    ax.set_title(CONVNET_SETTING)
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    save_figure(fig, out, "claim3b", stem, rep)
    add_section(rep, "vicol2022/claim3b.md.j2", warm=CONVNET_ALGOS[0], cold=CONVNET_ALGOS[1],
                stem=stem, table=t3)


def _claim4(f: pd.DataFrame, out: Path, stem: str, rep: Report) -> None:
    """Outer overparameterized: the hypergradient approximation picks the zero-loss λ."""
    plt = pyplot()
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
        f"exact {fmt(ex_rel)}; max F {fmt(zero)}; smallest K: {fmt(smallest)}; "
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
    save_figure(fig, out, "claim4", stem, rep)
    add_section(rep, "vicol2022/claim4.md.j2", problem=T3, k_grid=K_GRID, stem=stem,
                table=agg.rename(columns={"cold_outer_loss": "F(λ_final)"}))


REPRODUCTION = Reproduction(
    "Vicol et al. 2022 — On Implicit Bias in Overparameterized Bilevel Optimization",
    "Vicol, Lorraine, Pedregosa, Duvenaud, Grosse, ICML 2022 (arXiv 2212.14032)",
    vicol_experiments, vicol_report)
