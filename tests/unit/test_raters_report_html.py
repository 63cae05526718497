"""The HTML rater report: self-contained (no network, no script), three charts, the table with flags."""

from __future__ import annotations

import re

from rewardlab.config import RatersConfig
from rewardlab.raters import quality, synthetic
from rewardlab.raters.report_html import render_rater_charts, render_report_html
from rewardlab.raters.table import from_records


def make_report():
    records, _ = synthetic.campaign(groups=120, raters=10, overlap=3, seed=4, gold_rate=0.2)
    return quality.build_report(from_records(records), RatersConfig())


def test_page_is_self_contained_with_three_charts_and_flags():
    report = make_report()
    page = render_report_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg ") == 3
    assert not re.search(r"(src|href)=|https?://|<script|@import|url\(", page)
    assert "published" in page and "Krippendorff" in page
    assert page.count('<tr class="flagged">') == len(report["flagged"]) > 0
    for r in report["raters"]:
        assert f"<td>{r['rater']}</td>" in page
    # one dot per rater with both gold accuracy and agreement, flagged ones in red
    both = [r for r in report["raters"] if r["agreement"] is not None and r["gold_accuracy"] is not None]
    assert page.count("<circle ") == len(both)
    assert page.count('fill="#c0392b" fill-opacity') == sum(r["flagged"] for r in both)


def test_charts_fragment_for_embedding_and_empty_cases():
    fragment = render_rater_charts(make_report())
    assert fragment.startswith('<div class="rl-raters">') and "<html" not in fragment
    assert fragment.count("<svg ") == 3
    empty = render_rater_charts({"raters": [{"rater": "r1", "agreement": None, "gold_accuracy": None,
                                             "position_bias": None, "flagged": False}]})  # fmt: skip
    assert empty.count("<svg ") == 3 and "no comparison was judged by two raters" in empty
