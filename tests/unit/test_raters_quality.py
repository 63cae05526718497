"""Rater quality: hand-computed metrics, crowd-kit cross-checks, and flags on a synthetic campaign."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rewardlab.config import RatersConfig
from rewardlab.data.schema import group_key, normalize
from rewardlab.raters import noisy_bt, quality, synthetic
from rewardlab.raters.table import NO_GOLD, from_records


def rec(responses, ranks, rater=None, gold=False, time_s=None, prompt="Which is better?", scores=None):
    obj = {"prompt": prompt, "responses": responses, "ranks": ranks, "rater": rater, "gold": gold}
    if time_s is not None:
        obj["time_s"] = time_s
    if scores is not None:
        obj["scores"] = scores
    return normalize(obj)


def by_rater(report):
    return {r["rater"]: r for r in report["raters"]}


def test_wilson_interval_hand_computed():
    lo, hi = quality.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    assert quality.wilson(0, 0) == (0.0, 1.0)


def test_shuffled_orders_line_up_on_one_comparison():
    # r1 sees (A, B) and prefers A; r2 sees (B, A) and also prefers A: same unit, same outcome.
    j = from_records(
        [rec(["A", "B"], [1, 2], "r1"), rec(["B", "A"], [2, 1], "r2"), rec(["B", "A"], [1, 2], "r3")]
    )
    assert j.n_groups == 1
    assert j.group_keys[0] == group_key("Which is better?", ["B", "A"])
    assert j.p_unit.tolist() == [0, 0, 0]
    assert j.p_outcome.tolist() == [1, 1, -1]  # canonical a = "A"
    assert j.p_first.tolist() == [1, 0, 1]  # r1 and r3 picked what they saw first


def test_kwise_pairs_map_through_display_order():
    j = from_records([rec(["C", "A", "B"], [1, 3, 2], "r1")])
    # canonical order A, B, C; the rater ranks C > B > A
    outcome = {(int(a), int(b)): int(o) for a, b, o in zip(j.p_a, j.p_b, j.p_outcome)}
    assert outcome == {(0, 1): -1, (0, 2): -1, (1, 2): -1}
    assert int(j.p_lead.sum()) == 2  # pairs that involve the first-listed response


def test_percent_agreement_and_alpha_hand_computed():
    # one unit with votes up, up, down: 1 agreeing pair of 3; a unit with up, up: 1 of 1
    counts = np.array([[2, 0, 1], [2, 0, 0]])
    agreement, pairs = quality.percent_agreement(counts)
    assert pairs == 4 and agreement == pytest.approx(0.5)
    # nominal alpha by hand: coincidences o_uu = 2*1/2 + 2*1/1 = 3, o_ud = o_du = 2*1/2 = 1, n = 5
    # D_o = 2 / 5, D_e = 2 * n_u * n_d / (n (n - 1)) = 2 * 4 * 1 / 20 -> alpha = 1 - 0.4 / 0.4 = 0
    assert quality.krippendorff_alpha(counts, "nominal") == pytest.approx(0.0)
    assert quality.krippendorff_alpha(np.array([[3, 0, 0], [0, 0, 2]]), "ordinal") == pytest.approx(1.0)


def test_nominal_alpha_matches_crowdkit():
    from crowdkit.metrics.data import alpha_krippendorff

    rng = np.random.default_rng(0)
    rows = []
    for task in range(40):
        true = rng.integers(3)
        for worker in rng.choice(6, size=int(rng.integers(2, 5)), replace=False):
            label = true if rng.random() < 0.7 else rng.integers(3)
            rows.append((task, f"w{worker}", int(label)))
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    counts = np.zeros((40, 3))
    for task, _, label in rows:
        counts[task, label] += 1
    assert quality.krippendorff_alpha(counts, "nominal") == pytest.approx(alpha_krippendorff(df), abs=1e-9)


def test_loo_consensus_leaves_the_judgment_out():
    j = from_records(
        [rec(["A", "B"], [1, 2], "r1"), rec(["A", "B"], [1, 2], "r2"), rec(["A", "B"], [2, 1], "r3")]
    )
    # r1: others r2 (A), r3 (B) split -> no consensus; r3: others both A -> consensus A
    assert quality.loo_consensus(j).tolist() == [2, 2, 1]


def test_gold_accuracy_position_bias_ties_and_speed():
    records = [rec(["A", "B"], [1, 2], gold=True, prompt=f"q{n}") for n in range(4)]
    for n in range(4):
        p = f"q{n}"
        records.append(rec(["A", "B"], [1, 2], "good", time_s=30, prompt=p))  # always right, first-listed
        records.append(rec(["B", "A"], [1, 2], "bad", time_s=2, prompt=p))  # always wrong, always first
        records.append(rec(["B", "A"], [1, 1], "tie", time_s=40, prompt=p))
    j = from_records(records)
    assert (j.unit_gold != NO_GOLD).sum() == 4
    cfg = RatersConfig(thresholds={"min_items": 3, "min_agreement": 0.0})  # 2 of 3 raters are bad here
    report = quality.build_report(j, cfg)
    r = by_rater(report)
    assert r["good"]["gold_accuracy"] == 1.0 and r["bad"]["gold_accuracy"] == 0.0
    assert r["good"]["gold_items"] == 4
    lo, hi = r["bad"]["gold_ci"]
    assert lo == 0.0 and hi == pytest.approx(quality.wilson(0, 4)[1], abs=1e-4)
    assert r["bad"]["position_bias"] == 1.0 and r["tie"]["position_bias"] is None
    assert r["tie"]["tie_rate"] == 1.0 and r["good"]["tie_rate"] == 0.0
    assert r["bad"]["too_fast"] and not r["good"]["too_fast"]
    codes = {name: {reason.split(":")[0] for reason in x["reasons"]} for name, x in r.items()}
    assert {"low_gold_accuracy", "too_fast"} <= codes["bad"]
    assert codes["good"] == set()
    assert report["gold_records"] == 4 and report["judgments"] == 12


def test_position_bias_not_flagged_when_the_order_was_not_shuffled():
    # Everyone puts the first-listed response on top (e.g. an import that lists the chosen answer first).
    records = [
        rec(["A" + str(n), "B" + str(n)], [1, 2], f"r{r}", prompt=f"q{n}") for n in range(8) for r in range(3)
    ]
    report = quality.build_report(from_records(records), RatersConfig())
    assert report["pool_position_bias"] == 1.0
    assert not report["flagged"]
    assert any("not shuffled" in note for note in report["notes"])


def test_raters_without_id_are_never_flagged():
    records = [rec(["A", "B"], [2, 1], None, prompt=f"q{n}") for n in range(6)]
    records += [rec(["A", "B"], [1, 2], f"r{r}", prompt=f"q{n}") for n in range(6) for r in range(2)]
    report = quality.build_report(from_records(records), RatersConfig())
    anon = by_rater(report)[None]
    assert anon["agreement"] == 0.0 and not anon["flagged"]
    assert any("without a rater id" in note for note in report["notes"])


def test_flags_catch_random_clickers_on_a_synthetic_campaign():
    records, truth = synthetic.campaign(groups=300, raters=15, overlap=3, seed=3, with_scores=True)
    report = quality.build_report(from_records(records), RatersConfig())
    profiles = truth["raters"]
    flagged = set(report["flagged"])
    randoms = {r for r, p in profiles.items() if p == "random"}
    careful = {r for r, p in profiles.items() if p == "careful"}
    # 60 judgments each: a random clicker is flagged only where the evidence decides (Wilson 95% interval
    # of its agreement wholly under 0.6); the others are listed as insufficient_evidence, with how many more
    # pairs would decide. No careful rater is flagged.
    assert randoms & flagged
    r = by_rater(report)
    for x in randoms - flagged:
        pending = {e["code"]: e for e in r[x]["insufficient_evidence"]}
        assert pending["low_agreement"]["more_needed"] > 0
    assert not flagged & careful
    r = by_rater(report)
    assert min(r[x]["reliability"] for x in careful) > max(r[x]["reliability"] for x in randoms)
    assert min(r[x]["rubric_reliability"] for x in careful) > max(r[x]["rubric_reliability"] for x in randoms)
    assert report["agreement_without_flagged"] > report["agreement"]
    assert report["alpha_method"] == quality.ALPHA_METHOD


def test_noisy_bt_likelihood_is_crowdkits_and_gradient_is_right():
    from crowdkit.aggregation import NoisyBradleyTerry
    from scipy.optimize import check_grad

    rng = np.random.default_rng(1)
    n_items, n_raters, n_rows = 12, 4, 60
    left = rng.integers(0, n_items, n_rows)
    right = (left + rng.integers(1, n_items, n_rows)) % n_items
    rater = rng.integers(0, n_raters, n_rows)
    y = rng.choice([-1.0, 1.0], n_rows)
    c = np.ones(n_rows)
    x = rng.normal(size=n_items + 2 * n_raters)
    ours, _ = noisy_bt._objective(x, left, right, rater, y, c, n_items, n_raters, 0.0, 0.0)
    winner = np.where(y > 0, left, right)
    np_data = np.stack([left, right, winner], axis=1) + 1
    theirs = NoisyBradleyTerry._compute_log_likelihood(
        np.concatenate([[0.0], x]), np_data, rater, n_items, n_raters, 0.0
    )
    assert ours == pytest.approx(theirs, rel=1e-9)
    c = np.where(rng.random(n_rows) < 0.3, 0.5, 1.0)  # tie halves
    args = (left, right, rater, y, c, n_items, n_raters, 0.3, 0.05)
    err = check_grad(
        lambda v: noisy_bt._objective(v, *args)[0], lambda v: noisy_bt._objective(v, *args)[1], x
    )
    assert err < 1e-4


def test_noisy_bt_fit_ranks_items_and_spots_a_position_clicker():
    rng = np.random.default_rng(2)
    strengths = np.linspace(-2, 2, 8)
    rows = []
    for _ in range(600):
        i, k = rng.choice(8, 2, replace=False)
        w = int(rng.integers(3))
        judged = 1.0 if rng.random() < 1 / (1 + np.exp(strengths[k] - strengths[i])) else -1.0
        y = 1.0 if w == 2 else judged  # rater 2 always picks the first-listed item
        rows.append((i, k, w, y))
    left, right, rater, y = (np.array(col) for col in zip(*rows))
    fit = noisy_bt.fit(left, right, rater, y, np.ones(len(y)), 8, 3, ridge=0.01)
    assert np.corrcoef(fit.scores, strengths)[0, 1] > 0.95
    assert fit.skills[2] < 0.3 < 0.7 < min(fit.skills[0], fit.skills[1])
    assert fit.biases[2] > 0.9


def test_chat_prompts_group_by_content_and_gold_conflicts_are_counted():
    chat = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Pick"},
    ]
    records = [
        normalize({"prompt": chat, "responses": ["X", "Y"], "ranks": [1, 2], "rater": "r1"}),
        normalize({"prompt": chat, "responses": ["Y", "X"], "ranks": [1, 2], "rater": "r2"}),
        normalize({"prompt": chat, "responses": ["X", "Y"], "ranks": [1, 2], "gold": True}),
        normalize({"prompt": chat, "responses": ["X", "Y"], "ranks": [2, 1], "gold": True}),
        normalize({"prompt": "Pick", "responses": ["X", "Y"], "ranks": [1, 2], "rater": "r1"}),
    ]
    j = from_records(records)
    assert j.n_groups == 2
    assert j.group_keys[0] == group_key(chat, ["Y", "X"])
    assert j.j_group.tolist() == [0, 0, 1]
    assert j.p_outcome.tolist() == [1, -1, 1]
    assert j.unit_gold.tolist() == [1, NO_GOLD]  # the first reference wins
    assert j.gold_conflicts == 1 and j.gold_rows == [2, 3]


def test_flags_need_an_interval_wholly_past_the_threshold():
    """One agreement in two pairs is 0.50 < 0.6 but no evidence: listed as insufficient_evidence with the
    number of further pairs that, at the same rate, would decide; the same rate on many pairs is a flag."""
    t = RatersConfig().thresholds
    few = quality.check(
        "low_agreement", 0.5, 2, 0.6, True, 0.95, t.min_items, "overlapping pairs", "agreement"
    )
    assert few["decision"] == "insufficient_evidence"
    lo, hi = few["interval"]
    assert lo < 0.5 < 0.6 < hi
    more = few["more_needed"]
    assert more > 0
    at = quality.check("low_agreement", 0.5, 2 + more, 0.6, True, 0.95, t.min_items, "pairs", "agreement")
    before = quality.check("low_agreement", 0.5, 1 + more, 0.6, True, 0.95, t.min_items, "pairs", "a")
    assert at["decision"] == "flag" and before["decision"] == "insufficient_evidence"
    assert quality.check("low_agreement", 0.7, 50, 0.6, True, 0.95, 5, "pairs", "a") is None
    # an estimate on the threshold: no sample size decides
    assert quality.check("position_bias", 0.8, 10, 0.8, False, 0.95, 5, "pairs", "a") is None
    rater = {
        "rater": "r1", "items": 2, "pairs": 2, "agreement": 0.5, "agreement_pairs": 2, "gold_accuracy": None,
        "gold_items": 0, "position_bias": None, "position_pairs": 0, "median_time_s": None,
        "reliability": 0.5, "too_fast": False,
    }  # fmt: skip
    quality.flag([rater], t, None, None)
    assert not rater["flagged"] and rater["reasons"] == []
    assert [e["code"] for e in rater["insufficient_evidence"]] == ["low_agreement"]
    rater.update(agreement=0.3, agreement_pairs=60, items=60, pairs=60)
    quality.flag([rater], t, None, None)
    assert rater["flagged"] and rater["evidence"][0]["interval"][1] < 0.6
    assert "95% interval" in rater["reasons"][0] and "60 overlapping pairs" in rater["reasons"][0]


def _majority_campaign(careful: list[str], adversaries: list[str], items: int = 20, gold_items: int = 6):
    """Every rater judges every comparison (shown in alternating order); the truth is A above B, careful
    raters say so, adversaries invert it; the first ``gold_items`` comparisons also carry a gold reference."""
    rows = []
    for i in range(items):
        prompt = f"question {i}"
        shown, right, wrong = (["A", "B"], [1, 2], [2, 1]) if i % 2 else (["B", "A"], [2, 1], [1, 2])
        if i < gold_items:
            rows.append(rec(shown, right, None, gold=True, prompt=prompt))
        rows += [rec(shown, right, r, prompt=prompt) for r in careful]
        rows += [rec(shown, wrong, r, prompt=prompt) for r in adversaries]
    return from_records(rows)


def test_agreement_flags_are_suspended_when_gold_contradicts_the_consensus():
    # Adversaries are the majority: the consensus is B above A, which gold contradicts. Agreement with it
    # is no evidence against the careful raters (agreement 0 on 20 pairs would flag them without the guard).
    j = _majority_campaign(["c1", "c2"], ["x1", "x2", "x3"])
    right, n = quality.consensus_gold(j)
    assert (right, n) == (0, 6)
    rep = quality.build_report(j, RatersConfig())
    check = rep["consensus_check"]
    assert check["suspended"] and check["reason"].startswith("consensus contradicted by gold: accuracy 0.00")
    r = by_rater(rep)
    for name in ("c1", "c2"):
        assert not r[name]["flagged"]
        (e,) = [e for e in r[name]["insufficient_evidence"] if e["code"] == "low_agreement"]
        assert e["suspended"] == check["reason"] and e["estimate"] == 0.0
    # the adversaries are still found, by the outside reference
    for name in ("x1", "x2", "x3"):
        assert [e["code"] for e in r[name]["evidence"]] == ["low_gold_accuracy"]
    assert any("low_agreement flags suspended" in note for note in rep["notes"])
    from rewardlab.raters.report_html import render_report_html

    page = render_report_html(rep)
    assert "gold accuracy 0.00 [0.00, 0.39] on 6 gold comparisons" in page and "flags suspended" in page


def test_agreement_flags_stand_when_gold_confirms_the_consensus():
    j = _majority_campaign(["c1", "c2", "c3"], ["x1"])
    rep = quality.build_report(j, RatersConfig())
    assert not rep["consensus_check"]["suspended"] and rep["consensus_check"]["n"] == 6
    r = by_rater(rep)
    assert "low_agreement" in [e["code"] for e in r["x1"]["evidence"]]
    assert not any(r[c]["flagged"] for c in ("c1", "c2", "c3"))
