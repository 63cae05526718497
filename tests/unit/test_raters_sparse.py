"""simulate's sparse campaign mode: shaped like a real platform's export (issue 28)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from rewardlab import config as cfglib
from rewardlab.data.simulate import simulate_campaign


def test_sparse_campaign_shape():
    cfg = cfglib.load("configs/simulate/sparse.yaml", ["prompts=1000"], stage="simulate")
    records, truth = simulate_campaign(cfg)
    judged = [r for r in records if not r["gold"]]
    per_item = Counter(r["meta"]["item"] for r in judged)
    sizes = Counter(per_item.values())
    assert set(sizes) <= {1, 3, 4, 5}
    multi = sum(v for k, v in sizes.items() if k > 1) / len(per_item)
    assert 0.06 < multi < 0.14  # overlap_share 0.1
    gold = sum(r["gold"] for r in records) / len(per_item)
    assert 0.02 <= gold <= 0.05
    load = sorted(Counter(r["rater"] for r in judged).values())
    assert load[-1] >= 100 and np.median(load) <= 30  # a few heavy raters, many light ones
    careful = [p for p in truth["raters"].values() if p["profile"] == "careful"]
    temps = [p["temperature"] for p in careful]
    ties = [p["tie_prob"] for p in careful]
    assert max(temps) / min(temps) > 3 and max(ties) - min(ties) > 0.3  # careful raters differ
    # the same seed gives the same campaign; the dense pool is unchanged by the sparse section
    again, _ = simulate_campaign(cfg)
    assert [r["ranks"] for r in again] == [r["ranks"] for r in records]
    dense = cfglib.load("configs/simulate/sparse.yaml", ["prompts=10", "sparse=null"], stage="simulate")
    _, t2 = simulate_campaign(dense)
    assert all("workload" not in p for p in t2["raters"].values())
