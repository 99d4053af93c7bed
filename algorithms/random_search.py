"""Random search over λ (Bergstra & Bengio, JMLR 2012): the black-box baseline.

Each outer step is one trial (:class:`blobench.bases.blackbox.BlackBoxSearch`): λ drawn uniformly
from the box λ₀ ± R (from the run's generator; the first trial is λ₀), the inner problem solved
to a relative gradient tolerance from a fixed cold start, F(λ) = f(θ(λ), λ) evaluated on the
full outer objective, the best trial kept as the run's λ and θ. Defaults: R = 3, inner
tolerance 1e-6 (at most 2000 steps at the problem's 1/L), dim λ ≤ 10.
"""

from __future__ import annotations

import torch

from blobench.bases.blackbox import BlackBoxSearch


class RandomSearch(BlackBoxSearch):
    name = "random_search"
    reference = "Bergstra & Bengio 2012 (JMLR), random search"

    def propose(self, problem, state):
        low, high = state.extra["low"], state.extra["high"]
        u = torch.rand(low.shape, generator=state.extra["generator"]).to(low)
        return low + (high - low) * u
