"""Campaign planning: how good are the merged labels and the flags for one simulated setting?

``rewardlab simulate`` with a ``sweep:`` config simulates one campaign per setting (overlap, rater mix,
gold rate) and calls ``evaluate_setting`` on each, so a team can see how many raters per item it needs
before paying for a campaign.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardlab.raters import aggregate, quality
from rewardlab.raters.table import Judgments, from_records

BAD_PROFILES = {"random", "position_biased", "adversarial", "too_fast"}
RANDOM_PROFILES = {"random"}


def truth_views(truth: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """(group_key -> {response text -> true utility}, rater -> profile) from a truth file's dict."""
    utilities = truth.get("utilities") or {}
    raters = truth.get("raters") or {}
    profiles = {
        str(name): (info if isinstance(info, str) else str(info.get("profile")))
        for name, info in raters.items()
    }
    return utilities, profiles


def _unit_truth(j: Judgments, utilities: dict[str, dict[str, float]], eps: float = 0.0) -> np.ndarray:
    """Per unit: +1 when a is truly better by more than ``eps``, -1 when b is, 0 otherwise or unknown."""
    group, a, b = aggregate.unit_layout(j)
    out = np.zeros(j.n_units, dtype=np.int8)
    for u, (g, ia, ib) in enumerate(zip(group.tolist(), a.tolist(), b.tolist())):
        util = utilities.get(j.group_keys[g])
        if not util:
            continue
        responses = j.group_responses[g]
        ua, ub = util.get(responses[ia]), util.get(responses[ib])
        if ua is None or ub is None or abs(ua - ub) <= eps:
            continue
        out[u] = 1 if ua > ub else -1
    return out


def label_accuracy(
    unit_p: np.ndarray, unit_truth: np.ndarray, margin: float, calls: np.ndarray | None = None
) -> dict[str, float | None]:
    """How well merged labels match the truth on pairs with a true difference.

    ``accuracy``: on labelled pairs; a label within ``margin`` of 0.5 is a consensus tie and scores half
    (what a coin flip would get). ``accuracy_all``: the same over every pair with a true difference, an
    unlabelled pair (all its judgments excluded) scoring half. ``coverage``: share labelled. ``brier``:
    mean squared error of the soft label p against 1 (a truly better) or 0.
    """
    differ = unit_truth != 0
    labelled = differ & ~np.isnan(unit_p)
    if not labelled.any():
        return {"accuracy": None, "accuracy_all": None, "coverage": 0.0, "brier": None}
    p = unit_p[labelled]
    t = unit_truth[labelled]
    # ds3 calls its own ties (``calls``: +1/0/-1 per unit from the consensus ranks); the others: the margin
    tie = np.abs(p - 0.5) <= margin if calls is None else calls[labelled] == 0
    up = p > 0.5 if calls is None else calls[labelled] > 0
    right = np.where(tie, 0.5, (up == (t > 0)).astype(float))
    n_differ = int(differ.sum())
    return {
        "accuracy": float(right.mean()),
        "accuracy_all": float((right.sum() + 0.5 * (n_differ - len(right))) / n_differ),
        "coverage": float(len(right) / n_differ),
        "brier": float(np.mean((p - (t > 0)) ** 2)),
    }


def evaluate_setting(records: list[dict[str, Any]], truth: dict[str, Any], cfg: Any = None) -> dict[str, Any]:
    """Label accuracy (configured method, after exclusion) vs majority vote, agreement, and flag quality.

    ``flag_recall``: share of random clickers that are flagged. ``flag_precision``: share of flagged raters
    whose true profile is a bad one (random, position-biased, adversarial, too fast): flagging a
    position-biased rater is a correct flag. ``flag_precision_random`` counts only random clickers.
    """
    from rewardlab.config import RatersConfig

    cfg = cfg or RatersConfig()
    j = from_records(records)
    report = quality.build_report(j, cfg)
    excluded = aggregate.excluded_raters(j, report, cfg, cfg.method)
    keep = ~np.isin(j.j_rater, [i for i, n in enumerate(j.raters) if n in excluded])
    method = cfg.method if cfg.method != "none" else "majority"
    utilities, profiles = truth_views(truth)
    # Like the simulator's own fallback: a pair "differs" when its true gap exceeds the tie epsilon (the
    # simulator's utilities carry a tiny jitter, so equal-quality answers differ by a hair).
    unit_truth = _unit_truth(j, utilities, float(truth.get("tie_epsilon", 0.0)))
    cons = aggregate.consensus(j, method, keep, cfg)
    calls = aggregate.unit_calls(j, cons) if method == "ds3" else None
    acc = label_accuracy(cons.unit_p, unit_truth, cfg.tie_margin, calls)
    everyone = np.ones(len(j.j_row), dtype=bool)
    maj = aggregate.consensus(j, "majority", everyone, cfg)
    maj = label_accuracy(maj.unit_p, unit_truth, cfg.tie_margin)
    flagged = {r["rater"] for r in report["raters"] if r["flagged"]}
    randoms = {name for name, prof in profiles.items() if prof in RANDOM_PROFILES and name in set(j.raters)}
    bad = {name for name, prof in profiles.items() if prof in BAD_PROFILES}
    by_profile: dict[str, list[int]] = {}
    for name in j.raters:
        if name is None or name not in profiles:
            continue
        counts = by_profile.setdefault(profiles[name], [0, 0])
        counts[0] += name in flagged
        counts[1] += 1
    return {
        "label_accuracy": acc["accuracy"],
        "majority_accuracy": maj["accuracy"],
        "label_accuracy_all": acc["accuracy_all"],
        "label_coverage": acc["coverage"],
        "label_brier": acc["brier"],
        "majority_brier": maj["brier"],
        "method": method,
        "agreement": report["agreement"],
        "alpha": report["alpha"],
        "flag_precision": (len(flagged & bad) / len(flagged)) if flagged else None,
        "flag_precision_random": (len(flagged & randoms) / len(flagged)) if flagged else None,
        "flag_recall": (len(flagged & randoms) / len(randoms)) if randoms else None,
        "flagged": len(flagged),
        "flagged_by_profile": {
            prof: {"flagged": f, "raters": n} for prof, (f, n) in sorted(by_profile.items())
        },
        "judgments": len(j.j_row),
        "pairs_with_true_difference": int((unit_truth != 0).sum()),
    }
