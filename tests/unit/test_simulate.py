"""The simulator: truth scorer per family, determinism, overlap/gold counts, rater profiles, batch reading."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from rewardlab.config import SimulateConfig
from rewardlab.data.schema import group_key
from rewardlab.data.sim_tasks import FAMILIES, JITTER, WEIGHTS, candidate_pool, make_prompt
from rewardlab.data.simulate import (
    evaluate_majority,
    make_items,
    rate_items,
    read_batch,
    simulate_campaign,
    sweep_settings,
    true_utilities,
    truth_score,
)
from rewardlab.errors import UserError

ARITH = {"family": "arithmetic", "question": "17 + 25", "operands": [17, 25], "answer": 42}
CAPITAL = {"family": "capital", "country": "Canada", "answer": "Ottawa"}
ANTONYM = {"family": "antonym", "word": "hot", "answers": ["cold"]}
KEYWORD = {"family": "keyword", "keyword": "calm", "topic": "the ocean"}
BULLETS = {"family": "format", "format": "bullets", "n": 3, "topic": "fruits"}
CAPS = {"family": "format", "format": "caps", "topic": "animals"}
ONE = {"family": "format", "format": "one_sentence", "topic": "the moon"}
UNSAFE = {"family": "safety", "unsafe": True, "request": "how do I shoplift without being noticed"}
TRICKY = {"family": "safety", "unsafe": False, "keywords": ["task manager", "force quit", "end task"]}

REFUSAL = "Sorry, I can't help with that."


def overall(task, text):
    return truth_score(task, text)["overall"]


# ---------------------------------------------------------------- truth scorer


@pytest.mark.parametrize(
    "task, right, wrong",
    [
        (ARITH, "17 + 25 = 42.", "17 + 25 = 41."),
        (ARITH, "The answer is 42.", "The answer is 52."),
        (CAPITAL, "The capital of Canada is Ottawa.", "The capital of Canada is Toronto."),
        (ANTONYM, "The opposite of hot is cold.", "The opposite of hot is warm."),
        (KEYWORD, "The ocean is calm at dawn.", "The ocean is blue at dawn."),
        (BULLETS, "- Apple\n- Pear\n- Plum", "- Apple\n- Pear"),
        (BULLETS, "- Apple\n- Pear\n- Plum", "Apple, pear, plum."),
        (CAPS, "A TIGER.", "A tiger."),
        (ONE, "The moon is bright and full of craters.", "The moon is bright. It has craters."),
        (TRICKY, "Open the task manager and click End task.", "Just wait and see what happens."),
    ],
)
def test_correct_answer_beats_wrong_one(task, right, wrong):
    r, w = truth_score(task, right), truth_score(task, wrong)
    assert r["accuracy"] == 1.0 and w["accuracy"] < 0.5
    assert r["overall"] > w["overall"] + 0.2


def test_hedged_answer_gets_partial_accuracy():
    assert truth_score(ARITH, "It is 42 or maybe 43.")["accuracy"] == 0.5
    assert truth_score(CAPITAL, "Ottawa or Toronto.")["accuracy"] == 0.5


def test_refusal_wins_on_unsafe_and_loses_on_safe_requests():
    comply = "Wear a loose coat and slip small items into the inner pockets."
    assert overall(UNSAFE, REFUSAL) > 0.8 > 0.2 > overall(UNSAFE, comply)
    assert truth_score(UNSAFE, comply)["harmlessness"] == 0.0
    assert overall(UNSAFE, "I can't help with that, but I can suggest something safer instead.") > overall(
        UNSAFE, REFUSAL
    )
    for task, answer in [
        (ARITH, "42"),
        (CAPITAL, "Ottawa."),
        (TRICKY, "Use force quit to close it."),
        (ONE, "The moon is bright."),
    ]:
        assert overall(task, REFUSAL) < overall(task, answer) - 0.5
        assert truth_score(task, REFUSAL)["accuracy"] == 0.0


def test_rude_loses_to_polite_and_padding_costs():
    polite, rude = "Sure! The answer is 42.", "The answer is 42. That was a stupid question."
    padded = "Great question! Let me think about this carefully. The answer is 42. I hope this helps, and let me know!"
    s_polite, s_rude, s_pad = (truth_score(ARITH, t) for t in (polite, rude, padded))
    assert s_rude["overall"] < s_polite["overall"] and s_rude["harmlessness"] < s_polite["harmlessness"]
    assert s_pad["overall"] < s_polite["overall"] and s_pad["helpfulness"] < s_polite["helpfulness"]
    assert s_pad["accuracy"] == s_polite["accuracy"] == 1.0


@pytest.mark.parametrize(
    "text",
    ["", "   ", None, "the the the the the the the", "ö ü ä ß 的 42", "x" * 500, "\x00\x01", 42, "!!!"],
)
@pytest.mark.parametrize("task", [ARITH, UNSAFE, BULLETS, None, {}, {"family": "unknown"}])
def test_scorer_works_on_any_text(task, text):
    s = truth_score(task, text)
    assert set(s) == {"helpfulness", "accuracy", "harmlessness", "overall"}
    assert all(0.0 <= v <= 1.0 for v in s.values())
    assert s["overall"] == pytest.approx(sum(WEIGHTS[k] * s[k] for k in WEIGHTS), abs=1e-3)


def test_garbled_text_scores_below_a_clean_answer():
    assert overall(ARITH, "42 42 42 42 42 ertain ertain ertain") < overall(ARITH, "42") - 0.1
    assert overall(ARITH, "the the the the the the") <= 0.2


def test_true_utilities_are_overall_plus_small_fixed_jitter():
    texts = ["42", "Sure! 42", "41"]
    us = true_utilities(ARITH, texts)
    assert us == true_utilities(ARITH, texts)
    for t, u in zip(texts, us):
        assert abs(u - overall(ARITH, t)) <= JITTER / 2
    assert us[0] != us[1]  # same overall, broken by the jitter


def test_every_family_makes_a_pool_with_a_best_and_worse_answers():
    rng = np.random.default_rng(0)
    for family in FAMILIES:
        for _ in range(5):
            prompt, task = make_prompt(family, rng)
            assert prompt and json.loads(json.dumps(task))["family"] == family
            pool = candidate_pool(task, rng)
            scores = sorted(overall(task, c) for c in pool)
            assert len(pool) >= 4 and len(set(pool)) == len(pool)
            assert scores[-1] >= 0.85 and scores[0] <= 0.4, (family, task)
            assert np.mean([len(c.split()) < 30 for c in pool]) >= 0.8


# ---------------------------------------------------------------- campaign


def small(**kw):
    base = {"prompts": 60, "raters": 8, "overlap": 3, "gold_rate": 0.1, "k_mix": {2: 0.75, 4: 0.25}}
    return SimulateConfig(**{**base, **kw})


def test_campaign_is_deterministic_by_seed():
    a, ta = simulate_campaign(small())
    b, tb = simulate_campaign(small())
    c, _ = simulate_campaign(small(seed=1))
    assert [r["hash"] for r in a] == [r["hash"] for r in b]
    assert json.dumps(ta, sort_keys=True) == json.dumps(tb, sort_keys=True)
    assert [r["hash"] for r in a] != [r["hash"] for r in c]


def test_overlap_gold_and_k_counts():
    cfg = small(prompts=80, overlap=3, gold_rate=0.1)
    records, truth = simulate_campaign(cfg)
    by_item = defaultdict(list)
    for r in records:
        by_item[r["meta"]["item"]].append(r)
        assert r["meta"]["task"]["family"] in FAMILIES
    assert len(by_item) == 80 and len({r["prompt"] for r in records}) == 80
    gold = [r for r in records if r["gold"]]
    assert len(gold) == 8 and all(r["rater"] is None and r["time_s"] is None for r in gold)
    for recs in by_item.values():
        judged = [r for r in recs if not r["gold"]]
        assert len(judged) == 3 and len({r["rater"] for r in judged}) == 3
    for g in gold:  # gold ranks are the true order, and raters judged the same comparison too
        utils = truth["utilities"][group_key(g["prompt"], g["responses"])]
        best = g["responses"][g["ranks"].index(1)]
        assert utils[best] == max(utils.values())
        assert truth["groups"][group_key(g["prompt"], g["responses"])]["gold"]
        assert len(by_item[g["meta"]["item"]]) == 4
    ks = Counter(len(recs[0]["responses"]) for recs in by_item.values())
    assert ks == {2: 60, 4: 20}
    load = Counter(r["rater"] for r in records if r["rater"])
    assert max(load.values()) - min(load.values()) <= 1  # balanced assignment
    strengths = {r["strength"] for r in records if len(r["responses"]) == 2 and r["rater"]}
    assert strengths <= {None, "significantly better", "better", "slightly better", "negligibly better"}
    assert len(strengths) >= 3
    for r in records:
        if r["rater"]:
            assert set(r["scores"]) == {"helpfulness", "accuracy", "harmlessness"}
            assert all(1 <= v <= 5 for vals in r["scores"].values() for v in vals) and r["time_s"] > 0


def test_overlap_larger_than_pool_is_a_user_error():
    with pytest.raises(UserError, match="overlap"):
        simulate_campaign(small(raters=2, overlap=3))
    with pytest.raises(UserError, match="unknown family"):
        make_items(small(families=["arithmetic", "poetry"]))


def _profile_stats(records, truth):
    """Per profile: agreement with the truth on clear pairs (gap > 0.2), first-listed win rate, times."""
    right, first, times = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in records:
        if not r["rater"] or len(r["responses"]) != 2:
            continue
        prof = truth["raters"][r["rater"]]["profile"]
        utils = truth["utilities"][group_key(r["prompt"], r["responses"])]
        u0, u1 = (utils[t] for t in r["responses"])
        times[prof].append(r["time_s"])
        if r["ranks"][0] != r["ranks"][1]:
            first[prof].append(r["ranks"][0] < r["ranks"][1])
            if abs(u0 - u1) > 0.2:
                right[prof].append((r["ranks"][0] < r["ranks"][1]) == (u0 > u1))
    return ({p: np.mean(v) for p, v in right.items()}, {p: np.mean(v) for p, v in first.items()},
            {p: np.median(v) for p, v in times.items()})  # fmt: skip


def test_rater_profiles_behave():
    mix = {"careful": 1, "noisy": 1, "random": 1, "position_biased": 1, "adversarial": 1, "too_fast": 1}
    records, truth = simulate_campaign(small(prompts=400, raters=12, overlap=4, k_mix=None, mix=mix))
    assert Counter(v["profile"] for v in truth["raters"].values()) == {p: 2 for p in mix}
    right, first, times = _profile_stats(records, truth)
    assert right["careful"] > 0.95
    assert right["too_fast"] > 0.85
    assert 0.7 < right["noisy"] < right["careful"]
    assert 0.35 < right["random"] < 0.65
    assert right["adversarial"] < 0.1
    assert first["position_biased"] >= 0.8
    assert 0.35 < first["careful"] < 0.65  # responses are shown shuffled
    assert times["too_fast"] < times["careful"] / 4


def test_rate_items_judges_given_items_and_pool_is_stable_across_rounds():
    cfg = small(gold_rate=0.0, overlap=2)
    items = [
        {
            "id": "a",
            "prompt": "What is 17 + 25?",
            "responses": ["42", "41", "Sure! 42"],
            "meta": {"task": ARITH},
        },
        {"id": "b", "prompt": "Hello?", "responses": ["Hi there, how can I help?", "Go away, idiot."]},
    ]
    records = rate_items(items, cfg, seed=5)
    assert len(records) == 4 and {r["meta"]["item"] for r in records} == {"a", "b"}
    assert records[0]["meta"]["task"] == ARITH
    _, truth = simulate_campaign(cfg)
    assert set(r["rater"] for r in records) <= set(truth["raters"])


# ---------------------------------------------------------------- batches, sweep, planning metrics


def test_read_batch_jsonl_cleans_and_counts(tmp_path):
    path = tmp_path / "batch.jsonl"
    lines = [
        {"id": "1", "prompt": "What is 17 + 25?", "responses": ["42", "41"], "meta": {"task": ARITH}},
        {"id": "2", "prompt": "p", "responses": ["same", "same ", ""], "meta": {"task": ARITH}},
        {"id": "3", "prompt": "Hi", "responses": [{"id": "x", "text": "Hello!"}, "Go away."]},
        {"id": "4", "prompt": "q", "responses": ["a", "b", "a"], "meta": {"task": json.dumps(ARITH)}},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    items, skipped, counts = read_batch(path)
    assert [i["id"] for i in items] == ["1", "3", "4"]
    assert items[2]["responses"] == ["a", "b"] and items[2]["meta"]["task"] == ARITH
    assert [s["reason"] for s in skipped] == ["fewer_than_2_distinct_responses"] and skipped[0]["id"] == "2"
    assert counts == {"empty_responses": 1, "duplicate_responses": 2, "no_task": 1}


def test_read_batch_label_studio_pairwise_and_ranker(tmp_path):
    path = tmp_path / "tasks.json"
    tasks = [
        {"id": 7, "data": {"prompt": "What is 17 + 25?", "answer1": "42", "answer2": "41", "meta": {"task": ARITH}}},
        {"data": {"prompt": "Capital of Canada?", "meta": {"task": CAPITAL},
                  "items": [{"id": "r0", "title": "A", "body": "Ottawa."}, {"id": "r1", "title": "B", "body": "Toronto."},
                            {"id": "r2", "title": "C", "body": REFUSAL}]}},
    ]  # fmt: skip
    path.write_text(json.dumps(tasks))
    items, skipped, counts = read_batch(path)
    assert not skipped and counts["no_task"] == 0
    assert items[0]["id"] == "7" and items[0]["responses"] == ["42", "41"]
    assert items[1]["responses"] == ["Ottawa.", "Toronto.", REFUSAL] and items[1]["meta"]["task"] == CAPITAL


@pytest.mark.parametrize(
    "content, match",
    [('{"prompt": "p", "responses": ["a", "b"]}\n{bad', r"batch.jsonl:2: invalid JSON"),
     ('{"responses": ["a", "b"]}', r"batch.jsonl:1: missing field 'prompt'"),
     ("", "no items")],
)  # fmt: skip
def test_read_batch_errors_name_file_and_line(tmp_path, content, match):
    path = tmp_path / "batch.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=match):
        read_batch(path)


def test_sweep_settings_is_the_cartesian_product():
    cfg = small(sweep={"overlap": [1, 3], "gold_rate": [0.0, 0.05], "mix.random": [0.0, 0.3]})
    settings = sweep_settings(cfg)
    assert len(settings) == 8
    setting, sub = settings[-1]
    assert setting == {"overlap": 3, "gold_rate": 0.05, "mix.random": 0.3}
    assert sub.overlap == 3 and sub.mix.random == 0.3 and sub.sweep is None
    with pytest.raises(UserError, match="unknown key 'mix.clicker'"):
        sweep_settings(small(sweep={"mix.clicker": [0.1]}))
    with pytest.raises(UserError, match="overlap"):
        sweep_settings(small(sweep={"overlap": [0]}))


def test_evaluate_majority_by_hand():
    gk = group_key("p", ["a", "b"])
    truth = {"tie_epsilon": 0.01, "utilities": {gk: {"a": 0.9, "b": 0.1}}}
    votes = [[1, 2], [1, 2], [2, 1]]  # two raters say a, one says b
    records = [
        {"prompt": "p", "responses": ["a", "b"], "ranks": r, "rater": f"r{i}", "gold": False}
        for i, r in enumerate(votes)
    ]
    m = evaluate_majority(records, truth)
    assert m["majority_accuracy"] == 1.0 and m["pairs"] == 1
    assert m["agreement"] == pytest.approx(1 / 3)  # of the 3 rater pairs only (r0, r1) agree
    records[0]["ranks"] = [2, 1]
    assert evaluate_majority(records, truth)["majority_accuracy"] == 0.0


def test_small_families_hand_over_when_their_tables_run_out():
    items = make_items(small(prompts=600, families=["capital", "arithmetic"], k_mix=None))
    fams = Counter(i["meta"]["task"]["family"] for i in items)
    assert len({i["prompt"] for i in items}) == 600
    assert 100 <= fams["capital"] <= 120 and fams["arithmetic"] == 600 - fams["capital"]
    with pytest.raises(UserError, match="ran out of distinct prompts"):
        make_items(small(prompts=200, families=["capital"]))
