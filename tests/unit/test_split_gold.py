"""Gold records are set aside from every stage's data, and the eval split has its own seed."""

from __future__ import annotations

import pytest

from rewardlab.config import DataConfig
from rewardlab.data.dataset import set_aside_gold, write_dataset
from rewardlab.data.schema import normalize
from rewardlab.eval.policy import held_out_prompts
from rewardlab.recipes import policy_common as pc


@pytest.fixture
def data(tmp_path):
    recs = []
    for i in range(40):
        base = {"prompt": f"prompt {i}", "responses": [f"good {i}", f"bad {i}"], "ranks": [1, 2]}
        recs.append(normalize({**base, "rater": "r1"}))
        if i % 4 == 0:
            recs.append(normalize({**base, "gold": True}))  # the answer key for this comparison
    path = tmp_path / "ds"
    write_dataset(recs, path)
    return path


def test_set_aside_gold_counts():
    recs = [{"gold": True}, {"gold": False}, {}]
    assert set_aside_gold(recs, use_gold=False) == ([{"gold": False}, {}], 1)
    assert set_aside_gold(recs, use_gold=True) == (recs, 0)


def test_policy_split_sets_gold_aside_and_uses_split_seed(data):
    train, held, info = pc.split_records(DataConfig(train=str(data), eval_fraction=0.3))
    assert not any(r.get("gold") for r in train + held)
    assert info["gold_set_aside"]["train"] + info["gold_set_aside"]["eval"] == 10
    assert info["split_seed"] == 0 and len(train) + len(held) == 40
    other = pc.split_records(DataConfig(train=str(data), eval_fraction=0.3, split_seed=1))[1]
    assert {r["prompt"] for r in other} != {r["prompt"] for r in held}  # the split follows split_seed
    with_gold = pc.split_records(DataConfig(train=str(data), eval_fraction=0.3, use_gold=True))
    assert sum(1 for r in with_gold[0] + with_gold[1] if r.get("gold")) == 10


def test_eval_policy_reads_the_runs_split_seed(data):
    # a run made before data.split_seed split with train.seed; a newer run carries its split_seed
    _, held, _ = pc.split_records(DataConfig(train=str(data), eval_fraction=0.3))
    old_cfg = {"data": {"train": str(data), "eval_fraction": 0.3}, "train": {"seed": 1}}
    _, held1, _ = pc.split_records(DataConfig(train=str(data), eval_fraction=0.3, split_seed=1))
    new_cfg = {"data": {"train": str(data), "eval_fraction": 0.3, "split_seed": 0}, "train": {"seed": 1}}
    assert [p["prompt"] for p in held_out_prompts(new_cfg, None)] == [
        p["prompt"] for p in pc.unique_prompts(held)
    ]
    assert [p["prompt"] for p in held_out_prompts(old_cfg, None)] == [
        p["prompt"] for p in pc.unique_prompts(held1)
    ]
