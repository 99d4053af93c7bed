"""blobench from Python, step by step (run: ``python examples/python_api.py``).

Runs a small comparison (two implicit-differentiation settings against unrolled
differentiation on ridge-regression hyperparameter optimization, 3 seeds), summarizes it
with pandas, then shows the pipeline object behind ``blobench.run``. About a minute on one
core; results go to ``results/`` like the command line's, so a second run reads them back.
See docs/python-api.md.
"""

import blobench


def main() -> None:
    # %% 1. Run cells and get a DataFrame, one row per (problem, algorithm, seed)
    frame = blobench.run(problems="ridge_ho",
                         algorithms=["implicit_cg[cg_steps=[5,20]]", "unrolled"],
                         seeds=3, n_jobs=2)
    print(frame[["label", "seed", "status", "test_mse", "solver_seconds"]])

    # %% 2. Summarize: mean ± std of the held-out metric and of the solver time
    table = frame.groupby("label")[["test_mse", "solver_seconds"]].agg(["mean", "std"])
    print(table.sort_values(("test_mse", "mean")))

    # %% 3. The pipeline behind blobench.run: plan first, look, then execute
    from blobench.workflows.api import RunSpec, prepare

    spec = RunSpec(problems=["ridge_ho"], algorithms=["soba", "exact"], seeds=2)
    pipeline = prepare(spec)
    print(f"{len(pipeline.cells)} cells planned; {pipeline.settings_message()}")
    summary = pipeline.execute(progress="lines")
    print(summary.text())
    print(pipeline.frame()[["label", "seed", "test_mse"]])

    # %% 4. Everything in the results folder, from any earlier run too
    everything = blobench.load_results("results")
    print(f"{len(everything)} cells in results/:", sorted(everything["problem"].unique()))


if __name__ == "__main__":  # cells run in child processes: keep the entry point guarded
    main()
