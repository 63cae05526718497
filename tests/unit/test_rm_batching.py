"""RM recipe pieces that need no model: length-grouped batches, DDP step slicing, collation of groups."""

from __future__ import annotations

import numpy as np
import pytest

from rewardlab.config import RMConfig
from rewardlab.data.schema import normalize
from rewardlab.errors import UserError
from rewardlab.recipes.rm import Group, build_groups, collate, epoch_batches, step_batches, tie_models


def test_epoch_batches_cover_every_group_once_and_are_seeded():
    lengths = [(i * 37) % 101 + 5 for i in range(103)]
    for by_length in (False, True):
        batches = epoch_batches(lengths, 8, seed=3, epoch=0, by_length=by_length, bucket=4)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(103))
        assert batches == epoch_batches(lengths, 8, seed=3, epoch=0, by_length=by_length, bucket=4)
        assert batches != epoch_batches(lengths, 8, seed=3, epoch=1, by_length=by_length, bucket=4)


def _padding(lengths, batches):
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def test_length_grouping_cuts_padding():
    lengths = [(i * 37) % 101 + 5 for i in range(400)]
    plain = epoch_batches(lengths, 8, seed=0, epoch=0, by_length=False, bucket=50)
    grouped = epoch_batches(lengths, 8, seed=0, epoch=0, by_length=True, bucket=50)
    assert _padding(lengths, grouped) < 0.5 * _padding(lengths, plain)


def test_step_batches_split_processes_and_wrap_around():
    batches = [[0], [1], [2], [3], [4]]
    # 2 processes x 2 accumulation steps = 4 micro-batches per optimizer step
    assert step_batches(batches, 0, world=2, rank=0, accum=2) == [[0], [1]]
    assert step_batches(batches, 0, world=2, rank=1, accum=2) == [[2], [3]]
    assert step_batches(batches, 1, world=2, rank=0, accum=2) == [[4], [0]]  # wraps: lockstep for DDP


def test_collate_flattens_groups_and_shifts_pairs():
    g1 = Group([[5, 6, 7], [8]], [1, 2], 1.0, [np.array([[0, 1, 0, 1.0, 0.5]])])
    g2 = Group([[1], [2, 3], [4]], [2, 1, 1], 2.0, [np.array([[1, 0, 0, 1.0, 0], [1, 2, 1, 0.5, 0]])])
    b = collate([g1, g2], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7], [8, 0, 0], [1, 0, 0], [2, 3, 0], [4, 0, 0]]
    assert b.seq_group.tolist() == [0, 0, 1, 1, 1]
    assert b.pairs[0][:, :2].tolist() == [[0, 1], [3, 2], [3, 4]]
    assert b.pairs[0][:, 5].tolist() == [0, 1, 1]
    assert b.weight.tolist() == [1.0, 2.0]
    assert (b.tokens, b.padded) == (8, 7)


def _records():
    return [
        normalize(
            {
                "prompt": "p",
                "responses": ["a", "b", "c"],
                "ranks": [1, 1, 2],
                "strength": "better",
                "scores": {"helpfulness": [2, 1, 1]},
                "weight": 0.5,
            }
        ),
        normalize({"prompt": "q", "responses": ["x", "y"], "ranks": [2, 1]}),
    ]


def test_build_groups_labels_margin_weight_and_tie_models():
    cfg = RMConfig(heads=["overall", "helpfulness"], loss={"margin": {"better": 2.0}})
    ids = [[[1], [2], [3]], [[4], [5]]]
    groups = build_groups(_records(), ids, cfg)
    rows = groups[0].pairs[0].tolist()
    assert [0, 1, 1.0, 0.5, 2.0] in rows  # the tie
    assert [0, 2, 0.0, 1.0, 2.0] in rows  # margin from strength
    assert groups[0].weight == 0.5 and groups[1].weight == 1.0
    assert groups[1].pairs[0].tolist() == [[1, 0, 0.0, 1.0, 0.0]]
    assert len(groups[1].pairs[1]) == 0  # no scores: nothing for the helpfulness head
    assert tie_models(groups, cfg) == ["rao-kupper", "rao-kupper"]
    assert tie_models(groups[1:], cfg) == [None, None]


def test_unknown_strength_in_margin_map_is_an_error():
    cfg = RMConfig(loss={"margin": {"slightly": 1.0}})
    with pytest.raises(UserError, match="better"):
        build_groups(_records(), [[[1], [2], [3]], [[4], [5]]], cfg)
