"""Discrete variants of the algorithm entries and their structural check (issue 21).

A *variant* of an entry is one accepted combination of its discrete hyperparameters — its
``bool`` and ``choices`` parameters (``None`` too when optional): warm / cold start, inner
solver, outer optimizer, estimator switches — continuous ones count once
(:func:`enumerate_variants`; the constructor validates each combination, e.g. sama rejects
cold starts). ``blobench check NAME`` checks an entry's defaults; ``blobench list --variants``
counts a variant as *checked* only if it passes :func:`check_variant`, a fast structural
check by the kind of entry (:func:`blobench.workflows.check_claims.entry_kind`):

- estimators of dF/dλ (consistent, stochastic, penalty / value-function): on the first problem
  of :data:`~blobench.workflows.check.CHECK_PROBLEMS` where the variant applies and that has
  an ``exact_hypergradient`` (quadratic for most), from the cell's λ₀ and θ₀, the direction of
  the last of :data:`STEPS_DOUBLE_LOOP` (a double-loop entry: a complete estimate per step) or
  :data:`STEPS_SINGLE_LOOP` outer steps (single-loop entries warm up their linear-system
  variable from 0, so their first directions are ∇_λ f alone) is finite and has positive
  cosine with the exact dF/dλ where it was estimated. The direction is ``state.hypergrad``,
  or λ_{k−1} − λ_k for entries that report none;
- deliberately biased approximations (``approximation``: the identity-Hessian step points away
  from dF/dλ on ``quadratic`` by design), meta-learning and black-box entries: *run only* —
  the steps run and stay finite on the first check problem where they apply. They are listed
  apart, not counted as checked: their claim is verified for the defaults by ``blobench
  check``.

A variant that applies to no check problem, raises, or (estimators) points away from the
exact hypergradient is not counted, with its reason. The check is short: it catches a variant
that crashes, returns NaN, or does not descend on a well-conditioned problem (a dropped term
in the derivative of an inner solver, a sign error); the accuracy of each variant as its knob
grows is the job of the tests (tests/test_inner_solvers_*.py for the inner solvers).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch

from blobench.bases.algorithm import DoubleLoop, cell_theta0
from blobench.contracts.params import resolve
from blobench.execution.registry import Registry
from blobench.execution.spec import expand, format_entry
from blobench.workflows import check_claims
from blobench.workflows.check import CHECK_PROBLEMS, _has_exact


def discrete_axes(cls: type) -> dict[str, list[Any]]:
    """The discrete hyperparameters of an algorithm class and their values."""
    axes = {}
    for pname, param in cls.params.items():
        values = (list(param.choices) if param.choices is not None
                  else [False, True] if param.type is bool else [])
        if values:
            axes[pname] = values + [None] * bool(param.optional)
    return axes


def enumerate_variants(cls: type) -> list[dict[str, Any]]:
    """Every combination of the discrete hyperparameters the entry accepts."""
    axes = discrete_axes(cls)
    out = []
    for combo in itertools.product(*axes.values()):
        params = dict(zip(axes, combo, strict=True))
        try:
            cls(**params)
        except Exception:  # a combination the entry rejects is no variant
            continue
        out.append(params)
    return out


@dataclass
class VariantResult:
    entry: str
    params: dict[str, Any]
    passed: bool
    detail: str

    @property
    def label(self) -> str:
        return format_entry(self.entry, {k: v for k, v in self.params.items()})


@dataclass
class VariantReport:
    results: list[VariantResult] = field(default_factory=list)

    @property
    def enumerated(self) -> int:
        return len(self.results)

    @property
    def checked(self) -> int:
        return sum(r.passed for r in self.results)

    def per_entry(self) -> dict[str, tuple[int, int]]:
        """entry → (variants passing the check, variants enumerated)."""
        counts: dict[str, list[int]] = {}
        for r in self.results:
            c = counts.setdefault(r.entry, [0, 0])
            c[0] += r.passed
            c[1] += 1
        return {k: (v[0], v[1]) for k, v in counts.items()}

    @property
    def run_only(self) -> int:
        return sum(r.detail.startswith("run only") for r in self.results)

    def failures(self) -> list[VariantResult]:
        return [r for r in self.results if not r.passed and not r.detail.startswith("run only")]

    def summary(self) -> str:
        return (f"{self.checked} of {self.enumerated} discrete algorithm configurations pass the "
                f"structural check (one step of a double-loop entry, {STEPS_SINGLE_LOOP} of a "
                "single-loop one, on its first check problem with an exact hypergradient: "
                f"finite, positive cosine with dF/dλ); {self.run_only} more only run (biased "
                "approximations, meta-learning, black-box: no cosine check), "
                f"{len(self.failures())} fail or apply to no check problem")


#: outer steps of the structural check
STEPS_DOUBLE_LOOP = 1
STEPS_SINGLE_LOOP = 20
#: kinds whose direction is compared with the exact hypergradient
ESTIMATOR_KINDS = ("consistent", "stochastic", "lambda_star")


def _problem_for(registry: Registry, algorithm: Any, need_exact: bool
                 ) -> tuple[str, str | None]:
    """The first check problem (with an exact hypergradient when ``need_exact``) where the
    variant applies, or ('', the reasons it applies to none)."""
    reasons = []
    for spec in CHECK_PROBLEMS:
        pname, grid = expand(spec)
        if pname not in registry.problems:
            continue
        pcls = registry.problem(pname)
        if need_exact and not _has_exact(pcls):
            continue
        params = resolve(pname, pcls.params, {**pcls.sizes["quick"], **grid[0]})
        reason = algorithm.skip_reason(pcls, params)
        if reason is None:
            return spec, None
        reasons.append(f"{spec}: {reason}")
    what = "check problem with an exact hypergradient" if need_exact else "check problem"
    return "", f"applies to no {what} (" + "; ".join(reasons) + ")"


def check_variant(registry: Registry, name: str, params: dict[str, Any], seed: int = 0
                  ) -> VariantResult:
    """The structural check of ``name[params]`` (module docstring); ``detail`` starts with
    ``run only`` for the kinds that are not compared with the exact hypergradient."""
    try:
        cls = registry.algorithm(name)
        algorithm = cls(**params)
        estimator = (check_claims.entry_kind(cls, name) in ESTIMATOR_KINDS
                     and "black-box" not in (cls.family or ""))
        spec, why = _problem_for(registry, algorithm, need_exact=estimator)
        if why:
            return VariantResult(name, params, False, why)
        pname, grid = expand(spec)
        problem = registry.problem(pname)(seed=seed, **grid[0])
        gen = torch.Generator().manual_seed(seed)
        lam = problem.init_outer(gen)
        state = algorithm.init(problem, cell_theta0(problem, lam), lam.clone(), gen)
        steps = STEPS_DOUBLE_LOOP if isinstance(algorithm, DoubleLoop) else STEPS_SINGLE_LOOP
        for _ in range(steps):
            before = state.lam.detach().clone()
            state = algorithm.step(problem, state)
        if state.hypergrad is not None:
            direction, at = state.hypergrad, state.hypergrad_at
        else:
            direction, at = before - state.lam.detach(), before
        if not bool(torch.isfinite(direction).all()):
            return VariantResult(name, params, False, f"{spec}: non-finite direction")
        if not estimator:
            return VariantResult(name, params, False, f"run only ({spec}, {steps} steps)")
        cosine = float(torch.nn.functional.cosine_similarity(
            direction.flatten().double(), problem.exact_hypergradient(at).flatten().double(),
            dim=0))
        return VariantResult(name, params, cosine > 0.0,
                             f"{spec}: cosine {cosine:+.3f} after {steps} steps")
    except Exception as exc:  # a variant that raises is a failed variant, never a crash
        return VariantResult(name, params, False, f"{type(exc).__name__}: {exc}")


def check_variants(registry: Registry, names: list[str] | None = None) -> VariantReport:
    """:func:`check_variant` for every variant of the named entries (all when None)."""
    report = VariantReport()
    for name in sorted(names if names is not None else registry.algorithms):
        for params in enumerate_variants(registry.algorithm(name)):
            report.results.append(check_variant(registry, name, params))
    return report


def main() -> None:  # pragma: no cover - `python -m blobench.workflows.variants [NAME ...]`
    import sys

    from blobench.execution.registry import get_registry

    report = check_variants(get_registry(), sys.argv[1:] or None)
    for entry, (passed, total) in sorted(report.per_entry().items()):
        print(f"{entry}: {passed}/{total}")
    for r in report.results:
        if not r.passed:
            print(f"  not counted: {r.label}: {r.detail[:160]}")
    print(report.summary())


if __name__ == "__main__":  # pragma: no cover
    main()
