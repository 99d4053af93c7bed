"""Test-only entries that fail on purpose, to check that the harness records and survives it.

Loaded only through ``--plugins tests/fault_plugins``; never part of the benchmark.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch

from blobench.bases.algorithm import DoubleLoop, State
from blobench.contracts.params import Param
from blobench.contracts.problem import Problem


class _Faulty(DoubleLoop):
    params = {**DoubleLoop.params, "at_step": Param(int, 2, "the outer step that fails", low=1)}

    def hypergradient(self, problem: Problem, state: State):
        state.extra["count"] = state.extra.get("count", 0) + 1
        if state.extra["count"] >= self.at_step:
            self.fail(state)
        return state.theta, torch.zeros_like(state.lam)

    def fail(self, state: State) -> None:
        raise NotImplementedError


class RaiseAtStep(_Faulty):
    name = "fault_raise"

    def fail(self, state):
        raise RuntimeError("injected failure")


class NanAtStep(_Faulty):
    name = "fault_nan"

    def fail(self, state):
        state.theta = state.theta * float("nan")


class HangInStep(_Faulty):
    name = "fault_hang"

    def fail(self, state):
        time.sleep(3600)


class DieInStep(_Faulty):
    name = "fault_die"

    def fail(self, state):
        os.kill(os.getpid(), signal.SIGKILL)


class ExitInStep(_Faulty):
    name = "fault_exit"

    def fail(self, state):
        sys.exit(3)


class InterruptInStep(_Faulty):
    name = "fault_interrupt"

    def fail(self, state):
        raise KeyboardInterrupt


class ExplodeInStep(_Faulty):
    """Finite but exploding iterates: θ ← (θ + 1)·1e8 from ``at_step`` on."""

    name = "fault_explode"

    def fail(self, state):
        state.theta = (state.theta + 1.0) * 1e8


class NonScalarLoss(Problem):
    """A problem whose inner loss is not a scalar (an API violation)."""

    name = "fault_nonscalar"
    sizes = {"quick": {}, "full": {}}

    def build(self, generator):
        pass

    dim_inner = 3
    dim_outer = 2

    def inner_loss(self, theta, lam, batch=None):
        return theta**2

    def outer_loss(self, theta, lam, batch=None):
        return (theta**2).sum()

    def init_outer(self, generator):
        return torch.zeros(2)

    def init_inner(self, lam, generator):
        return torch.zeros(3)

    def evaluate(self, theta, lam):
        return {"test_loss": 0.0}


class SingularHessian(Problem):
    """A singular inner Hessian: g(θ, λ) = ½ θ₁² + λ θ₂, so ∇²_θθ g = diag(1, 0) and λ drives
    θ along the Hessian's null direction (g is bounded below only at λ = 0); outer
    f(θ, λ) = ½ (θ₁ − 1)² + ½ (θ₂ − 1)². The approximations that assume H⁻¹ ≈ η I couple θ₂ and
    λ into an oscillation that a large outer step turns into exponential growth: finite
    iterates of norm 1e30 and more, which the growth rule records as ``diverged``."""

    name = "fault_singular"
    sizes = {"quick": {}, "full": {}}
    dim_inner = 2
    dim_outer = 1
    primary_metric = "test_loss"

    def build(self, generator):
        pass

    def inner_loss(self, theta, lam, batch=None):
        return 0.5 * theta[0] ** 2 + lam[0] * theta[1]

    def outer_loss(self, theta, lam, batch=None):
        return 0.5 * ((theta - 1.0) ** 2).sum()

    def init_outer(self, generator):
        return torch.ones(1)

    def init_inner(self, lam, generator):
        return torch.zeros(2)

    def inner_step_size(self, lam):
        return 1.0

    def outer_step_size(self):
        return 1.0

    def evaluate(self, theta, lam):
        return {"test_loss": float(self.outer_loss(theta, lam))}


class FlawedLosses(Problem):
    """A sane quadratic whose ``flaw`` breaks the API in one way: the harness must name it."""

    name = "fault_flawed"
    params = {"flaw": Param(str, "sane", "what is broken", choices=(
        "sane", "float16", "int64", "detached", "device", "nan_metric"))}
    sizes = {"quick": {}, "full": {}}
    dim_inner = 3
    dim_outer = 3

    def build(self, generator):
        pass

    def _loss(self, value):
        flaw = self.config["flaw"]
        if flaw == "float16":
            return value.half()
        if flaw == "int64":
            return value.round().long()
        if flaw == "detached":
            return torch.tensor(float(value))
        if flaw == "device":
            return torch.zeros((), device="meta")
        return value

    def inner_loss(self, theta, lam, batch=None):
        return self._loss(0.5 * ((theta - lam) ** 2).sum())

    def outer_loss(self, theta, lam, batch=None):
        return self._loss(0.5 * ((theta - 1.0) ** 2).sum())

    def init_outer(self, generator):
        return torch.zeros(3)

    def init_inner(self, lam, generator):
        return torch.zeros(3)

    def evaluate(self, theta, lam):
        nan = self.config["flaw"] == "nan_metric"
        return {"test_loss": float("nan") if nan else float(((theta - 1.0) ** 2).sum())}
