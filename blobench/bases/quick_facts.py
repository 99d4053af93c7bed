"""Facts about a problem class's quick-size instance that applicability checks need, remembered.

Some entries decide whether they apply to a problem from its quick instance: black-box
search refuses dim λ > ``max_dim`` (:mod:`blobench.bases.blackbox`), the finite-sum methods
need ``n_inner_samples`` / ``n_outer_samples`` where a problem sets them in ``build``
(:func:`blobench.bases.single_loop.finite_sum_reason`). Building those instances (data
sets, few-shot task pools, networks) cost ~4.7 of the ~5.5 CPU-s of an uncached
``blobench list`` and of the planning of every ``blobench run`` (issue 15). The facts are
small and depend on the problem's own file: they are computed once and stored in
``$XDG_CACHE_HOME/blobench/quick_facts/``, keyed by the class, its file's bytes and those of
the Problem contract, and read back by later processes. A cell still checks its real instance
(its size and parameters) in ``init``; these facts only decide what the plan and the listing
show. A problem whose data are missing has no facts (None): its cells say so themselves.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from blobench.contracts.problem import Problem

#: the attributes recorded (present or not) on the quick instance
FACT_ATTRIBUTES = ("n_inner_samples", "n_outer_samples")


def _cache_file(problem: type[Problem]) -> Path | None:
    try:
        source = Path(inspect.getfile(problem)).read_bytes()
        contract = Path(inspect.getfile(Problem)).read_bytes()  # how instances are built
    except (OSError, TypeError):
        return None
    key = hashlib.sha256(b"\0".join([problem.__qualname__.encode(), contract, source])
                         ).hexdigest()[:24]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "blobench" / "quick_facts" / f"{key}.json"


@functools.cache
def quick_facts(problem: type[Problem]) -> dict[str, Any] | None:
    """``{"dim_outer": int, "has": {attribute: bool}}`` of ``problem(size="quick", seed=0)``;
    None when it cannot be built (data missing, or any error: the cell decides then)."""
    path = _cache_file(problem)
    if path is not None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    try:
        instance = problem(size="quick", seed=0)
        facts = {"dim_outer": int(instance.dim_outer),
                 "has": {name: hasattr(instance, name) for name in FACT_ATTRIBUTES}}
    except Exception:  # data missing, a heavy build's error: init decides on the instance
        return None
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(facts))
            os.replace(tmp, path)
        except OSError:  # a read-only cache costs only the rebuild
            pass
    return facts
