"""Selection strategies of `rewardlab sample` on hand-made rewards (numbers computed by hand below)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardlab.errors import UserError
from rewardlab.recipes.sample import (
    Group,
    batch_lines,
    candidate_items,
    dedupe_answers,
    disagreement_score,
    select_items,
    uncertainty_score,
)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def group(rewards, family="arithmetic", heads=None, prompt="p"):
    r = np.asarray(rewards, dtype=float)
    if r.ndim == 1:
        r = r[:, None]
    return Group(
        prompt=prompt,
        meta={"task": {"family": family}},
        responses=[f"{prompt}-answer-{i}" for i in range(len(r))],
        overall=r,
        heads=None if heads is None else np.asarray(heads, dtype=float),
    )


def test_candidate_pairs_and_groups():
    groups = [group([0, 1, 2]), group([0, 1]), Group("q", {}, ["only one"])]
    pairs = candidate_items(groups, "pair")
    assert [(it.group, it.indices) for it in pairs] == [(0, (0, 1)), (0, (0, 2)), (0, (1, 2)), (1, (0, 1))]
    whole = candidate_items(groups, "group")
    assert [(it.group, it.indices) for it in whole] == [(0, (0, 1, 2)), (1, (0, 1))]


def test_uncertainty_score_is_closeness_of_p_to_half():
    g = group([0.0, 0.1, 3.0])
    score, p = uncertainty_score(g, (0, 1))
    assert p == pytest.approx(_sig(-0.1))  # 0.47502
    assert score == pytest.approx(1 - 2 * abs(_sig(-0.1) - 0.5))  # 0.95004
    score_far, _ = uncertainty_score(g, (0, 2))
    assert score_far == pytest.approx(1 - 2 * abs(_sig(-3.0) - 0.5))  # 0.09485
    # a K-group scores the mean over its pairs
    score_all, _ = uncertainty_score(g, (0, 1, 2))
    expected = np.mean([1 - 2 * abs(_sig(d) - 0.5) for d in (-0.1, -3.0, -2.9)])
    assert score_all == pytest.approx(expected)


def test_uncertainty_averages_an_ensemble():
    g = group([[0.0, 0.0], [2.0, -2.0]])  # the two RMs disagree: mean p = 0.5 exactly
    score, p = uncertainty_score(g, (0, 1))
    assert p == pytest.approx(0.5)
    assert score == pytest.approx(1.0)


def test_uncertainty_picks_the_closest_pair():
    groups = [group([0.0, 0.1, 3.0]), group([0.0, 1.0], prompt="q")]
    chosen = select_items(candidate_items(groups, "pair"), groups, "uncertainty", budget=2)
    assert [(it.group, it.indices) for it in chosen] == [(0, (0, 1)), (1, (0, 1))]
    assert chosen[0].score > chosen[1].score


def test_disagreement_between_rms_and_between_heads():
    g = group([[0.0, 0.0], [1.0, -1.0], [0.05, 0.05]])
    # pair (0,1): p = [sigmoid(-1), sigmoid(1)] = [0.26894, 0.73106]; std = 0.23106
    assert disagreement_score(g, (0, 1)) == pytest.approx(np.std([_sig(-1), _sig(1)]))
    assert disagreement_score(g, (0, 2)) == pytest.approx(0.0)
    one_rm = group([0.0, 1.0], heads=[[0.0, 0.0, 0.0], [1.0, 1.0, -1.0]])
    assert disagreement_score(one_rm, (0, 1)) == pytest.approx(np.std([_sig(-1), _sig(-1), _sig(1)]))
    with pytest.raises(UserError, match="disagreement needs"):
        disagreement_score(group([0.0, 1.0]), (0, 1))
    groups = [g]
    chosen = select_items(candidate_items(groups, "pair"), groups, "disagreement", budget=1)
    assert chosen[0].indices in {(0, 1), (1, 2)}  # both have spread ~0.23; (0, 2) has none


def test_random_is_seeded_and_respects_budget():
    groups = [group(np.arange(5.0), prompt=f"p{n}") for n in range(4)]  # 4 x C(5,2) = 40 pairs
    a = select_items(candidate_items(groups, "pair"), groups, "random", budget=7, seed=1)
    b = select_items(candidate_items(groups, "pair"), groups, "random", budget=7, seed=1)
    c = select_items(candidate_items(groups, "pair"), groups, "random", budget=7, seed=2)
    key = [[(it.group, it.indices) for it in x] for x in (a, b, c)]
    assert len(a) == 7 and key[0] == key[1] and key[0] != key[2]
    assert len(select_items(candidate_items(groups, "pair"), groups, "random", budget=100)) == 40


def test_max_per_prompt_caps_items_from_one_prompt():
    groups = [group([0.0, 0.01, 0.02, 0.03]), group([0.0, 5.0], prompt="q")]
    chosen = select_items(candidate_items(groups, "pair"), groups, "uncertainty", budget=3, max_per_prompt=1)
    assert sorted(it.group for it in chosen) == [0, 1]


def test_coverage_spreads_over_families_then_prompts():
    groups = [
        group([0.0, 0.0], family="arithmetic", prompt="a1"),
        group([0.0, 0.01], family="arithmetic", prompt="a2"),
        group([0.0, 0.02], family="arithmetic", prompt="a3"),
        group([0.0, 4.0], family="safety", prompt="s1"),
        group([0.0, 5.0], family="capital", prompt="c1"),
    ]
    chosen = select_items(candidate_items(groups, "pair"), groups, "coverage", budget=3)
    families = [groups[it.group].meta["task"]["family"] for it in chosen]
    assert sorted(families) == ["arithmetic", "capital", "safety"]
    # uncertainty would have taken the three arithmetic pairs
    unc = select_items(candidate_items(groups, "pair"), groups, "uncertainty", budget=3)
    assert {groups[it.group].meta["task"]["family"] for it in unc} == {"arithmetic"}


def test_uncertainty_without_rm_is_a_user_error():
    groups = [Group("p", {}, ["a", "b"])]
    with pytest.raises(UserError, match="reward_models"):
        select_items(candidate_items(groups, "pair"), groups, "uncertainty", budget=1)
    with pytest.raises(UserError, match="budget"):
        select_items(candidate_items(groups, "pair"), groups, "random", budget=0)


def test_dedupe_answers_counts_what_it_drops():
    kept, empty, dup = dedupe_answers(["a", "", "b", "a", "  ", "c"])
    assert (kept, empty, dup) == (["a", "b", "c"], 2, 1)


def test_batch_lines_keep_task_and_record_lineage():
    groups = [group([0.0, 0.1, 3.0])]
    chosen = select_items(candidate_items(groups, "pair"), groups, "uncertainty", budget=1)
    rows = batch_lines(chosen, groups, "runs/dpo", ["runs/rm"], "uncertainty", "round-2")
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"id", "prompt", "responses", "meta"}
    assert row["responses"] == ["p-answer-0", "p-answer-1"]
    assert row["meta"]["task"] == {"family": "arithmetic"}
    assert row["meta"]["policy"] == "runs/dpo" and row["meta"]["reward_model"] == "runs/rm"
    assert row["meta"]["selection_score"] == pytest.approx(chosen[0].score, abs=1e-6)
    assert row["id"].startswith("round-2-")
