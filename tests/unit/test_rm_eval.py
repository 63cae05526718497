"""RM evaluation metrics on hand-made rewards: accuracy, ties, breakdowns, calibration, agreement ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardlab.data.schema import normalize
from rewardlab.eval.rm import (
    agreement_ceiling,
    evaluate_rewards,
    expected_calibration_error,
    head_pairs,
    unique_responses,
)


def rec(ranks, rater=None, responses=None, prompt="p", **extra):
    responses = responses or [f"answer {i}" for i in range(len(ranks))]
    return normalize({"prompt": prompt, "responses": responses, "ranks": ranks, "rater": rater, **extra})


def test_head_pairs_from_ranks_soft_labels_and_scores():
    r = rec([2, 1, 2], scores={"helpfulness": [3, 3, None]}, soft_pairs=[[1, 0, 0.8]])
    overall = head_pairs(r, "overall")
    assert (1, 0, False, 0.8) in overall and (1, 2, False, 1.0) in overall
    assert (0, 2, True, 0.5) in overall
    assert head_pairs(r, "helpfulness") == [(0, 1, True, 0.5)]  # the None score takes no part
    assert head_pairs(r, "safety") == []


def test_accuracy_breakdowns_and_ties():
    records = [
        rec([1, 2], strength="better", agreement=0.9),  # right
        rec([1, 2, 3], prompt="q", strength="slightly"),  # pairs (0,1) right, (0,2) right, (1,2) wrong
        rec([1, 1], prompt="t"),  # a human tie
    ]
    rewards = [
        np.array([[1.0], [0.0]]),
        np.array([[2.0], [0.0], [1.0]]),
        np.array([[0.3], [0.25]]),
    ]
    m = evaluate_rewards(records, rewards, ["overall"], tie_threshold=0.1)
    assert m["n_pairs"] == 4 and m["accuracy"] == pytest.approx(3 / 4)
    assert m["accuracy_by_strength"] == {"better": 1.0, "slightly": pytest.approx(2 / 3)}
    assert m["accuracy_by_k"] == {"2": 1.0, "3": pytest.approx(2 / 3)}
    assert m["accuracy_by_agreement"] == {">=0.8": 1.0}
    assert m["n_tie_pairs"] == 1 and m["tie_accuracy"] == 1.0  # |0.05| < 0.1
    # 3-way: the tie is right, and no decided pair falls under the threshold
    assert m["accuracy_with_ties"] == pytest.approx(4 / 5)
    m0 = evaluate_rewards(records, rewards, ["overall"], tie_threshold=0.0)
    assert m0["tie_accuracy"] == 0.0


def test_exact_reward_tie_counts_half_and_heads():
    records = [rec([1, 2], scores={"helpfulness": [1, 5]})]
    rewards = [np.array([[0.5, 0.0], [0.5, 1.0]])]
    m = evaluate_rewards(records, rewards, ["overall", "helpfulness"])
    assert m["accuracy"] == 0.5
    assert m["accuracy_by_head"] == {"overall": 0.5, "helpfulness": 1.0}
    assert m["n_pairs_by_head"] == {"overall": 1, "helpfulness": 1}


def test_ece_by_hand():
    # predicted 0.9 and 0.6 against hard labels 1: both orientations count
    pred = np.array([0.9, 0.6, 0.1, 0.4])
    label = np.array([1.0, 1.0, 0.0, 0.0])
    # four bins with one item each: |0.9-1|, |0.6-1|, |0.1-0|, |0.4-0| each weighted 1/4
    assert expected_calibration_error(pred, label) == pytest.approx((0.1 + 0.4 + 0.1 + 0.4) / 4)
    assert expected_calibration_error(np.array([]), np.array([])) is None


def test_ece_uses_soft_labels():
    d = math.log(0.7 / 0.3)  # sigmoid(d) = 0.7
    r = rec([1, 2], soft_pairs=[[0, 1, 0.7]])
    m = evaluate_rewards([r], [np.array([[d], [0.0]])], ["overall"])
    assert m["ece"] == pytest.approx(0.0, abs=1e-9)  # perfectly calibrated against p = 0.7


def test_agreement_ceiling_held_out_rater():
    texts = ["alpha", "beta"]
    # three raters on the same comparison (one sees it in the other order): a and b say alpha, c says beta
    records = [
        rec([1, 2], rater="a", responses=texts),
        rec([1, 2], rater="b", responses=texts),
        rec([1, 2], rater="c", responses=texts[::-1]),
        rec([1, 2], rater="a", prompt="lonely"),  # single judgment: no overlap
    ]
    m = agreement_ceiling(records)
    # held out a: others b (alpha) + c (beta) split -> 1/2; b: same, 1/2; c: others say alpha -> 0
    assert m["ceiling_groups"] == 1 and m["ceiling_judgments"] == 3
    assert m["agreement_ceiling"] == pytest.approx(1 / 3)
    records.append(rec([1, 2], rater="d", responses=texts))
    records.append(rec([1, 1], rater="e", responses=texts))  # a tie: never held out, counts 0 as a voter
    m = agreement_ceiling(records)
    # a, b, d each: others sum to +1 (alpha) -> agree; c: others +3 -> disagree; e skipped -> 3/4 over 4
    assert m["agreement_ceiling"] == pytest.approx(3 / 4) and m["ceiling_judgments"] == 4
    # the RM on the same 4 items by the same rule: a, b right (alpha higher); c's record lists beta first and
    # its rewards still put alpha higher -> wrong against c; d's rewards are equal -> 1/2: (1 + 1 + 0 + 0.5) / 4
    rewards = [
        np.array([[1.0], [0.0]]),
        np.array([[1.0], [0.0]]),
        np.array([[0.0], [1.0]]),
        np.array([[0.0], [0.0]]),
        np.array([[0.5], [0.5]]),
        np.array([[0.0], [0.0]]),
    ]
    assert agreement_ceiling(records, rewards)["accuracy_on_ceiling_pairs"] == pytest.approx(0.625)


def test_no_overlap_gives_null_ceiling():
    m = agreement_ceiling([rec([1, 2], rater="a"), rec([2, 1], rater="b", prompt="other")])
    assert m["agreement_ceiling"] is None and m["ceiling_groups"] == 0


def test_unique_responses_dedupes_repeated_judgments():
    texts = ["alpha", "beta"]
    records = [rec([1, 2], rater="a", responses=texts), rec([2, 1], rater="b", responses=texts[::-1])]
    prompts, responses, index = unique_responses(records)
    assert responses == ["alpha", "beta"] and index == [[0, 1], [1, 0]]
