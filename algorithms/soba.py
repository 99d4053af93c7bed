"""SOBA and SABA: single-loop stochastic bilevel optimization (Dagréou et al., NeurIPS 2022).

"A framework for bilevel optimization that enables stochastic and global variance reduction
algorithms" (Dagréou, Ablin, Vaiter, Moreau 2022). Three variables move together at every
step: θ (inner), v (the linear-system variable) and λ (outer), along the directions

    D_θ = ∇_θ g(θ, λ)                       (gradient step on the inner problem)
    D_v = ∇²_θθ g(θ, λ) v + ∇_θ f(θ, λ)     (gradient of ½ vᵀHv + vᵀ∇_θ f: v → −H⁻¹∇_θ f)
    D_λ = ∇_λ f(θ, λ) + ∇²_λθ g(θ, λ) v     (→ ∇_λ f − J H⁻¹ ∇_θ f = dF/dλ, the IFT)

    θ ← θ − ρ D_θ,   v ← v − ρ D_v,   λ ← λ − γ D_λ              (paper, eq. 5–6 / Alg. 1)

Note the sign convention of the paper: v approximates −H⁻¹∇_θ f, so J v is *added*.
Every direction is evaluated at the same (θ, v, λ) (a simultaneous update), with one inner
mini-batch i (for ∇_θ g, H v and J v) and one independent outer mini-batch j (for ∇_θ f and
∇_λ f) drawn from the problem's samplers per step, as in the paper's Algorithm 1.

SOBA: plain stochastic oracles, decreasing step sizes ρ_t = ρ (t+1)^{-2/5},
γ_t = γ (t+1)^{-3/5} (the schedule of the paper's Theorem 1, for stochastic oracles: the
default). On a deterministic (full-batch) problem use ``decay=false``, the documented setting
there: constant steps converge linearly (error 1e-15 after 600 steps on
``penalty_synthetic[example=1]``) where the decaying ones are still at 0.53 (the noise they
average out is absent; issue 14 measured the same stall at ≈ 0.25).

Under mini-batches (``finite_sum_quadratic`` quick, batches of 16, seed 0;
tests/test_fidelity_minibatch_single_loop.py) the decaying steps need a larger base outer step
than the default 0.1 × ``problem.outer_step_size()`` (made for constant steps): with it λ is
still 2.1 from λ* after 3,000 steps (start 5.8; Σ γ_t grows like t^{2/5} and the flat direction
of the value function barely moves); the documented setting γ = 2 ×
``problem.outer_step_size()`` (2/λ_max of the value function's Hessian) reaches 0.075 after
3,000 steps and 0.0063 after 10,000 (mean of seeds 0–2), below the constant-step noise floor
(0.06).

SABA: every oracle replaced by its SAGA estimator over the finite sums g = (1/n) Σ g_i,
f = (1/m) Σ f_j (Defazio et al. 2014): for each oracle h with a memory table (h̄_i),
    ĥ = mean_{i ∈ batch} (h_i(now) − h̄_i) + mean_i h̄_i,   then h̄_i ← h_i(now) for i in the batch,
with constant step sizes (the paper's Theorem 2). Memories start at zero (SAGA's estimator is
unbiased for any memory content, so the first epoch behaves like SOBA). SABA needs per-sample
indexing: it applies to problems that declare ``n_inner_samples`` and ``n_outer_samples`` and
whose samplers return index tensors (see :mod:`blobench.bases.single_loop`); when both samplers
return None (full batch) SABA's estimator is the full oracle and it coincides with SOBA at
constant steps.

Step sizes: ρ = None → ``problem.inner_step_size(λ)`` (1/L of g, re-read at each λ);
γ = None → 0.1 · ``problem.outer_step_size()`` (``single_loop.OUTER_SCALE``).
Cost per step: SOBA 1 inner gradient + 1 HVP + 1 mixed product + 1 outer gradient; SABA the
same per distinct sample of the batch (it needs per-sample values for its memories), computed
by one ``torch.func.vmap`` over the samples (:func:`~blobench.bases.single_loop.per_sample_inner`;
a Python loop only for losses vmap cannot trace); its tables take O(n dim θ + m (dim θ +
dim λ)) memory.
"""

from __future__ import annotations

import torch

from blobench.bases.algorithm import State
from blobench.bases.single_loop import (
    SingleLoop,
    decayed,
    finite_sum_reason,
    inner_batch,
    or_default,
    outer_batch,
    outer_lr_default,
    per_sample_inner,
    per_sample_outer,
    sgd_outer_step,
    soba_oracles,
)
from blobench.contracts.errors import NotApplicable
from blobench.contracts.params import POSITIVE, Param
from blobench.contracts.problem import Problem

COMMON = {
    "inner_lr": Param(float, None, "ρ: step on θ and v; None = the problem's 1/L",
                      optional=True, **POSITIVE),
    "outer_lr": Param(float, None, "γ: step on λ; None = 0.1 × the problem's default",
                      optional=True, **POSITIVE),
}


