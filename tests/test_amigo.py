"""AmIGO follows Arbel & Mairal 2022, Algorithm 1: one outer mini-batch per outer step, its
∇_θ f the right-hand side of all M linear-system steps; checked by counting the draws and
oracles, and against the step written out by hand on the recorded batches."""

from __future__ import annotations

import torch

from blobench import autodiff
from blobench.execution.registry import get_registry

REG = get_registry()
T, M = 3, 4


def _logging_problem(**over):
    """finite_sum_quadratic (quick) recording every mini-batch its samplers hand out."""
    base = REG.problem("finite_sum_quadratic")

    class Logged(base):
        name = ""  # test-only, not an entry

        def build(self, generator):
            super().build(generator)
            self.drawn = []

        def sample_inner_batch(self, generator):
            batch = super().sample_inner_batch(generator)
            self.drawn.append(("inner", batch))
            return batch

        def sample_outer_batch(self, generator):
            batch = super().sample_outer_batch(generator)
            self.drawn.append(("outer", batch))
            return batch

    return Logged(size="quick", seed=0, **over)


def _start(problem, **params):
    alg = REG.algorithm("amigo")(inner_steps=T, linear_steps=M, **params)
    gen = torch.Generator().manual_seed(0)
    lam0 = problem.init_outer(gen)
    return alg, alg.init(problem, problem.init_inner(lam0, gen), lam0, gen)


def test_one_outer_batch_and_one_outer_gradient_per_outer_step():
    problem = _logging_problem()
    alg, state = _start(problem)
    for _ in range(5):
        problem.drawn.clear()
        autodiff.oracle_counts.clear()
        state = alg.step(problem, state)
        kinds = [kind for kind, _ in problem.drawn]
        assert kinds.count("outer") == 1, kinds
        assert kinds.count("inner") == T + M + 1, kinds  # SGD on θ, M on v, 1 mixed
        assert autodiff.oracle_counts["grad_outer"] == 1, dict(autodiff.oracle_counts)
        assert autodiff.oracle_counts["hvp"] == M and autodiff.oracle_counts["mixed"] == 1


def test_step_equals_algorithm_1_written_out_on_the_recorded_batches():
    problem = _logging_problem()
    alg, state = _start(problem)
    state = alg.step(problem, state)  # a non-zero warm start v for the second step
    theta, lam = state.theta.clone(), state.lam.detach().clone()
    v = state.extra["linear_solution"].clone()
    problem.drawn.clear()
    state = alg.step(problem, state)
    batches = [b for _, b in problem.drawn]
    lr = problem.inner_step_size(lam)
    for b in batches[:T]:  # line 3: T SGD steps on g
        theta = theta - lr * problem.inner_grad_oracle(theta, lam, b)
    f_theta, f_lam = problem.outer_grads_oracle(theta, lam, batches[T])  # lines 4-5
    for b in batches[T + 1:T + 1 + M]:  # line 6: SGD on ½vᵀHv − vᵀ∇_θ f, same ∇_θ f
        v = v - lr * (problem.inner_hessian_operator(theta, lam, b)(v) - f_theta)
    psi = f_lam - problem.mixed_oracle(theta, lam, v, batches[-1])  # lines 7-8
    torch.testing.assert_close(state.theta, theta, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(state.extra["linear_solution"], v, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(state.hypergrad, psi, rtol=1e-12, atol=1e-14)
