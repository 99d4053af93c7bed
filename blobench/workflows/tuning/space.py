"""Search spaces: an algorithm's declared space or the default one, and their grids.

An algorithm may declare ``search_space = {"param": LogUniform(...) | IntRange(...) |
Choice([...])}`` (:mod:`blobench.contracts.params`); a relative ``LogUniform`` multiplies the
problem's outer step or its inner 1/L, measured on a tuning instance (:func:`step_scales`).
Without a declaration the default space is used (:func:`default_space`; the rules are in
:mod:`blobench.workflows.tuning`).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import torch

from blobench.contracts.params import IntRange, LogUniform, SearchDim
from blobench.execution.registry import Registry

#: the default search space (see blobench.workflows.tuning)
OUTER_LR = LogUniform(0.1, 100.0, 4, relative="outer")
INNER_LR = LogUniform(0.3, 1.0, 2, relative="inner")
INNER_STEPS = IntRange(5, 50, 3, log=True)
INNER_LR_NAMES = ("inner_lr", "lr")


def default_space(alg_cls: type, seconds_budget: bool = False) -> dict[str, SearchDim]:
    """The search space of an algorithm that declares none (see the module docstring)."""
    params = alg_cls.params
    space: dict[str, SearchDim] = {}
    if "outer_lr" in params and params["outer_lr"].type is float:
        space["outer_lr"] = OUTER_LR
    for name in INNER_LR_NAMES:
        if name in params and params[name].type is float:
            space[name] = INNER_LR
    if seconds_budget and "inner_steps" in params and params["inner_steps"].type is int:
        space["inner_steps"] = INNER_STEPS
    return space


def search_space(alg_cls: type, seconds_budget: bool = False) -> dict[str, SearchDim]:
    declared = getattr(alg_cls, "search_space", None)
    return dict(declared) if declared else default_space(alg_cls, seconds_budget)


def describe_space(space: dict[str, SearchDim], grids: dict[str, list[Any]],
                   scales: dict[str, float]) -> dict[str, Any]:
    out = {}
    for name, dim in space.items():
        item = dim.describe()
        if getattr(dim, "relative", None):
            item["scale"] = scales[dim.relative]
        item["values"] = grids[name]
        out[name] = item
    return out


def step_scales(registry: Registry, problem: str, pparams: dict[str, Any], size: str,
            seed: int) -> dict[str, float]:
    """The problem's default outer step and inner step (1/L at λ₀) on a tuning instance."""
    prob = registry.problem(problem)(size=size, seed=seed, **pparams)
    lam0 = prob.init_outer(torch.Generator().manual_seed(seed))
    return {"outer": float(prob.outer_step_size()), "inner": float(prob.inner_step_size(lam0))}


def trial_points(space: dict[str, SearchDim], scales: dict[str, float],
                 max_trials: int | None) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    grids = {name: dim.grid(scales[dim.relative] if getattr(dim, "relative", None) else 1.0)
             for name, dim in space.items()}
    names = list(grids)
    points = [dict(zip(names, combo, strict=True))
              for combo in itertools.product(*(grids[n] for n in names))]
    if max_trials is not None and len(points) > max_trials:
        keep = sorted(random.Random(0).sample(range(len(points)), max_trials))
        points = [points[i] for i in keep]
    return points, grids
