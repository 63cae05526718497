"""`data stats` audits on a small dataset whose every number is counted by hand below."""

from __future__ import annotations

import pytest

from rewardlab.data.dataset import DatasetWriter, load_dataset
from rewardlab.data.schema import normalize
from rewardlab.data.stats import compute_stats, format_stats

A, B = "short", "a much longer answer"  # 5 and 20 characters
X, Y, Z = "xx", "yyy", "zzzz"


def build(tmp_path, rows, chunk_size=2):
    """Write through DatasetWriter with tiny chunks so the Arrow columns arrive in several chunks."""
    writer = DatasetWriter(tmp_path / "ds", chunk_size=chunk_size)
    for n, row in enumerate(rows):
        writer.add(normalize(row, f"t:{n + 1}"))
    writer.close()
    return load_dataset(tmp_path / "ds")


ROWS = [
    {
        "id": "1",
        "prompt": "P1",
        "responses": [A, B],
        "ranks": [1, 2],
        "rater": "r1",
    },  # first wins, shorter wins
    {
        "id": "2",
        "prompt": "P1",
        "responses": [B, A],
        "ranks": [1, 2],
        "rater": "r2",
    },  # first wins, longer wins
    {
        "id": "3",
        "prompt": "P1",
        "responses": [A, B],
        "ranks": [2, 1],
        "rater": "r1",
    },  # first loses, longer wins
    {
        "id": "4",
        "prompt": "P2",
        "responses": [X, Y, Z],
        "ranks": [1, 1, 2],
        "rater": "r2",
    },  # tie, 2 first-wins
    {"id": "5", "prompt": "P1", "responses": [A, B], "ranks": [1, 2], "rater": "r1"},  # duplicate of 1
    {
        "id": "6",
        "prompt": "P2",
        "responses": [X, Y],
        "ranks": [2, 1],
        "gold": True,
    },  # gold: not in the biases
]


def test_counts_and_audits_by_hand(tmp_path):
    s = compute_stats(build(tmp_path, ROWS))
    assert s["records"] == 6
    assert s["prompts"] == 2
    assert s["responses"] == 5  # P1: A, B; P2: X, Y, Z
    assert s["response_slots"] == 13
    assert s["raters"] == 2
    assert s["pairs"] == 8  # 1 + 1 + 1 + 3 + 1 + 1
    assert s["ties"] == 1
    assert s["gold"] == 1
    assert s["k_histogram"] == {"2": 5, "3": 1}
    # non-tie, non-gold pairs: 1:first, 2:first, 3:second, 4:(X,Z) first, (Y,Z) first, 5:first -> 5/6
    assert s["position_bias"] == pytest.approx(5 / 6, abs=1e-6)
    assert s["position_bias_by_rater"] == {"r1": pytest.approx(2 / 3, abs=1e-6), "r2": 1.0}
    assert s["pairs_by_rater"] == {"r1": 3, "r2": 3}
    # longer wins in 2 and 3 only, of 6 pairs with unequal lengths
    assert s["length_bias"] == pytest.approx(1 / 3, abs=1e-6)
    assert s["duplicates"] == 1
    # (P1, {A, B}) is judged both ways (by r1 alone too); (P2, {X, Y}) only tie + gold; (P2, {X, Z}) one way
    assert s["contradictions"] == 1
    assert s["contradictions_within_rater"] == 1
    assert s["prompt_overlap"] == 0
    assert s["split"]["train_records"] + s["split"]["eval_records"] == 6


def test_no_contradiction_when_raters_agree_and_ties_do_not_count(tmp_path):
    rows = [
        {"prompt": "P", "responses": [A, B], "ranks": [1, 2], "rater": "r1"},
        {"prompt": "P", "responses": [B, A], "ranks": [2, 1], "rater": "r2"},  # same verdict, other order
        {"prompt": "P", "responses": [A, B], "ranks": [1, 1], "rater": "r3"},  # a tie is no contradiction
        {
            "prompt": "Q",
            "responses": [A, B],
            "ranks": [2, 1],
            "rater": "r1",
        },  # other prompt: another comparison
    ]
    s = compute_stats(build(tmp_path, rows))
    assert (s["contradictions"], s["contradictions_within_rater"], s["duplicates"]) == (0, 0, 0)
    assert s["position_bias"] == pytest.approx(1 / 3, abs=1e-6)


def test_split_audit_reports_prompt_overlap_zero_on_a_larger_set(tmp_path):
    rows = [
        {"prompt": f"P{n % 40}", "responses": [f"a{n}", f"b{n}"], "ranks": [1, 2], "rater": f"r{n % 3}"}
        for n in range(400)
    ]
    s = compute_stats(build(tmp_path, rows, chunk_size=64), eval_fraction=0.25, seed=3)
    assert s["prompt_overlap"] == 0
    assert 0 < s["split"]["eval_records"] < 400 and s["split"]["eval_records"] % 10 == 0  # whole prompts move
    text = format_stats(s)
    assert "prompt overlap between train/eval split: 0" in text and "K=2: 400" in text


def test_empty_dataset(tmp_path):
    s = compute_stats(build(tmp_path, []))
    assert s["records"] == 0 and s["pairs"] == 0 and s["position_bias"] is None and s["k_histogram"] == {}
