"""Side by side: blobench vs benchopt's bilevel benchmark (the reference, JAX) on the
reference's own finite-sum quadratic (Dagréou et al. 2022, dataset ``simulated``).

What it does
1. Builds the reference's ``simulated`` dataset with its own code (n = m = 1,024, d = p = 100,
   μ = 0.1, seed 2442) and exports its per-sample quadratics to blobench's
   ``finite_sum_quadratic`` (every per-sample Hessian and cross matrix of the reference is
   rank one by construction; the factors are recovered by an eigen/singular decomposition
   and installed with ``FiniteSumQuadratic.install``). Checks that the two implementations
   agree: losses and gradients of both levels, on every mini-batch block, at random points.
2. Runs SOBA, SABA, StocBiO and AmIGO on both sides with matched hyperparameters (the
   reference's defaults: step 0.1 for θ, v and λ, batch 64, T = Q = M = 10; SOBA with the
   reference's 1/√(t+1) schedule on both steps; SABA constant; without-replacement epochs
   of shuffled blocks on both sides), alternating the two sides run by run.
3. Synchronized clocks: the reference's jitted epoch (``eval_freq`` steps) is timed with
   ``jax.block_until_ready``; blobench's steps with ``time.perf_counter`` (CPU, synchronous);
   both exclude evaluation and the reference's compilation (a warm-up epoch first). One
   compute thread on each side (XLA_FLAGS, ``torch.set_num_threads(1)``).
4. Evaluates both sides' λ iterates with one evaluator (blobench's closed-form h, float64):
   suboptimality h(λ) − h* at every checkpoint, median over seeds.
5. Writes ``leaderboards/side_by_side/README.md`` (per-step time ratio, suboptimality ratio
   per checkpoint, the exactness check, the command), ``curves.png`` and ``results.json``.

Usage (from the repository root)::

    pip install -e '.[side_by_side]'            # jax, benchopt
    git clone https://github.com/benchopt/benchmark_bilevel /tmp/benchmark_bilevel
    git -C /tmp/benchmark_bilevel checkout 3ad65dc
    python tools/side_by_side/run.py --reference /tmp/benchmark_bilevel

Without jax/benchopt or the reference checkout it prints one line saying what is missing and
exits 0 (nothing is written). ``--reference`` defaults to ``$BLOBENCH_REFERENCE_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOLVERS = ("soba", "saba", "stocbio", "amigo")
STEP = 0.1  # the reference's default step_size (outer_ratio 1: the same step on λ)
INNER_STEPS = 10  # the reference's n_inner_steps = n_shia_steps (AmIGO: M = T)


def missing_extras(reference: Path | None) -> str | None:
    """Why the comparison cannot run here (None: it can)."""
    for module in ("jax", "benchopt"):
        try:
            __import__(module)
        except ImportError:
            return (f"{module} is not installed (pip install -e '.[side_by_side]' installs "
                    "jax and benchopt)")
    if reference is None:
        return "no reference checkout: pass --reference DIR or set $BLOBENCH_REFERENCE_DIR"
    for rel in ("datasets/simulated.py", "objective.py", *(f"solvers/{s}.py" for s in
                                                            ("soba", "saba", "stocbio",
                                                             "amigo"))):
        if not (reference / rel).is_file():
            return f"{reference} is not a benchopt/benchmark_bilevel checkout (no {rel})"
    return None


# ------------------------------------------------------------------- the reference's side
def reference_problem(reference: Path):
    """The reference's dataset, objective and raw per-sample matrices (its own code)."""
    import jax

    sys.path.insert(0, str(reference))
    from benchmark_utils.gen_matrices import gen_matrices
    from datasets.simulated import Dataset
    from objective import Objective

    dataset = Dataset.get_instance()
    objective = Objective.get_instance()
    objective.set_data(**dataset.get_data())
    # the same call get_data makes (joblib-cached): the matrices behind its closures
    keys = jax.random.split(jax.random.PRNGKey(dataset.random_state), 2)
    raw = [gen_matrices(n, dataset.dim_inner, dataset.dim_outer, l_in, l_out, l_cross,
                        dataset.mu_inner, key)
           for n, l_in, l_out, l_cross, key in (
               (dataset.n_samples_inner, dataset.L_inner_inner, dataset.L_outer_inner,
                dataset.L_cross_inner, keys[0]),
               (dataset.n_samples_outer, dataset.L_inner_outer, dataset.L_outer_outer,
                dataset.L_cross_outer, keys[1]))]
    return dataset, objective, raw


