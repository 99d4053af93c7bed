"""blobench — a benchmark suite for gradient-based bilevel optimization (PyTorch).

The plugin API (``Problem``, ``Algorithm``, ``DoubleLoop``, ``ImplicitDoubleLoop``, ``Param``,
``State``, ``Budget``, ``UserError``) and the Python API (``run``, ``load_results``,
``RunSpec``, ``prepare``; see docs/python-api.md) are exported lazily (PEP 562): importing
``blobench`` alone imports no torch, so the command line starts fast; the first access to a
name imports its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: exported name -> the module that defines it
_EXPORTS = {
    "Algorithm": "blobench.bases.algorithm", "DoubleLoop": "blobench.bases.algorithm",
    "ImplicitDoubleLoop": "blobench.bases.algorithm", "State": "blobench.bases.algorithm",
    "UserError": "blobench.contracts.errors", "Param": "blobench.contracts.params",
    "Budget": "blobench.contracts.problem", "Problem": "blobench.contracts.problem",
    "run": "blobench.workflows.api", "load_results": "blobench.workflows.api",
    "RunSpec": "blobench.workflows.api",
    "prepare": "blobench.workflows.api",
}
__all__ = ["Algorithm", "Budget", "DoubleLoop", "ImplicitDoubleLoop", "Param", "Problem",
           "RunSpec", "State", "UserError", "load_results", "prepare", "run"]

if TYPE_CHECKING:  # pragma: no cover
    from blobench.bases.algorithm import Algorithm, DoubleLoop, ImplicitDoubleLoop, State
    from blobench.contracts.errors import UserError
    from blobench.contracts.params import Param
    from blobench.contracts.problem import Budget, Problem
    from blobench.workflows.api import RunSpec, load_results, prepare, run


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'blobench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
