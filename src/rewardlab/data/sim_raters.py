"""The simulated rater pool: profiles, who judges what, and how one rater judges one comparison.

Why profiles: the rater-quality report and the aggregation methods are only testable when we know who is
careless. Each rater has a profile with fixed parameters (stored in truth.json):

- ``careful``: Plackett-Luce (Bradley-Terry for pairs) on true utilities at a low temperature.
- ``noisy``: the same at a higher temperature.
- ``random``: a uniformly random ranking, random strength and Likert scores (a random clicker).
- ``position_biased``: puts the first-listed response on top with probability ``p_first``, else careful-ish.
- ``adversarial``: Plackett-Luce on the negated utilities (inverts the truth).
- ``too_fast``: careful-ish but a little noisier, with very short times.

Raters see the responses in a shuffled order (so position bias is measurable from the record itself):
``responses`` in a record is the order the rater saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardlab.data.sim_tasks import RUBRICS

PROFILES: dict[str, dict[str, float]] = {
    # temperature on the utility scale (utilities lie in [0, 1]; typical gaps 0.05-0.8)
    "careful": {"temperature": 0.04, "sign": 1, "p_first": 0.0, "tie_prob": 0.5, "likert_sd": 0.4,
                "time_median_s": 35.0, "time_sigma": 0.35},
    "noisy": {"temperature": 0.2, "sign": 1, "p_first": 0.0, "tie_prob": 0.3, "likert_sd": 1.0,
              "time_median_s": 28.0, "time_sigma": 0.5},
    "random": {"temperature": float("inf"), "sign": 1, "p_first": 0.0, "tie_prob": 0.0, "likert_sd": float("inf"),
               "time_median_s": 12.0, "time_sigma": 0.6},
    "position_biased": {"temperature": 0.08, "sign": 1, "p_first": 0.85, "tie_prob": 0.2, "likert_sd": 0.7,
                        "time_median_s": 20.0, "time_sigma": 0.45},
    "adversarial": {"temperature": 0.04, "sign": -1, "p_first": 0.0, "tie_prob": 0.2, "likert_sd": 0.4,
                    "time_median_s": 30.0, "time_sigma": 0.4},
    "too_fast": {"temperature": 0.1, "sign": 1, "p_first": 0.0, "tie_prob": 0.2, "likert_sd": 0.8,
                 "time_median_s": 3.5, "time_sigma": 0.4},
}  # fmt: skip

# Preference-strength labels from the (perceived) utility gap of a pair, largest first.
STRENGTHS = [
    (0.45, "significantly better"),
    (0.25, "better"),
    (0.1, "slightly better"),
    (0.0, "negligibly better"),
]


def allocate(mix: dict[str, float], n: int) -> list[str]:
    """Profile names for ``n`` raters in proportion to ``mix`` (largest-remainder rounding, sums to n)."""
    total = sum(v for v in mix.values() if v > 0)
    if total <= 0:
        raise ValueError("the rater mix is empty: give at least one profile a share > 0")
    shares = {k: n * v / total for k, v in mix.items() if v > 0}
    counts = {k: int(np.floor(s)) for k, s in shares.items()}
    left = n - sum(counts.values())
    for k in sorted(shares, key=lambda k: (counts[k] - shares[k], k))[:left]:
        counts[k] += 1
    return [k for k in counts for _ in range(counts[k])]


def build_pool(mix: dict[str, float], n: int, seed: int, sparse: Any = None) -> dict[str, dict[str, Any]]:
    """Rater id -> profile parameters. Deterministic by seed, so the same ids mean the same raters in
    every round (``simulate`` and ``simulate rate`` with the same config share the pool).

    ``sparse`` (a ``SparseCampaign``): careful raters then differ (log temperature sd ``careful_spread``,
    tie habit uniform in ``careful_tie_prob``) and each rater gets a lognormal ``workload`` weight."""
    unknown = set(mix) - set(PROFILES)
    if unknown:
        raise ValueError(f"unknown rater profile(s) {sorted(unknown)} (one of {', '.join(PROFILES)})")
    rng = np.random.default_rng([seed, 101])
    names = allocate(mix, n)
    rng.shuffle(names)
    width = max(2, len(str(n - 1)))
    pool = {}
    for i, name in enumerate(names):
        params = dict(PROFILES[name])
        # small per-rater variation so two careful raters are not clones
        if np.isfinite(params["temperature"]):
            params["temperature"] = round(params["temperature"] * float(np.exp(rng.normal(0, 0.15))), 4)
        params["time_median_s"] = round(params["time_median_s"] * float(np.exp(rng.normal(0, 0.15))), 2)
        params = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in params.items()}
        pool[f"r-{i:0{width}d}"] = {"profile": name, **params}
    if sparse is not None:
        # a separate stream, so the dense pool above is unchanged by the sparse settings
        srng = np.random.default_rng([seed, 102])
        lo, hi = sparse.careful_tie_prob
        for params in pool.values():
            spread, tie = float(np.exp(srng.normal(0, sparse.careful_spread))), float(srng.uniform(lo, hi))
            if params["profile"] == "careful":
                params["temperature"] = round(params["temperature"] * spread, 4)
                params["tie_prob"] = round(tie, 3)
            params["workload"] = round(float(np.exp(srng.normal(0, sparse.workload_sigma))), 4)
    return pool


def assign_sparse(
    n_items: int, pool: dict[str, dict[str, Any]], sparse: Any, rng: np.random.Generator
) -> list[list[str]]:
    """Who judges what in a sparse campaign: an ``overlap_share`` of items gets overlap_min..overlap_max
    distinct raters, the rest one; raters are drawn in proportion to their ``workload`` weight."""
    ids = list(pool)
    w = np.array([pool[r]["workload"] for r in ids], dtype=float)
    w /= w.sum()
    if sparse.overlap_max > len(ids):
        raise ValueError(
            f"overlap_max {sparse.overlap_max} needs at least that many raters, the pool has {len(ids)}"
        )
    multi = rng.random(n_items) < sparse.overlap_share
    sizes = np.where(multi, rng.integers(sparse.overlap_min, sparse.overlap_max + 1, size=n_items), 1)
    return [[ids[int(i)] for i in rng.choice(len(ids), size=int(m), replace=False, p=w)] for m in sizes]


def assign(n_items: int, rater_ids: list[str], overlap: int, rng: np.random.Generator) -> list[list[str]]:
    """``overlap`` distinct raters per item, balancing load (least-loaded first, random tie-break)."""
    if overlap > len(rater_ids):
        raise ValueError(f"overlap {overlap} needs at least {overlap} raters, the pool has {len(rater_ids)}")
    load = np.zeros(len(rater_ids))
    out = []
    for _ in range(n_items):
        order = np.argsort(load + rng.random(len(rater_ids)) * 0.5, kind="stable")[:overlap]
        load[order] += 1
        out.append([rater_ids[int(i)] for i in order])
    return out


def _order(us: np.ndarray, p: dict[str, Any], rng: np.random.Generator) -> list[int]:
    """Best-first order of shown positions: Plackett-Luce via the Gumbel-max trick."""
    k = len(us)
    if p["temperature"] is None:  # random clicker
        return [int(i) for i in rng.permutation(k)]
    keys = p["sign"] * us / p["temperature"] + rng.gumbel(size=k)
    if p["p_first"] and rng.random() < p["p_first"]:
        keys[0] = np.inf
    return [int(i) for i in np.argsort(-keys, kind="stable")]


def _ranks(
    order: list[int], us: np.ndarray, p: dict[str, Any], tie_eps: float, rng: np.random.Generator
) -> list[int]:
    """Dense ranks per shown position; neighbours within ``tie_eps`` are tied with probability tie_prob."""
    ranks = [0] * len(order)
    rank = 1
    for n, pos in enumerate(order):
        if n > 0:
            prev = order[n - 1]
            tied = abs(us[pos] - us[prev]) < tie_eps and rng.random() < p["tie_prob"]
            rank += 0 if tied else 1
        ranks[pos] = rank
    return ranks


def _strength(gap: float, p: dict[str, Any], rng: np.random.Generator) -> str:
    if p["temperature"] is None:
        return STRENGTHS[int(rng.integers(len(STRENGTHS)))][1]
    seen = abs(gap + rng.normal(0, p["temperature"]))
    return next(label for cut, label in STRENGTHS if seen >= cut)


def _likert(
    rubric: list[dict[str, float]], p: dict[str, Any], rng: np.random.Generator
) -> dict[str, list[int]]:
    out = {}
    for name in RUBRICS:
        if p["likert_sd"] is None:
            vals = rng.integers(1, 6, size=len(rubric))
        else:
            true = np.array([1 + 4 * r[name] for r in rubric])
            if p["sign"] < 0:
                true = 6 - true
            vals = np.clip(np.rint(true + rng.normal(0, p["likert_sd"], size=len(rubric))), 1, 5)
        out[name] = [int(v) for v in vals]
    return out


def judge(
    responses: list[str],
    utilities: list[float],
    rubric: list[dict[str, float]],
    rater: str,
    params: dict[str, Any],
    tie_eps: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """One rater's judgment of one comparison: canonical record fields, responses in the shown order."""
    shown = [int(i) for i in rng.permutation(len(responses))]
    us = np.array([utilities[i] for i in shown])
    order = _order(us, params, rng)
    ranks = _ranks(order, us, params, tie_eps, rng)
    rec: dict[str, Any] = {
        "responses": [responses[i] for i in shown],
        "ranks": ranks,
        "rater": rater,
        "scores": _likert([rubric[i] for i in shown], params, rng),
    }
    if len(responses) == 2 and ranks[0] != ranks[1]:
        rec["strength"] = _strength(float(us[0] - us[1]), params, rng)
    median = params["time_median_s"] * (1 + 0.35 * (len(responses) - 2))
    rec["time_s"] = round(float(rng.lognormal(np.log(median), params["time_sigma"])), 1)
    return rec


def truth_ranks(utilities: list[float]) -> list[int]:
    """Ranks (1 = best) by true utility; utilities carry a jitter, so there are no ties in practice."""
    order = sorted(range(len(utilities)), key=lambda i: -utilities[i])
    ranks = [0] * len(utilities)
    for n, i in enumerate(order):
        ranks[i] = n + 1
    return ranks


def min_gap(utilities: list[float]) -> float:
    """The smallest gap between neighbours in the true order: how clear-cut a comparison is."""
    us = sorted(utilities, reverse=True)
    return min(a - b for a, b in zip(us, us[1:]))
