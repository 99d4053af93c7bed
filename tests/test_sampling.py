"""Sampling schemes (blobench/toolkit/sampling.py): epochs of shuffled blocks vs i.i.d. draws,
selected by the ``sampling`` problem parameter, recorded in the cell config, deterministic."""

from __future__ import annotations

import copy

import pytest
import torch

from blobench.contracts.errors import UserError
from blobench.execution.harness import plan, run_cell
from blobench.execution.registry import get_registry
from blobench.toolkit.sampling import EpochSampler, index_batch, sampling_param

REG = get_registry()
NAME = "finite_sum_quadratic"


def _blocks(sampler, gen, count, stream="inner"):
    return [sampler.draw(gen, stream).tolist() for _ in range(count)]


def test_each_epoch_visits_every_block_once_in_a_fresh_order():
    sampler = EpochSampler(10, 4)
    blocks = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    gen = torch.Generator().manual_seed(0)
    epochs = [_blocks(sampler, gen, 3) for _ in range(8)]
    for epoch in epochs:
        assert sorted(epoch) == blocks  # every sample exactly once per epoch
    assert len({tuple(map(tuple, e)) for e in epochs}) > 1  # the order is redrawn


def test_same_seed_same_batches_and_streams_are_separate_epochs():
    a, b = EpochSampler(12, 3), EpochSampler(12, 3)
    ga, gb = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert _blocks(a, ga, 9) == _blocks(b, gb, 9)
    # interleaving an outer stream: the inner epoch still covers each block once
    gen, sampler = torch.Generator().manual_seed(1), EpochSampler(12, 3)
    inner = []
    for _ in range(4):
        inner.append(sampler.draw(gen, "inner").tolist())
        sampler.draw(gen, "outer")
    assert sorted(inner) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_a_replay_on_a_copied_generator_leaves_the_run_epoch_untouched():
    sampler, gen = EpochSampler(8, 2), torch.Generator().manual_seed(3)
    reference = _blocks(EpochSampler(8, 2), torch.Generator().manual_seed(3), 8)
    first = _blocks(sampler, gen, 2)
    _blocks(sampler, copy.deepcopy(gen), 5)  # e.g. the memory probe's replayed step
    assert first + _blocks(sampler, gen, 6) == reference


def test_problem_parameter_selects_the_scheme():
    epochs = REG.problem(NAME)(size="quick", n_inner=64, batch_size=16)
    iid = REG.problem(NAME)(size="quick", n_inner=64, batch_size=16,
                            sampling="with_replacement")
    assert epochs.config["sampling"] == "without_replacement"  # the default
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    seen = [epochs.sample_inner_batch(g1) for _ in range(4)]
    assert sorted(torch.cat(seen).tolist()) == list(range(64))
    draws = [iid.sample_inner_batch(g2) for _ in range(4)]
    want = torch.randint(64, (16,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws[0], want)  # i.i.d. uniform draws from the generator
    assert len(set(torch.cat(draws).tolist())) < 64
    with pytest.raises(UserError, match="sampling='shuffle' is not one of"):
        REG.problem(NAME)(size="quick", sampling="shuffle")
    with pytest.raises(ValueError):
        sampling_param("shuffle")


def test_full_batch_and_undeclared_problems():
    prob = REG.problem(NAME)(size="quick", batch_size=0)
    assert index_batch(prob, 128, 0, torch.Generator(), "inner") is None
    assert index_batch(prob, 128, 128, torch.Generator(), "inner") is None
    ridge = REG.problem("ridge_ho")(size="quick")
    if "sampling" not in ridge.config:  # undeclared: i.i.d. draws, as before
        got = index_batch(ridge, 100, 10, torch.Generator().manual_seed(2), "inner")
        want = torch.randint(100, (10,), generator=torch.Generator().manual_seed(2))
        assert torch.equal(got, want)


def test_scheme_is_recorded_in_the_cell_config_and_changes_the_run():
    cells, _ = plan(REG, [f"{NAME}[sampling=[without_replacement,with_replacement]]"],
                    ["saba"], [0], steps=12, eval_every=6)
    schemes = [c.config()["problem_params"]["sampling"] for c in cells]
    assert schemes == ["without_replacement", "with_replacement"]
    assert cells[0].key("v") != cells[1].key("v")
    runs = [run_cell(REG, c) for c in cells]
    assert all(r["status"] == "ok" for r in runs)
    assert runs[0]["config"]["problem_params"]["sampling"] == "without_replacement"
    again = run_cell(REG, cells[0])
    assert again["trace"][-1]["suboptimality"] == runs[0]["trace"][-1]["suboptimality"]
    assert runs[0]["trace"][-1]["suboptimality"] != runs[1]["trace"][-1]["suboptimality"]
