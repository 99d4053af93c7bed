"""Tree-structured Parzen estimator search over λ (Bergstra, Bardenet, Bengio, Kégl, NeurIPS
2011), through Optuna's ``TPESampler`` (Akiba et al., KDD 2019): the model-based black-box
baseline.

Each outer step is one trial (:class:`blobench.bases.blackbox.BlackBoxSearch`): Optuna's ask/tell
interface proposes λ in the box λ₀ ± R (one float per coordinate; the first trial is λ₀, added
to the study as a completed trial), the inner problem is solved to tolerance and F(λ) is told
back; the best trial is the run's λ and θ. The sampler is seeded from the run's generator
(same seed, same trials). TPE's defaults as Optuna ships them (10 random start-up trials,
24 EI candidates). Optional dependency: ``pip install blobench[blackbox]`` (optuna); without
it the entry is skipped with that reason.
"""

from __future__ import annotations

import importlib.util

import torch

from blobench.bases.blackbox import BlackBoxSearch


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaTPE(BlackBoxSearch):
    name = "optuna_tpe"
    reference = "Bergstra et al. 2011 (NeurIPS), TPE; Akiba et al. 2019 (Optuna)"

    def applies_to(self, problem, params=None):
        if importlib.util.find_spec("optuna") is None:
            return "optuna is not installed (pip install 'blobench[blackbox]')"
        return super().applies_to(problem, params)

    def setup(self, problem, state):
        optuna = _optuna()
        seed = int(torch.randint(2**31 - 1, (1,), generator=state.extra["generator"]))
        state.extra["study"] = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        low, high = state.extra["low"].tolist(), state.extra["high"].tolist()
        state.extra["space"] = {f"lam{i}": optuna.distributions.FloatDistribution(lo, hi)
                                for i, (lo, hi) in enumerate(zip(low, high, strict=True))}

    def propose(self, problem, state):
        trial = state.extra["study"].ask(state.extra["space"])
        state.extra["trial"] = trial
        return state.lam.new_tensor([trial.params[k] for k in state.extra["space"]])

    def observe(self, state, lam, value):
        study, trial = state.extra["study"], state.extra.pop("trial", None)
        if trial is not None:
            study.tell(trial, value)
            return
        optuna = _optuna()  # the initial point, told as a finished trial
        params = {k: float(x) for k, x in zip(state.extra["space"], lam.tolist(), strict=True)}
        study.add_trial(optuna.trial.create_trial(params=params,
                                                  distributions=state.extra["space"],
                                                  value=value))
