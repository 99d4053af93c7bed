"""Mini-batch sampling schemes of finite-sum problems (index tensors).

A finite-sum problem g = (1/n) Σ_i g_i draws its mini-batches as 1-D index tensors (see
:meth:`blobench.contracts.problem.Problem.index_batch`). Two schemes:

``without_replacement`` (the default of finite-sum problems) — epochs over fixed blocks: the
    samples are cut into ⌈n/b⌉ blocks of b consecutive indices (the last one shorter when b
    does not divide n), and each epoch visits every block once, in a fresh random order (a
    permutation of the blocks drawn from the run's generator at the start of each epoch).
    This is the sampler of benchopt's bilevel benchmark (Dagréou et al. 2022), and the
    without-replacement regime of SAGA-type analyses: every sample is seen once per epoch, so
    a variance-reduced method's memory is fully refreshed every ⌈n/b⌉ steps.
``with_replacement`` — b indices drawn i.i.d. uniformly from {0, …, n−1} at every draw (the
    textbook stochastic-gradient model; blobench's only scheme before).

A problem declares ``"sampling": sampling_param()`` and its ``sample_*_batch`` methods call
:func:`index_batch` (instead of the scheme-less ``Problem.index_batch``, which draws with
replacement), naming the stream: ``index_batch(self, n, b, generator, "inner")``.

The scheme is a **problem parameter**, not a harness option:
the problem owns its finite sums and their samplers, the bracket syntax selects it
(``-p "finite_sum_quadratic[sampling=with_replacement]"``), grids and ``blobench tune`` handle
it like any parameter, and it is recorded in every result's ``config.problem_params`` and in
its cache key with no new record field. A problem that does not declare it draws
``with_replacement`` (:data:`UNDECLARED`, the behaviour plugins were written against).

Determinism: every random draw comes from the run's generator (the harness seeds it with the
cell's seed), so the same seed gives the same batches. The position in the epoch is state;
it is kept per generator object (a weak reference) and per stream (``"inner"``/``"outer"``),
so the inner and outer sums have independent epochs, a new run (new generator) starts a new
epoch, and a replay on a deep copy of the state (the memory probe) leaves the run's own
epoch untouched.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch

from blobench.contracts.errors import UserError
from blobench.contracts.params import Param
from blobench.contracts.problem import Problem

SCHEMES = ("without_replacement", "with_replacement")
#: the default of problems that declare :func:`sampling_param`
DEFAULT = "without_replacement"
#: the scheme of problems that do not declare it
UNDECLARED = "with_replacement"


def sampling_param(default: str = DEFAULT) -> Param:
    """The ``sampling`` parameter of a finite-sum problem (choices :data:`SCHEMES`)."""
    if default not in SCHEMES:
        raise ValueError(f"sampling_param default must be one of {SCHEMES}, got {default!r}")
    return Param(str, default, "mini-batch scheme: epochs of shuffled blocks "
                 "(without_replacement) or i.i.d. draws (with_replacement)", choices=SCHEMES)


@dataclass
class _Epoch:
    """Where a without-replacement stream is: the block order of this epoch and the cursor."""

    order: list[int] = field(default_factory=list)
    cursor: int = 0


class EpochSampler:
    """Blocks of ``batch_size`` consecutive indices of n, a fresh block order per epoch.

    ``draw(generator, stream)`` returns the next block as a LongTensor on ``device``; the
    epoch state lives per (generator, stream), see the module docstring.
    """

    def __init__(self, n: int, batch_size: int, device: torch.device | str = "cpu") -> None:
        if not 0 < batch_size < n:
            raise ValueError(f"EpochSampler needs 0 < batch_size < n, got {batch_size}, {n}")
        self.n, self.batch_size, self.device = n, batch_size, torch.device(device)
        self.n_blocks = -(-n // batch_size)
        self._epochs: weakref.WeakKeyDictionary[torch.Generator, dict[Hashable, _Epoch]] = (
            weakref.WeakKeyDictionary())

    def draw(self, generator: torch.Generator, stream: Hashable = None) -> torch.Tensor:
        epoch = self._epochs.setdefault(generator, {}).setdefault(stream, _Epoch())
        if epoch.cursor == len(epoch.order):
            epoch.order = torch.randperm(self.n_blocks, generator=generator).tolist()
            epoch.cursor = 0
        block = epoch.order[epoch.cursor]
        epoch.cursor += 1
        start = block * self.batch_size
        return torch.arange(start, min(start + self.batch_size, self.n), device=self.device)


def with_replacement(n: int, batch_size: int, generator: torch.Generator,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``batch_size`` indices drawn i.i.d. uniformly from {0, …, n−1}."""
    return torch.randint(n, (batch_size,), generator=generator).to(device)


def index_batch(problem: Problem, n: int, batch_size: int, generator: torch.Generator,
                stream: str) -> torch.Tensor | None:
    """A mini-batch of one of ``problem``'s finite sums over n examples, by its scheme.

    ``None`` (the full batch) when ``batch_size`` is 0 or ≥ n; else a LongTensor of indices
    on ``problem.device``: the next block of the ``stream`` ("inner"/"outer") epoch when
    ``problem.config["sampling"]`` is ``without_replacement``, else i.i.d. draws. The epoch
    samplers are cached on the problem instance (one per (n, batch_size)).
    """
    if batch_size == 0 or batch_size >= n:
        return None
    scheme = problem.config.get("sampling", UNDECLARED)
    if scheme not in SCHEMES:
        raise UserError(f"sampling scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    if scheme == "with_replacement":
        return with_replacement(n, batch_size, generator, problem.device)
    samplers = problem.__dict__.setdefault("_epoch_samplers", {})
    if (n, batch_size) not in samplers:
        samplers[n, batch_size] = EpochSampler(n, batch_size, problem.device)
    return samplers[n, batch_size].draw(generator, stream)


class FiniteSumSamplers:
    """Mixin of a finite-sum problem: ``sample_inner_batch`` / ``sample_outer_batch`` over its
    ``n_inner_samples`` / ``n_outer_samples`` with ``config["batch_size"]``, by its scheme.

    Use as ``class MyProblem(FiniteSumSamplers, Problem)`` with ``"batch_size"`` and
    ``"sampling": sampling_param()`` among the parameters.
    """

    def sample_inner_batch(self, generator: torch.Generator) -> torch.Tensor | None:
        return index_batch(self, self.n_inner_samples, self.config["batch_size"], generator,
                           "inner")

    def sample_outer_batch(self, generator: torch.Generator) -> torch.Tensor | None:
        return index_batch(self, self.n_outer_samples, self.config["batch_size"], generator,
                           "outer")
