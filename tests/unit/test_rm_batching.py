"""RM recipe pieces that need no model: length-grouped batches, DDP step slicing, collation of groups."""

from __future__ import annotations

import numpy as np
import pytest

from rewardlab.config import RMConfig
from rewardlab.data.schema import normalize
from rewardlab.errors import UserError
from rewardlab.recipes.rm import (
    BATCH_COLS,
    Group,
    PairCol,
    build_groups,
    collate,
    epoch_batches,
    groups_per_step,
    head_scales,
    head_weight_totals,
    step_batches,
    tie_counts,
    tie_models,
)


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


def test_step_batches_share_one_global_batch_between_processes():
    global_batch = [7, 3, 9, 1, 4, 8, 2, 6]
    # 2 processes x 2 accumulation steps = 4 micro-batches per optimizer step, cut in order
    assert step_batches(global_batch, world=2, rank=0, accum=2) == [[7, 3], [9, 1]]
    assert step_batches(global_batch, world=2, rank=1, accum=2) == [[4, 8], [2, 6]]
    assert step_batches(global_batch, world=1, rank=0, accum=1) == [global_batch]
    # a short last batch: shares differ by at most one group, and may be empty (the loop pads those)
    assert step_batches([5, 0, 2], world=2, rank=0, accum=2) == [[5], [0]]
    assert step_batches([5, 0, 2], world=2, rank=1, accum=2) == [[2], []]


def test_head_scales_make_split_losses_average_to_the_global_loss():
    """Weighted per-group losses split unevenly over 3 micro-batches average back to the global weighted
    mean, per head, including a head some groups have no pairs for."""
    rng = np.random.default_rng(0)
    pair = np.array([[0, 1, 0, 1.0, 0.0]])
    none = np.zeros((0, 5))
    groups = [Group([[1], [2]], [1, 2], float(w), [pair, pair if i % 3 else none]) for i, w in
              enumerate(rng.uniform(0.2, 3.0, size=7))]  # fmt: skip
    losses = rng.normal(size=(7, 2))  # per group, per head
    totals = head_weight_totals(groups)
    for h in range(2):
        has = [i for i, g in enumerate(groups) if len(g.pairs[h])]
        want = sum(groups[i].weight * losses[i, h] for i in has) / sum(groups[i].weight for i in has)
        got = 0.0
        for part in ([0, 1, 2], [3, 4], [5, 6]):
            mine = [i for i in part if i in has]
            local = (
                sum(groups[i].weight * losses[i, h] for i in mine) / sum(groups[i].weight for i in mine)
                if mine
                else 0.0
            )
            got += local * head_scales([groups[i] for i in part], totals, 3)[h] / 3
        assert got == pytest.approx(want, rel=1e-12)


def test_collate_flattens_groups_and_shifts_pairs():
    g1 = Group([[5, 6, 7], [8]], [1, 2], 1.0, [np.array([[0, 1, 0, 1.0, 0.5]])])
    g2 = Group([[1], [2, 3], [4]], [2, 1, 1], 2.0, [np.array([[1, 0, 0, 1.0, 0], [1, 2, 1, 0.5, 0]])])
    b = collate([g1, g2], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7], [8, 0, 0], [1, 0, 0], [2, 3, 0], [4, 0, 0]]
    assert b.seq_group.tolist() == [0, 0, 1, 1, 1]
    assert b.pairs[0].shape[1] == BATCH_COLS
    assert b.pairs[0][:, [PairCol.BETTER, PairCol.WORSE]].tolist() == [[0, 1], [3, 2], [3, 4]]
    assert b.pairs[0][:, PairCol.GROUP].tolist() == [0, 1, 1]
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
    counts = tie_counts(groups, 2)
    assert counts == [(1, 4), (1, 3)]  # (tied pairs, pairs) per head
    # one tie per head is below loss.min_ties: both heads stay Bradley-Terry
    assert tie_models(counts, cfg) == [None, None]
    few = RMConfig(heads=["overall", "helpfulness"], loss={"min_ties": 1, "min_tie_share": 0.3})
    assert tie_models(counts, few) == [None, "rao-kupper"]  # shares 1/4 < 0.3 <= 1/3
    assert tie_models(tie_counts(groups[1:], 2), few) == [None, None]


def test_old_strength_spelling_meets_the_margin_map():
    # SHP's old importer wrote "significantly_better"; the shipped maps say "significantly better"
    rec = normalize({"prompt": "p", "responses": ["a", "b"], "ranks": [1, 2]})
    rec["strength"] = "significantly_better"  # as stored by an old import (decode normalises it too)
    cfg = RMConfig(loss={"margin": {"significantly better": 1.0}})
    assert build_groups([rec], [[[1], [2]]], cfg)[0].pairs[0].tolist() == [[0, 1, 0.0, 1.0, 1.0]]
    old_map = RMConfig(loss={"margin": {"significantly_better": 0.5}})
    assert build_groups([rec], [[[1], [2]]], old_map)[0].pairs[0][0, 4] == 0.5


def test_zero_weight_filler_adds_no_centering():
    import torch

    from rewardlab.recipes.rm import batch_loss

    cfg = RMConfig(heads=["overall"], loss={"center_coef": 0.1})
    rec = normalize({"prompt": "p", "responses": ["a", "b"], "ranks": [1, 2]})
    batch = collate(build_groups([rec], [[[1], [2]]], cfg), pad_id=0)
    logits = torch.tensor([[1.0], [3.0]])
    loss, parts = batch_loss(logits, batch, cfg, [None], scales=[1.0])
    bt = -torch.nn.functional.logsigmoid(torch.tensor(-2.0)).item()
    assert parts["center_overall"] == pytest.approx(0.1 * 16.0)  # (r_w + r_l)^2 = 16
    assert loss.item() == pytest.approx(bt + 1.6)
    filler, _ = batch_loss(logits, batch, cfg, [None], scales=[0.0])  # an empty share's stand-in
    assert filler.item() == 0.0


def test_unknown_strength_in_margin_map_is_an_error():
    cfg = RMConfig(loss={"margin": {"slightly": 1.0}})
    with pytest.raises(UserError, match="better"):
        build_groups(_records(), [[[1], [2], [3]], [[4], [5]]], cfg)


def test_batch_unit_pairs_counts_a_ranking_of_k_as_k_over_2_pairs():
    def groups(k: int, n: int = 10) -> list[Group]:
        return [Group([np.zeros(3, np.int32)] * k, list(range(1, k + 1)), 1.0, []) for _ in range(n)]

    cfg = RMConfig(train={"batch_size": 8}, batch_unit="pairs")
    assert groups_per_step(groups(2), cfg) == 8  # pairwise data: unchanged
    assert groups_per_step(groups(4), cfg) == 4  # the same 16 responses per step
    assert groups_per_step(groups(8), cfg) == 2
    assert groups_per_step(groups(40), cfg) == 1  # never an empty step
    legacy = RMConfig(train={"batch_size": 8}, batch_unit="groups")
    assert groups_per_step(groups(4), legacy) == 8
