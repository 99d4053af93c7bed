"""blobench — a benchmark suite for gradient-based bilevel optimization (PyTorch)."""

from blobench.algorithm import Algorithm, DoubleLoop, ImplicitDoubleLoop, State
from blobench.errors import UserError
from blobench.params import Param
from blobench.problem import Budget, Problem

__all__ = ["Algorithm", "Budget", "DoubleLoop", "ImplicitDoubleLoop", "Param", "Problem",
           "State", "UserError"]
__version__ = "0.1.0"
