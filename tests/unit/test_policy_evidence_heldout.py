"""scripts/policy_evidence.py evaluates on prompts no stage trained on (issue 27).

The held-out campaign (seed 1000 + seed) shares many prompts with the training campaign, because the
simulator's task families draw from a small pool; `heldout_records` must drop them all. No model is built:
only the two simulated campaigns (about a second each).
"""

from __future__ import annotations

import pytest

from rewardlab.data.dataset import split_by_prompt
from rewardlab.data.policy_data import unique_prompts
from rewardlab.data.schema import prompt_key


def training_prompt_keys(records: list[dict]) -> set[str]:
    """What the stages train on: the train part of the recipes' split (eval_fraction 0.1, split_seed 0),
    gold records included (a superset of what any stage sees)."""
    from datasets import Dataset

    from rewardlab.data.dataset import encode

    train, _ = split_by_prompt(Dataset.from_list([encode(r) for r in records]), 0.1, 0)
    return {prompt_key(p) for p in train["prompt"]}


@pytest.mark.parametrize("seed", [10, 20])
def test_heldout_records_share_no_prompt_with_training(seed: int, script) -> None:  # noqa: ANN001
    evidence = script("policy_evidence")
    train_records = evidence.campaign(seed, 400)
    trained = training_prompt_keys(train_records)
    raw = unique_prompts(evidence.campaign(1000 + seed, 300))
    assert len({prompt_key(p["prompt"]) for p in raw} & trained) > 50  # the overlap this guards against

    held = evidence.heldout_records(seed, 400, 300)
    keys = [prompt_key(p["prompt"]) for p in held]
    assert not set(keys) & trained
    assert not set(keys) & {prompt_key(r["prompt"]) for r in train_records}  # nor the campaign's eval part
    assert len(keys) == len(set(keys)) > 100  # distinct, and enough left to measure on
    assert all(p["meta"].get("task") for p in held)  # eval policy needs the task to score the truth