class SOBA(SingleLoop):
    name = "soba"
    family = "stochastic single-loop"
    reference = "Dagréou, Ablin, Vaiter, Moreau 2022 (NeurIPS), Alg. 1 (SOBA)"
    params = {**COMMON,
              "decay": Param(bool, True, "ρ_t = ρ(t+1)^-2/5, γ_t = γ(t+1)^-3/5 (else constant)")}

    def setup(self, problem, state):
        state.extra["v"] = torch.zeros_like(state.theta)

    def step_sizes(self, problem: Problem, state: State) -> tuple[float, float]:
        rho = or_default(self.inner_lr, problem.inner_step_size(state.lam))
        gamma = outer_lr_default(self.outer_lr, problem)
        k = state.extra["k"]
        if self.config.get("decay", False):
            rho, gamma = decayed(rho, k, 0.4), decayed(gamma, k, 0.6)
        return rho, gamma

    def directions(self, problem: Problem, state: State) -> dict[str, torch.Tensor]:
        return soba_oracles(problem, state.theta, state.extra["v"], state.lam.detach(),
                            inner_batch(problem, state), outer_batch(problem, state))

    def step(self, problem, state):
        rho, gamma = self.step_sizes(problem, state)
        d = self.directions(problem, state)
        v = state.extra["v"]
        state.theta = state.theta - rho * d["g_theta"]
        state.extra["v"] = v - rho * (d["hv"] + d["f_theta"])
        sgd_outer_step(state, d["f_lam"] + d["jv"], gamma)
        state.extra["k"] += 1
        return state


class SABA(SOBA):
    name = "saba"
    reference = "Dagréou, Ablin, Vaiter, Moreau 2022 (NeurIPS), Alg. 2 (SABA)"
    params = {**COMMON}
    #: per-sample oracles by one vmap over the batch (False: the reference Python loop)
    batched = True
    #: the per-sample memory tables hold (2n + m)·dim θ + (n + m)·dim λ numbers; larger
    #: tables are declined (status not_applicable) instead of exhausting the machine's memory
    max_table_gib = 4.0

    def applies_to(self, problem, params=None):
        return finite_sum_reason(problem)

    def setup(self, problem, state):
        super().setup(problem, state)
        n, m = int(problem.n_inner_samples), int(problem.n_outer_samples)
        th, la = state.theta, state.lam
        gib = ((2 * n + m) * th.numel() * th.element_size()
               + (n + m) * la.numel() * la.element_size()) / 2**30
        if gib > self.max_table_gib:
            raise NotApplicable(
                f"saba's per-sample memory tables need {gib:.1f} GiB (n={n}, m={m}, "
                f"dim θ={th.numel()}, dim λ={la.numel()}) > {self.max_table_gib} GiB")
        state.extra["memory"] = {
            "g_theta": th.new_zeros(n, th.numel()), "hv": th.new_zeros(n, th.numel()),
            "jv": la.new_zeros(n, la.numel()),
            "f_theta": th.new_zeros(m, th.numel()), "f_lam": la.new_zeros(m, la.numel())}
        state.extra["memory_mean"] = {key: t.sum(0) / t.shape[0]
                                      for key, t in state.extra["memory"].items()}

    @staticmethod
    def _indices(batch, n: int, device) -> torch.Tensor:
        if batch is None:
            return torch.arange(n, device=device)
        if not (isinstance(batch, torch.Tensor) and batch.dim() == 1
                and not batch.is_floating_point()):
            raise ValueError("saba: the problem's samplers must return 1-D index tensors")
        return batch

    def directions(self, problem, state):
        theta, v, lam = state.theta, state.extra["v"], state.lam.detach()
        n, m = int(problem.n_inner_samples), int(problem.n_outer_samples)
        batch_i, batch_j = inner_batch(problem, state), outer_batch(problem, state)
        if batch_i is None and batch_j is None:
            # full batches: the SAGA estimator is the full oracle itself (every memory entry
            # is replaced), so skip the per-sample loop
            return soba_oracles(problem, theta, v, lam)
        idx_i = self._indices(batch_i, n, theta.device)
        idx_j = self._indices(batch_j, m, theta.device)
        uniq_i, inv_i = torch.unique(idx_i, return_inverse=True)
        uniq_j, inv_j = torch.unique(idx_j, return_inverse=True)
        values = dict(zip(("g_theta", "hv", "jv"),
                          per_sample_inner(problem, theta, lam, v, uniq_i, self.batched),
                          strict=True))
        values.update(zip(("f_theta", "f_lam"),
                          per_sample_outer(problem, theta, lam, uniq_j, self.batched),
                          strict=True))
        # a batch without repeats, in increasing order (the epoch sampler's blocks): inv = 0..b-1
        plain_i, plain_j = (len(uniq) == len(idx) and bool((uniq == idx).all())
                            for uniq, idx in ((uniq_i, idx_i), (uniq_j, idx_j)))
        out = {}
        for key, table in state.extra["memory"].items():
            uniq, inv, plain = ((uniq_i, inv_i, plain_i) if key in ("g_theta", "hv", "jv")
                                else (uniq_j, inv_j, plain_j))
            # h_i(now) − h̄_i once per distinct sample (h̄ at idx = h̄ at uniq, gathered by inv)
            change = values[key] - table[uniq]
            # SAGA: mean over the batch of (h_i(now) − h̄_i), plus the memory mean
            mean = state.extra["memory_mean"][key]
            out[key] = (change if plain else change[inv]).mean(0) + mean
            state.extra["memory_mean"][key] = mean + change.sum(0) / table.shape[0]
            table[uniq] = values[key]
        return out