def reference_solver(reference: Path, name: str, chunk: int, seed: int):
    module = {"soba": "soba", "saba": "saba", "stocbio": "stocbio", "amigo": "amigo"}[name]
    sys.path.insert(0, str(reference))
    solver_cls = __import__(f"solvers.{module}", fromlist=["Solver"]).Solver
    params = {"step_size": STEP, "outer_ratio": 1.0, "batch_size": 64, "eval_freq": chunk,
              "random_state": seed}
    if name in ("stocbio", "amigo"):
        params["n_inner_steps"] = INNER_STEPS
    if name == "stocbio":
        params["n_shia_steps"] = INNER_STEPS
    return solver_cls.get_instance(**params)


def run_reference(solver, objective, steps: int, chunk: int):
    """(seconds per chunk, λ after each chunk) of the reference's solver, clock synced."""
    import jax
    import numpy as np

    solver.set_objective(**objective.get_objective())
    saba = solver.name == "SABA"  # its epoch carries the SAGA memory beside the state

    def epoch(state):
        if saba:
            memory, carry = state
            memory, carry = solver.one_epoch(carry, memory, chunk)
            return memory, carry
        return solver.one_epoch(state, chunk)

    jax.block_until_ready(epoch(solver.init()))  # compile this chunk length
    state = solver.init()
    times, lams = [], []
    for _ in range(steps // chunk):
        t0 = time.perf_counter()
        state = epoch(state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
        carry = state[1] if saba else state
        lams.append(np.asarray(carry["outer_var"], dtype=np.float64))
    return times, lams


# ---------------------------------------------------------------------- blobench's side
def rank_one(mats, symmetric: bool):
    """(n, a, b) rank-one matrices → their factors, float64: M_i = x_i x_iᵀ (symmetric PSD:
    returns x) or M_i = p_i q_iᵀ (returns (p, q))."""
    import torch

    m = torch.as_tensor(mats, dtype=torch.float64)
    if symmetric:
        w, v = torch.linalg.eigh(m)
        return v[:, :, -1] * w[:, -1:].clamp(min=0).sqrt()
    u, s, vh = torch.linalg.svd(m)
    return u[:, :, 0] * s[:, :1], vh[:, 0, :]


def blobench_problem(raw, dtype: str):
    """blobench's finite_sum_quadratic holding the reference's data (rank-one factors)."""
    import torch

    from blobench.execution.registry import get_registry
    from problems.finite_sum_quadratic import SampleQuadratics

    levels = []
    for hess_theta, hess_lam, cross, lin_theta, lin_lam in raw:
        p, q = rank_one(cross, symmetric=False)
        levels.append(SampleQuadratics(
            x=rank_one(hess_theta, symmetric=True), y=rank_one(hess_lam, symmetric=True),
            p=p, q=q, a=torch.as_tensor(lin_theta, dtype=torch.float64),
            b=torch.as_tensor(lin_lam, dtype=torch.float64)))
    problem = get_registry().problem("finite_sum_quadratic")(size="full", dtype=dtype)
    problem.install(*levels)
    return problem


def agreement(problem, objective, seed: int = 0) -> dict[str, float]:
    """Largest relative difference of losses and gradients between the two implementations,
    over every block of 64 samples of both levels, at 3 random points."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    obj = objective.get_objective()
    rng = np.random.default_rng(seed)
    worst = {"loss": 0.0, "grad_theta": 0.0, "grad_lam": 0.0}
    for _ in range(3):
        theta = rng.standard_normal(problem.dim_inner)
        lam = rng.standard_normal(problem.dim_outer)
        t_theta, t_lam = (torch.as_tensor(v, dtype=problem.dtype) for v in (theta, lam))
        for fn, level, n in ((obj["f_inner"], problem.inner, problem.n_inner_samples),
                             (obj["f_outer"], problem.outer, problem.n_outer_samples)):
            for start in range(0, n, 64):
                idx = torch.arange(start, start + 64)
                ref = float(fn(jnp.asarray(theta), jnp.asarray(lam), start, 64))
                ref_gt, ref_gl = jax.grad(fn, argnums=(0, 1))(jnp.asarray(theta),
                                                              jnp.asarray(lam), start, 64)
                ours = float(level.loss(t_theta, t_lam, idx))
                for key, a, b in (
                        ("loss", np.array([ours]), np.array([ref])),
                        ("grad_theta", level.grad_theta(t_theta, t_lam, idx).double().numpy(),
                         np.asarray(ref_gt, dtype=np.float64)),
                        ("grad_lam", level.grad_lam(t_theta, t_lam, idx).double().numpy(),
                         np.asarray(ref_gl, dtype=np.float64))):
                    rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
                    worst[key] = max(worst[key], rel)
    return worst


def blobench_algorithm(name: str):
    from blobench.bases.single_loop import decayed
    from blobench.execution.registry import get_registry

    registry = get_registry()
    if name == "soba":
        base = registry.algorithm("soba")

        class SOBAHalf(base):
            """SOBA with the reference's schedule: ρ_t = γ_t = 0.1/√(t+1)."""

            def step_sizes(self, problem, state):
                k = state.extra["k"]
                return decayed(self.inner_lr, k, 0.5), decayed(self.outer_lr, k, 0.5)

        return SOBAHalf(inner_lr=STEP, outer_lr=STEP, decay=False)
    if name == "saba":
        return registry.algorithm("saba")(inner_lr=STEP, outer_lr=STEP)
    if name == "stocbio":
        return registry.algorithm("stocbio")(inner_steps=INNER_STEPS,
                                             neumann_terms=INNER_STEPS, inner_lr=STEP,
                                             neumann_lr=STEP, outer_lr=STEP)
    return registry.algorithm("amigo")(inner_steps=INNER_STEPS, linear_steps=INNER_STEPS,
                                       inner_lr=STEP, linear_lr=STEP, outer_lr=STEP)


def run_blobench(problem, name: str, steps: int, chunk: int, seed: int):
    import torch

    alg = blobench_algorithm(name)
    gen = torch.Generator().manual_seed(seed)
    lam0 = problem.init_outer(gen)
    state = alg.init(problem, problem.init_inner(lam0, gen), lam0, gen)
    times, lams = [], []
    for _ in range(steps // chunk):
        t0 = time.perf_counter()
        for _ in range(chunk):
            state = alg.step(problem, state)
        times.append(time.perf_counter() - t0)
        lams.append(state.lam.detach().double().numpy().copy())
    return times, lams


# --------------------------------------------------------------------------- the page
def suboptimality(problem, lam) -> float:
    import torch

    lam = torch.as_tensor(lam, dtype=torch.float64)
    return float(problem.truth.value(lam)) - problem.truth.h_star


def write_page(out: Path, results: dict, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chunk, steps = results["chunk"], results["steps"]
    checkpoints = [chunk * (i + 1) for i in range(steps // chunk)]
    fig, axes = plt.subplots(1, len(results["solvers"]), figsize=(4 * len(results["solvers"]),
                                                                  3.4), squeeze=False)
    rows, curve_rows = [], []
    for ax, (name, res) in zip(axes[0], results["solvers"].items(), strict=True):
        for side, style in (("reference", "--"), ("blobench", "-")):
            med = [statistics.median(s[i] for s in res[side]["subopt"])
                   for i in range(len(checkpoints))]
            res[side]["median_subopt"] = med
            ax.semilogy(checkpoints, med, style, label=side)
        ax.set_title(name)
        ax.set_xlabel("outer step")
        ax.grid(alpha=0.3)
        ms = {side: 1e3 * statistics.median(t for run in res[side]["times"] for t in run)
              / chunk for side in ("reference", "blobench")}
        rows.append(f"| {name} | {ms['blobench']:.3f} | {ms['reference']:.3f} | "
                    f"{ms['blobench'] / ms['reference']:.2f} |")
        ratios = [b / r if r > 0 else float("nan") for b, r in
                  zip(res["blobench"]["median_subopt"], res["reference"]["median_subopt"],
                      strict=True)]
        picks = sorted({0, len(ratios) // 4, len(ratios) // 2, len(ratios) - 1})
        curve_rows.append(f"| {name} | " + " | ".join(
            f"{checkpoints[i]}: {res['blobench']['median_subopt'][i]:.3g} / "
            f"{res['reference']['median_subopt'][i]:.3g} ({ratios[i]:.2f}×)" for i in picks)
            + " |")
    axes[0][0].set_ylabel("h(λ) − h*  (median over seeds)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    agree = results["agreement"]
    text = f"""# Side by side: blobench vs benchopt's bilevel benchmark (reference, JAX)

The reference's own finite-sum quadratic (`datasets/simulated.py`, n = m = 1,024,
d = p = 100, μ = 0.1, seed 2442, {results['dtype']}) exported to blobench's
`finite_sum_quadratic` (rank-one factors of its per-sample matrices); both sides run the same
methods with matched hyperparameters (step 0.1 on θ, v and λ; batch 64; T = Q = M = 10;
SOBA on the reference's 1/√(t+1) schedule; without-replacement epochs of shuffled blocks on
both sides), {results['seeds']} seed(s), {steps} outer steps, alternating the two sides run
by run. Clocks: the reference's jitted `eval_freq`-step epoch ({chunk} steps) timed with
`jax.block_until_ready` after a compiling warm-up epoch; blobench's steps with
`time.perf_counter`; evaluation excluded on both; one compute thread each. Both sides' λ
iterates are scored by one evaluator: blobench's closed-form h(λ) − h* in float64.

Made by (from the repository root; reference checkout {results['reference_commit']}):

    {command}

Machine: {results['machine']}; torch {results['torch']}, jax {results['jax']},
benchopt {results['benchopt']}; {results['when']}. The machine was shared with other jobs
(2 cores, several developers): absolute times are noisy, ratios of alternated runs less so.

## Same problem on both sides

Largest relative difference, reference vs blobench, over every 64-sample block of both
levels at 3 random points: loss {agree['loss']:.1e}, ∇_θ {agree['grad_theta']:.1e},
∇_λ {agree['grad_lam']:.1e} (float32 data of the reference; blobench holds it in
{results['dtype']}).

## Time per outer step (median over chunks and seeds)

| method | blobench ms/step | reference ms/step | ratio blobench/reference |
|---|---|---|---|
{chr(10).join(rows)}

blobench's problem multiplies by the rank-one factors (O(b d) per mini-batch oracle); the
reference stores the dense per-sample matrices (O(b d²)): part of the ratio is the problem's
implementation, not the framework.

## Suboptimality h(λ) − h* (median over seeds): blobench / reference at checkpoints

| method | step: blobench / reference (ratio) |
|---|---|
{chr(10).join(curve_rows)}

![suboptimality vs outer step, both sides](curves.png)

Raw numbers: `results.json`.
"""
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path,
                        default=os.environ.get("BLOBENCH_REFERENCE_DIR"),
                        help="checkout of benchopt/benchmark_bilevel")
    parser.add_argument("--steps", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=128, help="steps per timed chunk "
                        "(the reference's eval_freq)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards" / "side_by_side")
    args = parser.parse_args(argv)
    reference = Path(args.reference).resolve() if args.reference else None
    reason = missing_extras(reference)
    if reason:
        print(f"side_by_side: skipped — {reason}")
        return 0
    if args.steps < args.chunk or args.steps % args.chunk:
        parser.error("--steps must be a positive multiple of --chunk")
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = sorted(set(solvers) - set(SOLVERS))
    if unknown:
        parser.error(f"unknown solver(s) {unknown}; valid: {', '.join(SOLVERS)}")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1")
    import jax
    import torch

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    command = "python tools/side_by_side/run.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the reference's joblib cache (__cache__) goes here
        try:
            _, objective, raw = reference_problem(reference)
            problem = blobench_problem(raw, args.dtype)
            results = {"dtype": args.dtype, "steps": args.steps, "chunk": args.chunk,
                       "seeds": args.seeds, "agreement": agreement(problem, objective),
                       "solvers": {}}
            print("agreement:", results["agreement"], flush=True)
            for name in solvers:
                res = {side: {"times": [], "subopt": []} for side in ("reference", "blobench")}
                for seed in range(1, args.seeds + 1):
                    for side in ("reference", "blobench"):  # alternating, run by run
                        if side == "reference":
                            solver = reference_solver(reference, name, args.chunk, seed)
                            times, lams = run_reference(solver, objective, args.steps,
                                                        args.chunk)
                        else:
                            times, lams = run_blobench(problem, name, args.steps,
                                                       args.chunk, seed)
                        res[side]["times"].append(times)
                        res[side]["subopt"].append([suboptimality(problem, lam)
                                                    for lam in lams])
                        print(f"{name} seed {seed} {side}: "
                              f"{1e3 * sum(times) / args.steps:.3f} ms/step, final "
                              f"{res[side]['subopt'][-1][-1]:.3g}", flush=True)
                results["solvers"][name] = res
        finally:
            os.chdir(cwd)
    import benchopt

    results.update(
        machine=f"{platform.machine()} {platform.processor() or ''} "
                f"{os.cpu_count()} CPU(s)".strip(),
        torch=torch.__version__, jax=jax.__version__, benchopt=benchopt.__version__,
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        reference_commit=_git_head(reference))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    write_page(args.out, results, command)
    print(f"wrote {args.out / 'README.md'}")
    return 0


def _git_head(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout: see its README)"


if __name__ == "__main__":
    sys.exit(main())
