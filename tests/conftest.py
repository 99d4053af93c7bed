"""Shared fixtures: the registry and small problems."""

from __future__ import annotations

import pytest
import torch

from blobench.execution.registry import get_registry

torch.set_default_dtype(torch.float64)


@pytest.fixture(scope="session")
def registry():
    return get_registry()


def hypergrad_after_one_step(registry, problem, algorithm: str, lam: torch.Tensor, **params):
    """(estimate, exact) of dF/dλ from one outer step of ``algorithm`` started at ``lam``."""
    alg = registry.algorithm(algorithm)(**params)
    gen = torch.Generator().manual_seed(0)
    state = alg.init(problem, problem.init_inner(lam, gen), lam.clone(), gen)
    state = alg.step(problem, state)
    return state.hypergrad, problem.exact_hypergradient(state.hypergrad_at)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


# finite_sum_quadratic quick, seed 0 (the mini-batch fidelity tests: test_fidelity_minibatch*.py)
@pytest.fixture(scope="module")
def fsq(registry):
    """Batches of 16 (the problem's quick default)."""
    return registry.problem("finite_sum_quadratic")(seed=0)


@pytest.fixture(scope="module")
def fsq64(registry):
    """The same instance with mini-batches of 64 (of its 128 samples)."""
    return registry.problem("finite_sum_quadratic")(seed=0, batch_size=64)


@pytest.fixture(scope="module")
def fsq_full(registry):
    """The same instance with full batches (the deterministic case)."""
    return registry.problem("finite_sum_quadratic")(seed=0, batch_size=0)
