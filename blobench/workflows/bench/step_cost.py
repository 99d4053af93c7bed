"""Per-step cost of the single-loop stochastic methods vs. their oracle calls timed alone.

Goal (issue 15): on ``finite_sum_quadratic`` (``full``: n = m = 1,024, d = p = 100, mini-batches
of 64, float32), one step of soba, saba, amigo, stocbio, ttsa and f2sa at default parameters
costs at most :data:`TARGET` × the sum of its oracle calls, each timed alone:

    ratio = step time / Σ_kind count_kind × time_kind.

- **step time**: ``init`` and :data:`WARMUP` steps, then :data:`ROUNDS` rounds in which each
  method runs a block of steps (≥ ``min_block`` seconds) and each oracle kind (below) a block
  of calls, in turn (:func:`~blobench.workflows.bench.costs.time_calls`: interleaved, so
  drifting load hits steps and oracles alike); the median per step / per call over the rounds;
  1 torch thread. The counts are taken over ``k`` further steps before.
- **counts**: the calls the steps make of the problem's oracles, by kind, counted at the
  problem (:func:`counting` wraps its methods for the measured steps): ``grad_inner``
  (∇_θ g), ``grad_outer`` ((∇_θ f, ∇_λ f)), ``hvp`` (∇²_θθ g v, counted when applied),
  ``mixed`` (∇²_λθ g v), ``inner_grads_autodiff`` ((∇_θ g, ∇_λ g) by autograd: a call of
  ``inner_loss``; F2SA's ∇_λ g, for which the problem has no oracle), and SABA's per-sample
  values of a batch — one vectorized call (``torch.func.vmap``) of
  :func:`~blobench.bases.single_loop.per_sample_inner` (∇_θ g_i, ∇²_θθ g_i v, ∇²_λθ g_i v
  for every i of the batch) is one ``per_sample_inner``, likewise ``per_sample_outer`` (an
  oracle called on a vmapped index tensor). :data:`blobench.autodiff.oracle_counts` per step
  is reported beside them: it counts a ``grad_inner`` for every
  :class:`~blobench.autodiff.InnerDerivatives` built (a gradient under autodiff, not computed
  with analytic oracles unless read) and b oracles of each kind per per-sample call.
- **oracle times**: each kind called alone, in the rounds above, the way the algorithms call
  it, on a fresh batch of the problem's size from its sampler: ``autodiff.inner_grad``,
  ``autodiff.outer_grads``, ``InnerDerivatives(...).hvp`` / ``.mixed`` (a product on a fresh
  batch builds its own operator, as ``FreshBatchDerivatives`` and ``soba_oracles`` do),
  ``autodiff.inner_grads``, ``per_sample_inner`` / ``per_sample_outer`` on the batch's
  indices. So the ratio is the step's cost beyond its oracle calls (sampling, state updates,
  SABA's memory tables, the optimizer on λ); how much a per-sample call costs against the
  batch oracles it stands for (:func:`measure_step_cost`'s ``per_sample_vs_batch``) is
  reported beside it.

"No Python loop over the samples of a batch" shows in the counts, not in the ratio: SABA's
reference loop (``batched = False``) makes b oracle calls of each kind per step, each priced
as a b-sample oracle, so its ratio looks fine while its counts read b × 4
(tests/test_step_cost.py has that mutant). Ratios are of times taken in the same run;
absolute milliseconds are reported for reading.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch

from blobench import autodiff
from blobench.execution.registry import Registry

METHODS = ("soba", "saba", "amigo", "stocbio", "ttsa", "f2sa")
PROBLEM = "finite_sum_quadratic"
TARGET = 2.0
WARMUP, ROUNDS = 5, 7


def _setup(registry: Registry, problem: Any, name: str, seed: int = 0) -> tuple[Any, Any]:
    from blobench.bases.algorithm import cell_theta0

    algorithm = registry.algorithm(name)()
    generator = torch.Generator().manual_seed(seed)
    lam0 = problem.init_outer(generator)
    state = algorithm.init(problem, cell_theta0(problem, lam0), lam0, generator)
    return algorithm, state


def oracle_functions(problem: Any, seed: int = 1) -> dict[str, Callable[[], Any]]:
    """Each oracle kind at a point of the problem, on a fresh batch from its samplers."""
    from blobench.bases.single_loop import per_sample_inner, per_sample_outer

    gen = torch.Generator().manual_seed(seed)
    lam = problem.init_outer(gen)
    theta = torch.randn(problem.dim_inner, generator=gen).to(lam)
    v = torch.randn(problem.dim_inner, generator=gen).to(lam)

    def inner() -> Any:
        return problem.sample_inner_batch(gen)

    def outer() -> Any:
        return problem.sample_outer_batch(gen)

    return {
        "grad_inner": lambda: autodiff.inner_grad(problem, theta, lam, inner()),
        "grad_outer": lambda: autodiff.outer_grads(problem, theta, lam, outer()),
        "hvp": lambda: autodiff.InnerDerivatives(problem, theta, lam, inner()).hvp(v),
        "mixed": lambda: autodiff.InnerDerivatives(problem, theta, lam, inner()).mixed(v),
        "inner_grads_autodiff": lambda: autodiff.inner_grads(problem, theta, lam, inner()),
        "per_sample_inner": lambda: per_sample_inner(problem, theta, lam, v,
                                                     torch.unique(inner())),
        "per_sample_outer": lambda: per_sample_outer(problem, theta, lam, torch.unique(outer())),
    }


#: the problem's methods counted and the oracle kind a call of each is
HOOKS = {"inner_grad_oracle": "grad_inner", "outer_grads_oracle": "grad_outer",
         "inner_hessian_operator": "hvp", "mixed_oracle": "mixed",
         "inner_loss": "inner_grads_autodiff", "outer_loss": "outer_grads_autodiff"}
#: the kind of a hook called on a vmapped batch (one per per-sample call; None: not counted)
PER_SAMPLE = {"inner_grad_oracle": "per_sample_inner", "outer_grads_oracle": "per_sample_outer",
              "inner_loss": "per_sample_inner", "outer_loss": "per_sample_outer"}


def _vmapped(args: tuple[Any, ...]) -> bool:
    return any(isinstance(a, torch.Tensor) and torch._C._functorch.is_batchedtensor(a)
               for a in args)


@contextlib.contextmanager
def counting(problem: Any) -> Iterator[Counter[str]]:
    """Count the calls of ``problem``'s oracles and losses by kind (see the module docstring;
    instance attributes wrap the class's methods for the duration)."""
    calls: Counter[str] = Counter()

    def wrap(hook: str) -> Callable[..., Any]:
        method = getattr(problem, hook)

        def counted(*args: Any, **kwargs: Any) -> Any:
            out = method(*args, **kwargs)
            if _vmapped((*args, *kwargs.values())):
                kind = PER_SAMPLE.get(hook)
                calls.update([kind] if kind else [])
                return out
            if hook != "inner_hessian_operator" or out is NotImplemented:
                calls[HOOKS[hook]] += 1
                return out

            def apply(v: Any) -> Any:
                calls["hvp"] += 1
                return out(v)
            return apply
        return counted

    for hook in HOOKS:
        setattr(problem, hook, wrap(hook))
    try:
        yield calls
    finally:
        for hook in HOOKS:
            delattr(problem, hook)


