"""What a hypergradient costs, as ratios to one inner gradient timed in the same run.

``cg`` and ``neumann``: a k-step implicit hypergradient (target ≤ 1.5 (k + 2) inner
gradients); ``unroll``: T differentiable inner steps and the reverse pass (target ≤ 3 T). The
reference is :func:`~blobench.autodiff.inner_grad` (the problem's oracle where it has one);
the autodiff-only times are measured beside it (:func:`autodiff_only`). See
:mod:`blobench.workflows.bench`.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from blobench import autodiff
from blobench.execution.registry import Registry

#: (problem, overrides) measured at every size; fewshot_digits is the neural-network problem
#: (an MLP per task), with the proximal term of iMAML so that its inner Hessian is definite
CASES: list[tuple[str, dict[str, Any]]] = [
    ("ridge_ho", {}), ("logreg_ho", {}), ("fewshot_digits", {"proximal": 1.0})]


def time_calls(fns: dict[str, Callable[[], Any]], rounds: int = 7, min_block: float = 0.02
               ) -> dict[str, float]:
    """Median seconds per call of each function, interleaved over ``rounds`` blocks (each
    block repeats a call until ``min_block`` seconds), so that drifting machine load hits
    every function alike."""
    reps: dict[str, int] = {}
    for name, fn in fns.items():  # warm-up and block size
        fn()
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        reps[name] = max(1, int(min_block / one))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / reps[name])
    return {name: statistics.median(v) for name, v in samples.items()}


@contextlib.contextmanager
def autodiff_only(problem_cls: type) -> Iterator[None]:
    """Hide a problem class's analytic oracles (the engine then uses autodiff)."""
    from blobench.contracts.problem import Problem

    hooks = [h for h in autodiff._ORACLES if h in vars(problem_cls)]
    saved = {h: vars(problem_cls)[h] for h in hooks}
    for h in hooks:
        setattr(problem_cls, h, getattr(Problem, h))
    autodiff._oracle_cache.pop(problem_cls, None)
    try:
        yield
    finally:
        for h, fn in saved.items():
            setattr(problem_cls, h, fn)
        autodiff._oracle_cache.pop(problem_cls, None)


def cost_functions(problem: Any, k: int, unroll_steps: int) -> dict[str, Callable[[], Any]]:
    """The timed computations at a point θ (a few inner steps from θ₀) and λ₀."""
    gen = torch.Generator().manual_seed(0)
    lam = problem.init_outer(gen).detach()
    lr = problem.inner_step_size(lam)
    theta0 = problem.init_inner(lam, gen).detach()
    theta = autodiff.gradient_descent(problem, theta0, lam, 5, lr)
    ops = autodiff.InnerDerivatives(problem, theta, lam)
    alpha = 1.0 / max(float(torch.linalg.vector_norm(ops.hvp(torch.ones_like(theta)))
                            / theta.numel() ** 0.5), 1e-12) * 0.5

    def unrolled() -> torch.Tensor:
        lam_ = lam.clone().requires_grad_(True)
        start = problem.init_inner(lam_, torch.Generator().manual_seed(0))
        return autodiff.outer_hypergradient(
            problem, autodiff.unroll(problem, start, lam_, unroll_steps, lr), lam_)

    return {
        "grad": lambda: autodiff.inner_grad(problem, theta, lam),
        "cg": lambda: autodiff.implicit_hypergradient(
            problem, theta, lam, lambda o, b: autodiff.cg(o.hvp, b, k)),
        "neumann": lambda: autodiff.implicit_hypergradient(
            problem, theta, lam, lambda o, b: autodiff.neumann(o.hvp, b, k, alpha)),
        "unroll": unrolled,
    }


def measure_case(registry: Registry, name: str, size: str, overrides: dict[str, Any],
                 k: int = 10, unroll_steps: int = 10, rounds: int = 7) -> dict[str, Any]:
    """Ratios (and µs) of one (problem, size) case; see the module docstring."""
    cls = registry.problem(name)
    problem = cls(size=size, seed=0, **overrides)
    fns = cost_functions(problem, k, unroll_steps)
    autodiff.oracle_counts.clear()
    fns["cg"]()
    hvps = autodiff.oracle_counts["hvp"]
    times = time_calls(fns, rounds=rounds)
    with autodiff_only(cls):
        plain = cost_functions(problem, k, unroll_steps)
        plain_times = time_calls({"grad": plain["grad"], "cg": plain["cg"]}, rounds=rounds)
    grad = times["grad"]
    targets = {"cg": 1.5 * (k + 2), "neumann": 1.5 * (k + 2), "unroll": 3.0 * unroll_steps}
    rows = {key: {"ratio": times[key] / grad, "target": targets[key],
                  "met": times[key] / grad <= targets[key], "us": times[key] * 1e6}
            for key in targets}
    return {"problem": name, "size": size, "overrides": overrides, "k": k,
            "unroll_steps": unroll_steps, "dim_inner": problem.dim_inner,
            "dim_outer": problem.dim_outer, "cg_hvps": hvps,
            "oracles": sorted(autodiff._oracles(problem)), "grad_us": grad * 1e6,
            "autodiff_grad_us": plain_times["grad"] * 1e6,
            "autodiff_cg_us": plain_times["cg"] * 1e6, **rows}
