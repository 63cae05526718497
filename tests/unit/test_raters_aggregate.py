"""Aggregation: hand-computed soft labels with ties, K-wise consensus, exclusion, the output dataset."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from rewardlab.config import RatersConfig
from rewardlab.data.dataset import iter_records, load_dataset, pairs, write_dataset
from rewardlab.data.schema import normalize
from rewardlab.raters import aggregate, planning, synthetic
from rewardlab.raters.table import from_records


def rec(responses, ranks, rater, prompt="Which is better?", **extra):
    return normalize({"prompt": prompt, "responses": responses, "ranks": ranks, "rater": rater, **extra})


def merge(records, method="majority", **cfg):
    j = from_records(records)
    config = RatersConfig(exclude="none", **cfg)
    keep = np.ones(len(j.j_row), dtype=bool)
    return j, aggregate.consensus(j, method, keep, config)


def test_majority_counts_a_tie_as_half_a_win():
    _, cons = merge(
        [rec(["A", "B"], [1, 2], "r1"), rec(["B", "A"], [2, 1], "r2"), rec(["A", "B"], [1, 1], "r3")]
    )
    assert cons.unit_p[0] == pytest.approx(2.5 / 3)
    assert cons.group_ranks[0] == [1, 2]
    assert cons.group_weight[0] == pytest.approx(2.5 / 3)
    assert cons.group_agreement[0] == pytest.approx(2 / 3)  # the tie does not match the consensus order


def test_an_even_split_is_a_consensus_tie():
    _, cons = merge([rec(["A", "B"], [1, 2], "r1"), rec(["A", "B"], [2, 1], "r2")])
    assert cons.unit_p[0] == 0.5 and cons.group_ranks[0] == [1, 1]
    assert cons.group_weight[0] == 0.5


@pytest.mark.parametrize("method", ["majority", "noisy-bt", "dawid-skene"])
def test_kwise_consensus_ranking_and_pairwise_soft_labels(method):
    # canonical order A, B, C; two raters say A > B > C, one says B > A > C (shown in other orders)
    records = [
        rec(["A", "B", "C"], [1, 2, 3], "r1"),
        rec(["C", "A", "B"], [3, 1, 2], "r2"),
        rec(["B", "C", "A"], [1, 3, 2], "r3"),
    ]
    j, cons = merge(records, method)
    assert cons.group_ranks[0] == [1, 2, 3]
    p = dict(zip(combinations(range(3), 2), cons.unit_p.tolist()))
    assert p[(0, 1)] > 0.5 and p[(0, 2)] > 0.5 and p[(1, 2)] > 0.5
    assert p[(1, 2)] >= p[(0, 1)]  # B > C is unanimous, A > B is 2-1
    if method == "majority":
        assert p[(0, 1)] == pytest.approx(2 / 3) and p[(1, 2)] == 1.0


def test_exclusion_policies():
    records = [rec(["A", "B"], [1, 2], f"r{n}") for n in range(3)]
    j = from_records(records)
    report = {"raters": [{"rater": "r0", "flagged": True, "reasons": ["low_agreement: 0.40 < 0.6"]},
                         {"rater": "r1", "flagged": False, "reasons": []}]}  # fmt: skip
    flagged = aggregate.excluded_raters(j, report, RatersConfig(exclude_list=["r2", "ghost"]))
    assert flagged == {"r0": "flagged: low_agreement: 0.40 < 0.6", "r2": "listed in exclude_list"}
    listed = aggregate.excluded_raters(j, report, RatersConfig(exclude="listed", exclude_list=["r1"]))
    assert listed == {"r1": "listed in exclude_list"}
    assert aggregate.excluded_raters(j, report, RatersConfig(exclude="none", exclude_list=["r1"])) == {}


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory):
    records, truth = synthetic.campaign(
        groups=120, raters=12, overlap=3, seed=5, gold_rate=0.1, with_scores=True
    )
    k3, _ = synthetic.campaign(groups=20, k=3, raters=12, overlap=3, seed=6, gold_rate=0.0)
    for r in k3:
        r["prompt"] = "k3 " + r["prompt"]
    out = tmp_path_factory.mktemp("raters") / "campaign"
    write_dataset([normalize(r) for r in records + k3], out)
    return out, records + k3, truth


def test_aggregate_dataset_writes_one_record_per_group_and_loses_nothing(campaign_dir, tmp_path):
    src, records, _ = campaign_dir
    summary = aggregate.aggregate_dataset(src, tmp_path / "agg", RatersConfig())
    judgments = [r for r in records if not r["gold"]]
    gold = [r for r in records if r["gold"]]
    assert summary["judgments_used"] + summary["judgments_excluded"] == len(judgments)
    assert summary["gold_records"] == len(gold)
    assert summary["excluded_raters"] and summary["method"] == "ds3"
    excluded = [json.loads(line) for line in (tmp_path / "agg" / "excluded.jsonl").read_text().splitlines()]
    assert len(excluded) == summary["judgments_excluded"]
    assert {e["rater"] for e in excluded} == set(summary["excluded_raters"])
    assert all(e["reason"].startswith("flagged: ") and e["record"]["ranks"] for e in excluded)
    assert len((tmp_path / "agg" / "gold.jsonl").read_text().splitlines()) == len(gold)
    assert json.loads((tmp_path / "agg" / "rater_report.json").read_text())["flagged"] == summary["flagged"]
    out = list(iter_records(load_dataset(tmp_path / "agg")))
    assert len(out) == summary["records_written"] == summary["groups"]
    assert summary["groups"] + summary["groups_dropped"] == len({r["prompt"] for r in judgments})
    with_gold = 0
    for r in out:
        k = len(r["responses"])
        assert len(r["soft_pairs"]) == k * (k - 1) // 2
        assert not r["gold"] and r["rater"] is None
        assert not set(r["raters"]) & set(summary["excluded_raters"])
        # one discount, not two: the soft label carries the uncertainty, the record weight stays 1
        assert r["weight"] == 1.0 and 0.0 <= r["agreement"] <= 1.0
        assert 0.5 <= r["meta"]["aggregation"]["confidence"] <= 1.0
        assert len(r["meta"]["aggregation"]["tie_pairs"]) == len(r["soft_pairs"])
        soft = {(int(i), int(j)): p for i, j, p in r["soft_pairs"]}
        for pair in pairs(r):  # the RM reads soft labels and weights through this view
            i, j = pair["chosen_index"], pair["rejected_index"]
            assert pair["p"] == pytest.approx(soft[(i, j)] if (i, j) in soft else 1 - soft[(j, i)])
            assert pair["weight"] == r["weight"]
            if not pair["tie"]:
                assert pair["p"] >= 0.5 - 1e-9  # the consensus order agrees with its own soft label
        if "helpfulness" in (r["scores"] or {}):
            assert all(1 <= s <= 5 for s in r["scores"]["helpfulness"] if s is not None)
        with_gold += "gold_ranks" in r["meta"]["aggregation"]
    assert with_gold > 0


def test_method_none_keeps_judgments_and_listed_policy(campaign_dir, tmp_path):
    src, records, _ = campaign_dir
    cfg = RatersConfig(exclude="listed", exclude_list=["r-000"])
    summary = aggregate.aggregate_dataset(src, tmp_path / "kept", cfg, method="none")
    n_r0 = sum(1 for r in records if r["rater"] == "r-000")
    assert summary["judgments_excluded"] == n_r0 and summary["excluded_raters"] == ["r-000"]
    out = list(iter_records(load_dataset(tmp_path / "kept")))
    assert len(out) == summary["judgments_used"] == sum(1 for r in records if not r["gold"]) - n_r0
    assert all(r["rater"] and r["rater"] != "r-000" and r["soft_pairs"] is None for r in out)


def test_evaluate_setting_on_a_synthetic_campaign():
    # 150 judgments per rater: enough for every random clicker's flag to rest on evidence (at 45 per rater,
    # seed 11, none is decided yet: they are listed as insufficient_evidence).
    records, truth = synthetic.campaign(groups=1000, raters=20, overlap=3, seed=11)
    res = planning.evaluate_setting(records, truth)
    assert res["flag_recall"] == 1.0 and res["flag_precision"] >= 0.8
    assert res["label_accuracy"] >= res["majority_accuracy"] - 0.01
    assert res["label_accuracy"] > 0.85 and 0.9 < res["label_coverage"] <= 1.0
    assert res["flagged_by_profile"]["careful"]["flagged"] == 0