def measure_step_cost(registry: Registry, size: str = "full", k: int = 20,
                      rounds: int = ROUNDS, methods: tuple[str, ...] = METHODS,
                      seed: int = 0, min_block: float = 0.03) -> dict[str, Any]:
    """Per-method step ms, Σ count × oracle ms, ratio (see the module docstring)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        problem = registry.problem(PROBLEM)(size=size, seed=seed)
        runs = {name: _setup(registry, problem, name, seed) for name in methods
                if name in registry.algorithms}

        def steps(name: str, n: int) -> None:
            algorithm, state = runs[name]
            for _ in range(n):
                state = algorithm.step(problem, state)
            runs[name] = (algorithm, state)

        counts, recorded = {}, {}
        for name in runs:
            steps(name, WARMUP)
            autodiff.oracle_counts.clear()
            with counting(problem) as calls:
                steps(name, k)
            counts[name], recorded[name] = calls, Counter(autodiff.oracle_counts)
        from blobench.workflows.bench.costs import time_calls

        # one step of each method and each oracle kind alone, interleaved in the same rounds
        timed = time_calls({**{("step", name): (lambda name=name: steps(name, 1))
                               for name in runs},
                            **{("oracle", kind): fn
                               for kind, fn in oracle_functions(problem).items()}},
                           rounds=rounds, min_block=min_block)
        oracle_s = {kind: t for (what, kind), t in timed.items() if what == "oracle"}
    finally:
        torch.set_num_threads(threads)
    unknown = {kind for c in counts.values() for kind in c} - set(oracle_s)
    if unknown:  # e.g. outer_grads_autodiff: a kind with no timed oracle would go uncounted
        raise ValueError(f"step_cost: oracle kinds without a timing: {sorted(unknown)}")
    rows = []
    for name in runs:
        per_step = {kind: n / k for kind, n in sorted(counts[name].items())}
        step_s = timed[("step", name)]
        oracle_sum = sum(n * oracle_s[kind] for kind, n in per_step.items())
        ratio = step_s / oracle_sum if oracle_sum else None
        rows.append({"algorithm": name, "step_ms": 1e3 * step_s,
                     "oracle_sum_ms": 1e3 * oracle_sum, "ratio": ratio,
                     "calls_per_step": per_step,
                     "oracle_counts_per_step": {kind: recorded[name][kind] / k
                                                for kind in sorted(recorded[name])},
                     "target": TARGET,
                     "met": ratio is not None and ratio <= TARGET})
    return {"problem": PROBLEM, "size": size, "batch_size": problem.config["batch_size"],
            "dtype": problem.config["dtype"], "counted_steps": k, "rounds": rounds,
            "oracle_ms": {kind: 1e3 * s for kind, s in oracle_s.items()}, "rows": rows,
            # a per-sample call of b samples against the b-sample batch oracles it stands for
            "per_sample_vs_batch": {
                "inner": oracle_s["per_sample_inner"] / (oracle_s["grad_inner"]
                                                         + oracle_s["hvp"] + oracle_s["mixed"]),
                "outer": oracle_s["per_sample_outer"] / oracle_s["grad_outer"]},
            "target": TARGET, "met": all(r["met"] for r in rows)}


def goal_rows(result: dict[str, Any]) -> list[str]:
    """The report's goal-table rows (goal | target | measured | met | measured by)."""
    oracle = ", ".join(f"{kind} {ms:.3f}" for kind, ms in result["oracle_ms"].items())
    vs = result["per_sample_vs_batch"]
    rows = []
    for r in result["rows"]:
        calls = ", ".join(f"{n:g} {kind}" for kind, n in r["calls_per_step"].items())
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        rows.append(
            f"| step / Σ its oracle calls timed alone, {r['algorithm']} on {result['problem']} "
            f"{result['size']} (batch {result['batch_size']}, {result['dtype']}; per step: "
            f"{calls}) | ≤ {r['target']:g} | {ratio} ({r['step_ms']:.2f} ms / "
            f"{r['oracle_sum_ms']:.2f} ms) | {'**met**' if r['met'] else '**NOT met**'} | "
            "`blobench bench` (step_cost) |")
    rows.append(f"| (oracle ms alone, median: {oracle}; a per-sample call of the batch costs "
                f"{vs['inner']:.1f}× the inner batch oracles grad + hvp + mixed, "
                f"{vs['outer']:.1f}× the outer one) | | | | "
                "blobench/workflows/bench/step_cost.py |")
    return rows
