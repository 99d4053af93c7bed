"""``blobench tune``: per-(problem, algorithm) hyperparameter search on the validation objective.

A leaderboard that ranks methods at arbitrary step sizes ranks the step sizes. ``blobench
tune`` runs a documented search space per algorithm through the ordinary harness (the same
cells, budgets and isolation as ``blobench run``), picks the best setting by the problem's
**validation** metric and writes it to a versioned tuned-settings file that ``blobench run``
uses by default.

Rules (each is tested in ``tests/test_tuning.py``):

- **Search space.** An algorithm may declare ``search_space = {"param": LogUniform(low, high,
  n) | IntRange(low, high, n) | Choice([...])}`` (see :mod:`blobench.contracts.params`); a relative
  ``LogUniform(..., relative="outer"|"inner")`` multiplies the problem's
  ``outer_step_size()`` or ``inner_step_size(λ₀)`` (its 1/L). Without a declaration the
  default space (:func:`default_space`) is: ``outer_lr`` ∈ {0.1, 1, 10, 100} × the problem's
  outer step; ``inner_lr`` (and BOME's ``lr``) ∈ {0.3, 1} × the problem's 1/L; and, only under
  a budget in seconds, ``inner_steps`` ∈ {5, 16, 50} (under an outer-step budget more inner
  steps only buy more compute, so T is not tuned there). Bracket lists on the command line
  (``-a "soba[outer_lr=[0.1,1]]"``) replace a dimension by those values; single bracket
  values are fixed. The search is the full grid (Cartesian product); ``--max-trials`` keeps a
  deterministic random subset of it.
- **Budget.** Every trial runs ``--budget`` outer steps (default: the problem's budget for
  the size) or ``--budget-seconds`` of solver time; the budget is recorded.
- **Seeds.** Tuning uses seeds 1000, 1001, ... (``TUNING_SEED_BASE``), disjoint from the
  leaderboard's seeds 0..N-1, so the reported test metrics come from fresh problem draws.
- **Selection.** The score of a trial is the mean over the tuning seeds of the final
  ``Problem.validation_metric`` (lower is better). For the default ``"outer_loss"`` (the
  outer objective on the validation data) it is read at the re-solved inner problem,
  ``restart_outer_loss`` = f(θ*(λ_T), λ_T) = F(λ_T), where the problem allows a restart
  (:func:`selection_metric`): the algorithm's own f(θ_T, λ_T) would reward an unsolved inner
  problem. The test metric (``primary_metric``) is never read. A
  trial with any seed not ``ok`` (diverged, error, timeout) or a non-finite score loses; ties
  (equal scores) go to the smaller mean solver time.
- **Confirmation.** The winner is run on ``--confirm-seeds`` K (default 3) fresh seeds;
  while a candidate is not ``ok`` on all of them the next trial in score order is tried; the
  first that passes is the setting (none: the winner is kept, and the entry says so). Every
  check is recorded under the entry's ``confirmation`` (:mod:`.confirm`).
- **Records.** Trial records go to ``<results>/tuning/`` (a results store of its own, so
  tuning cells never appear on the leaderboard and a rerun of ``tune`` reuses them).
- **No winner.** When every trial fails the entry is still written, with ``"params": null``
  and the trials' statuses, so the search is on record; ``blobench run`` then uses the
  defaults for that pair, and ``tune`` exits 1.
- **Settings file** (JSON, default ``leaderboards/tuned_settings.json``, committed): one entry
  per ``"<problem label>/<size>/<algorithm>"`` with the chosen ``params`` (fixed + searched),
  the search space, every trial's parameters, status and score, the tuning seeds, the budget,
  the sha256 of the problem's and the algorithm's files (and the engine hash, git describe),
  the date and the command. An entry is **stale** when the current problem or algorithm file
  hash differs from the recorded one; ``blobench run`` warns and the leaderboard flags it.

Where things are: :mod:`.settings` (the settings file: load, save, provenance, staleness,
pruning), :mod:`.space` (search spaces and their grids), :mod:`.search` (the trials of one
pair through the harness and the selection: :func:`tune_pair`), :mod:`.confirm` (the
winner's check on fresh seeds: :func:`confirm_entry`), :mod:`.cli` (``blobench
tune``'s options and the sweep over pairs).
"""

from __future__ import annotations

from blobench.workflows.tuning.confirm import CONFIRM_SEEDS, confirm_entry, confirmation_seeds
from blobench.workflows.tuning.search import (
    TUNING_SEED_BASE,
    score_trials,
    selection_metric,
    trial_summary,
    tune_pair,
)
from blobench.workflows.tuning.settings import (
    DEFAULT_SETTINGS,
    FORMAT,
    code_provenance,
    load_settings,
    prune_inapplicable,
    save_settings,
    settings_key,
    stale_entries,
    stale_files,
)
from blobench.workflows.tuning.space import (
    INNER_LR,
    INNER_LR_NAMES,
    INNER_STEPS,
    OUTER_LR,
    default_space,
    describe_space,
    search_space,
    trial_points,
)

__all__ = ["CONFIRM_SEEDS", "DEFAULT_SETTINGS", "FORMAT", "INNER_LR", "INNER_LR_NAMES",
           "INNER_STEPS", "OUTER_LR", "TUNING_SEED_BASE", "code_provenance",
           "confirm_entry", "confirmation_seeds", "default_space", "describe_space",
           "load_settings", "prune_inapplicable", "save_settings", "score_trials",
           "search_space", "selection_metric", "settings_key", "stale_entries",
           "stale_files", "trial_points", "trial_summary", "tune_pair"]
