"""Per-rater quality metrics, overall agreement, and flagging against the thresholds of the raters config.

What a rating platform checks before it pays or drops a rater, computed on the implied pairs of every
judgment (``table.Judgments``):
- agreement: share of a rater's pairs that match the leave-one-out consensus of the *other* judgments of
  the same comparison (majority of their outcomes; a pair whose other votes split evenly is skipped);
- gold accuracy on comparisons that have a ``gold: true`` reference, with a Wilson 95% interval;
- position bias: share of the decided pairs involving the first-listed response that it won (for pairs,
  how often the rater picks the first one; for K-wise, how often the top of the list beats the others);
- tie rate, median seconds per judgment and a too-fast flag relative to the pool's median;
- reliability: the rater's accuracy in the ds3 model (three outcomes, position-aware confusion, gold
  clamped: ``ds3``), its ds3 position bias, its skill in NoisyBradleyTerry (``noisy_bt``), and for rubric
  scores a Dawid-Skene accuracy (crowd-kit ``DawidSkene``).
Overall: Krippendorff's alpha (ordinal, on implied-pair outcomes: a above b < tie < b above a) and pairwise
percent agreement, to read against the 0.63-0.77 that published preference campaigns report.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from rewardlab.raters import ds3, noisy_bt
from rewardlab.raters.table import NO_GOLD, Judgments

PUBLISHED_AGREEMENT = {
    "low": 0.63,
    "high": 0.77,
    "source": "HH-RLHF ~0.63; InstructGPT 0.726 (training) / 0.773 (held-out labelers); summarize-from-feedback ~0.72-0.77",
}
ALPHA_METHOD = "krippendorff-ordinal-implied-pairs"
DS_MAX_ROWS = 300_000  # Dawid-Skene on rubric scores beyond this fits on a fixed random sample of items
# The report's NoisyBT diagnostics fit on a fixed sample of comparisons past this many pair rows.
NBT_REPORT_MAX_ROWS = 100_000
NBT_REPORT_MAX_ITER = 150


@contextlib.contextmanager
def quiet_crowdkit() -> Iterator[None]:
    """crowd-kit 1.4.2 works on pandas 3.1 but calls keywords pandas 4 will drop (``inplace=``, ``copy=``);
    hide those deprecation warnings so they do not drown the CLI's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def one_blas_thread():
    """Vector work here is memory-bound; OpenBLAS threads spinning on a busy machine slowed it 25x."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when there is no evidence."""
    if n <= 0:
        return 0.0, 1.0
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------- overall agreement


def unit_counts(j: Judgments, keep: np.ndarray | None = None) -> np.ndarray:
    """[units, 3] counts of outcomes per implied pair, columns ordered: a above b, tie, b above a."""
    mask = slice(None) if keep is None else keep
    unit = j.p_unit[mask]
    col = 1 - j.p_outcome[mask].astype(np.int64)  # +1 -> 0, 0 -> 1, -1 -> 2
    flat = np.bincount(unit * 3 + col, minlength=3 * j.n_units)
    return flat.reshape(j.n_units, 3)


def krippendorff_alpha(counts: np.ndarray, metric: str = "ordinal") -> float | None:
    """Krippendorff's alpha from per-unit value counts (columns in the values' order).

    Coincidence-matrix form: units with fewer than two values are not pairable and drop out. ``ordinal``
    uses the rank-based distance, ``nominal`` 0/1 (the same as crowd-kit's ``alpha_krippendorff``).
    """
    counts = np.asarray(counts, dtype=np.float64)
    m = counts.sum(axis=1)
    counts = counts[m >= 2]
    m = m[m >= 2]
    if len(m) == 0:
        return None
    n_values = counts.shape[1]
    coinc = np.einsum("uc,uk->ck", counts / (m - 1)[:, None], counts)
    coinc -= np.diag((counts / (m - 1)[:, None]).sum(axis=0))
    n_c = coinc.sum(axis=1)
    n = n_c.sum()
    delta = np.zeros((n_values, n_values))
    for c in range(n_values):
        for k in range(n_values):
            if c == k:
                continue
            if metric == "nominal":
                delta[c, k] = 1.0
            else:
                lo, hi = min(c, k), max(c, k)
                delta[c, k] = (n_c[lo : hi + 1].sum() - (n_c[c] + n_c[k]) / 2.0) ** 2
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return 1.0
    return float(1.0 - (n - 1) * (coinc * delta).sum() / expected)


def percent_agreement(counts: np.ndarray) -> tuple[float | None, int]:
    """Share of pairs of judgments on the same implied pair that give the same outcome, and their number."""
    counts = np.asarray(counts, dtype=np.int64)
    m = counts.sum(axis=1)
    pairs = (m * (m - 1) // 2).sum()
    same = (counts * (counts - 1) // 2).sum()
    return (float(same / pairs) if pairs else None), int(pairs)


# ---------------------------------------------------------------- per rater


def loo_consensus(j: Judgments, rater_weight: np.ndarray | None = None) -> np.ndarray:
    """Per pair row: the (weighted) majority outcome of the other judgments of that implied pair.

    +1/-1/0 as ``p_outcome``; 2 when there is no other judgment or the others split evenly between the
    two orders (no consensus to agree with). The consensus is a tie when tie votes outweigh each order.
    ``rater_weight`` (per rater, >= 0) weighs each vote; None counts every vote once.
    """
    w = np.ones(len(j.p_outcome)) if rater_weight is None else rater_weight[j.p_rater]
    col = 1 - j.p_outcome.astype(np.int64)  # +1 -> 0 (a above), 0 -> 1 (tie), -1 -> 2 (b above)
    flat = np.bincount(j.p_unit * 3 + col, weights=w, minlength=3 * j.n_units).reshape(j.n_units, 3)
    counts = flat[j.p_unit]
    counts[np.arange(len(col)), col] -= w
    return _majority(counts)


def _majority(counts: np.ndarray) -> np.ndarray:
    """[rows, 3] weighted votes (a above, tie, b above) -> +1/-1/0, or 2 where the two orders split evenly."""
    up, tie, down = counts[:, 0], counts[:, 1], counts[:, 2]
    eps = 1e-9
    out = np.full(len(counts), 2, dtype=np.int8)
    out[(up > down + eps) & (up >= tie)] = 1
    out[(down > up + eps) & (down >= tie)] = -1
    out[(tie > up + eps) & (tie > down + eps)] = 0
    return out


def agreement_weights(agreement: np.ndarray) -> np.ndarray:
    """Vote weight from a rater's agreement: its log-odds above chance (0 at or below 0.5, capped at 0.95).

    A rater with no measured agreement (no other judgment to compare with) gets the pool's mean weight.
    """
    a = np.clip(np.asarray(agreement, dtype=float), 0.5, 0.95)
    w = np.log(a / (1 - a))
    known = ~np.isnan(w)
    return np.where(known, w, w[known].mean() if known.any() else 1.0)


def rater_agreement(j: Judgments, reweight: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per rater: (agreement with the leave-one-out consensus, pairs it was measured on).

    With ``reweight``, a second pass weighs the other votes by their raters' first-pass agreement, so a
    random clicker's votes barely move the consensus that everyone else is measured against.
    """
    agree, n, _ = agreement_consensus(j, reweight)
    return agree, n


def agreement_consensus(j: Judgments, reweight: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rater_agreement`` plus the per pair row consensus it was measured against (``loo_consensus``
    codes): what ``raters report --evidence`` shows next to each verdict."""
    cons, agree, n, weights = _first_pass(j)
    if reweight and weights is not None:
        cons = loo_consensus(j, weights)
        agree, n = _per_rater_mean(j.p_outcome == cons, j.p_rater, cons != 2, len(j.raters))
    return agree, n, cons


def _first_pass(j: Judgments) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The unweighted pass: (consensus, agreement, n, vote weights for the second pass, or None when there is
    no consensus to weigh by or every weight is 0)."""
    cons = loo_consensus(j)
    agree, n = _per_rater_mean(j.p_outcome == cons, j.p_rater, cons != 2, len(j.raters))
    weights = agreement_weights(agree)
    return cons, agree, n, weights if (cons != 2).any() and weights.max() > 0 else None


def consensus_gold(j: Judgments) -> tuple[int, int]:
    """(right, n): the reweighted majority's accuracy on gold comparisons, counted once per implied pair.

    Why: ``low_agreement`` measures raters against the consensus, which is evidence against a rater only if
    the consensus is right. When adversaries or a shared misreading outweigh the careful raters, the
    consensus flips and the careful raters are the ones who disagree. Gold is the one outside reference, so
    the consensus is checked on it: the implied pairs with a gold answer and at least two votes (where
    agreement is measured), each decided by all its votes weighted as in ``agreement_consensus``'s second
    pass; pairs whose votes split evenly between the two orders are left out.
    """
    if not (j.unit_gold != NO_GOLD).any():
        return 0, 0
    weights = _first_pass(j)[3]
    w = np.ones(len(j.p_outcome)) if weights is None else weights[j.p_rater]
    col = 1 - j.p_outcome.astype(np.int64)
    flat = np.bincount(j.p_unit * 3 + col, weights=w, minlength=3 * j.n_units).reshape(j.n_units, 3)
    votes = np.bincount(j.p_unit, minlength=j.n_units)
    out = _majority(flat)
    sel = (j.unit_gold != NO_GOLD) & (votes >= 2) & (out != 2)
    return int((out[sel] == j.unit_gold[sel]).sum()), int(sel.sum())


def _per_rater_mean(values: np.ndarray, rater: np.ndarray, mask: np.ndarray, n_raters: int):
    n = np.bincount(rater[mask], minlength=n_raters)
    s = np.bincount(rater[mask], weights=values[mask].astype(np.float64), minlength=n_raters)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan), n


def _median_times(j: Judgments) -> np.ndarray:
    out = np.full(len(j.raters), np.nan)
    known = ~np.isnan(j.j_time)
    if not known.any():
        return out
    order = np.argsort(j.j_rater[known], kind="stable")
    raters = j.j_rater[known][order]
    times = j.j_time[known][order]
    bounds = np.flatnonzero(np.diff(raters)) + 1
    for chunk_r, chunk_t in zip(np.split(raters, bounds), np.split(times, bounds)):
        out[chunk_r[0]] = float(np.median(chunk_t))
    return out


def _gold_accuracy(j: Judgments) -> tuple[np.ndarray, np.ndarray]:
    """Per rater: (gold items, summed per-item accuracy). Items score the share of their gold pairs right."""
    n_r = len(j.raters)
    gold = j.unit_gold[j.p_unit]
    has = gold != NO_GOLD
    if not has.any():
        return np.zeros(n_r), np.zeros(n_r)
    n_j = len(j.j_row)
    right = np.bincount(
        j.p_judgment[has], weights=(j.p_outcome[has] == gold[has]).astype(float), minlength=n_j
    )
    total = np.bincount(j.p_judgment[has], minlength=n_j)
    judged = total > 0
    item_acc = np.where(judged, right / np.maximum(total, 1), 0.0)
    items = np.bincount(j.j_rater, weights=judged.astype(float), minlength=n_r)
    hits = np.bincount(j.j_rater, weights=item_acc, minlength=n_r)
    return items, hits


def rubric_reliability(j: Judgments, seed: int = 0) -> dict[int, float]:
    """Dawid-Skene accuracy per rater on categorical rubric scores: sum_l prior_l * P(says l | true l).

    Tasks are (comparison, response, rubric); scores are the category labels. Beyond ``DS_MAX_ROWS`` label
    rows, the fit uses a fixed random sample of tasks (crowd-kit's EM is a pandas loop over all rows).
    """
    if not j.j_scores:
        return {}
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    tasks: dict[tuple, int] = {}
    rows_t, rows_w, rows_l = [], [], []
    for jdx, scores in j.j_scores:
        g = int(j.j_group[jdx])
        order = j.j_order[jdx]
        for rubric, values in scores.items():
            for pos, value in enumerate(values):
                if value is None:
                    continue
                key = (g, order[pos], rubric)
                t = tasks.setdefault(key, len(tasks))
                rows_t.append(t)
                rows_w.append(int(j.j_rater[jdx]))
                rows_l.append(int(round(value)))
    if not rows_t:
        return {}
    df = pd.DataFrame({"task": rows_t, "worker": rows_w, "label": rows_l})
    if len(df) > DS_MAX_ROWS:
        rng = np.random.default_rng(seed)
        keep_tasks = rng.random(len(tasks)) < DS_MAX_ROWS / len(df)
        df = df[keep_tasks[df["task"].to_numpy()]]
    if df["label"].nunique() < 2:
        return {}
    with quiet_crowdkit():
        model = DawidSkene(n_iter=50).fit(df)
    errors, priors = model.errors_, model.priors_
    out: dict[int, float] = {}
    for worker in df["worker"].unique():
        acc = 0.0
        for label, prior in priors.items():
            key = (worker, label)
            if key in errors.index and label in errors.columns:
                acc += float(prior) * float(errors.loc[key, label])
        out[int(worker)] = acc
    return out


def pair_dawid_skene(j: Judgments, keep: np.ndarray | None = None):
    """crowd-kit DawidSkene with each implied pair as a task and {a above, tie, b above} as classes.

    Returns the fitted model (``probas_`` per unit, ``errors_`` per rater) or None when there is nothing
    to fit. Ties are a class of their own here, so nothing is dropped.
    """
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    mask = np.ones(len(j.p_unit), dtype=bool) if keep is None else keep
    if not mask.any():
        return None
    df = pd.DataFrame(
        {"task": j.p_unit[mask], "worker": j.p_rater[mask], "label": j.p_outcome[mask].astype(int)}
    )
    if df["label"].nunique() < 2:
        return None
    with quiet_crowdkit():
        return DawidSkene(n_iter=100).fit(df)


def ds_accuracy(model: Any, n_raters: int) -> np.ndarray:
    """Per rater: sum_l prior_l * P(says l | true l) from a fitted DawidSkene (nan when unseen)."""
    out = np.full(n_raters, np.nan)
    if model is None:
        return out
    errors, priors = model.errors_, model.priors_
    workers = errors.index.get_level_values(0).to_numpy()
    observed = errors.index.get_level_values(1).to_numpy()
    for label, prior in priors.items():
        if label not in errors.columns:
            continue
        rows = observed == label
        vals = errors[label].to_numpy()[rows]
        w = workers[rows].astype(np.int64)
        out[w] = np.nan_to_num(out[w]) + float(prior) * vals
    return out


def fit_reliability(
    j: Judgments,
    cfg: Any = None,
    keep: np.ndarray | None = None,
    sample_rows: int | None = None,
    max_iter: int | None = None,
) -> noisy_bt.NoisyBTFit:
    """NoisyBT item scores and rater skills/biases on the (kept) pair rows of a table.

    ``sample_rows``: past this many pair rows, fit on a fixed random sample of whole comparisons (the
    per-rater skill and bias need a few hundred judgments each, not a million); item scores outside the
    sample stay 0. The aggregation never samples: it needs every item's score.
    """
    mask = np.ones(len(j.p_unit), dtype=bool) if keep is None else keep.copy()
    if sample_rows is not None and mask.sum() > sample_rows:
        chosen = np.random.default_rng(0).random(j.n_groups) < sample_rows / mask.sum()
        mask &= chosen[j.p_group]
    left, right, rater, y, c = noisy_bt.rows_from_judgments(j, mask)
    opts = getattr(cfg, "noisy_bt", None)
    kwargs = (
        {}
        if opts is None
        else {"ridge": opts.ridge, "rater_ridge": opts.rater_ridge, "max_iter": opts.max_iter}
    )
    agree, _ = rater_agreement(j)
    if max_iter is not None:
        kwargs["max_iter"] = min(max_iter, kwargs.get("max_iter", max_iter))
    return noisy_bt.fit(left, right, rater, y, c, j.n_items, len(j.raters), init_skill=agree, **kwargs)


def ds3_strength(cfg: Any) -> float:
    """The ds3 prior strength of a raters config (the default when the config has no ds3 section)."""
    opts = getattr(cfg, "ds3", None)
    return ds3.PRIOR_STRENGTH if opts is None else float(opts.prior_strength)


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def rater_metrics(
    j: Judgments, cfg: Any = None, nbt: noisy_bt.NoisyBTFit | None = None
) -> list[dict[str, Any]]:
    """One dict per rater (before flagging): the docs/design.md fields plus a few more."""
    n_r = len(j.raters)
    prater = j.p_rater
    agree, agree_n = rater_agreement(j)
    decided = (j.p_first >= 0) & j.p_lead
    pos_bias, decided_n = _per_rater_mean(j.p_first == 1, prater, decided, n_r)
    tie_rate, pairs_n = _per_rater_mean(j.p_outcome == 0, prater, np.ones(len(prater), dtype=bool), n_r)
    items = np.bincount(j.j_rater, minlength=n_r)
    gold_items, gold_hits = _gold_accuracy(j)
    medians = _median_times(j)
    timed = ~np.isnan(j.j_time)
    pool_median = float(np.median(j.j_time[timed])) if timed.any() else None
    ratio = getattr(getattr(cfg, "thresholds", None), "min_median_time_ratio", 0.25)
    timed_n = np.bincount(j.j_rater[timed], minlength=n_r)
    fast_n = (
        np.bincount(j.j_rater[timed], weights=j.j_time[timed] < ratio * pool_median, minlength=n_r)
        if pool_median
        else np.zeros(n_r)
    )
    nbt = (
        nbt
        if nbt is not None
        else fit_reliability(j, cfg, sample_rows=NBT_REPORT_MAX_ROWS, max_iter=NBT_REPORT_MAX_ITER)
    )
    # ds3 (raters/ds3.py): three-outcome Dawid-Skene with position-aware confusion and gold clamped; a
    # numpy EM, ~20x faster than crowd-kit's DawidSkene at 1M judgments.
    opts = getattr(cfg, "ds3", None)
    fit3 = ds3.fit(
        j,
        prior_strength=ds3_strength(cfg),
        position_strength=20.0 if opts is None else opts.position_strength,
        fit_strength=bool(getattr(opts, "fit_prior_strength", False)),
    )
    judged_r = np.bincount(j.p_rater, minlength=n_r) > 0
    reliability = np.where(judged_r, fit3.accuracy(), np.nan)
    ds3_bias = np.where(judged_r, fit3.position_bias(), np.nan)
    ds3_info = np.where(judged_r, fit3.information(), np.nan)
    ds3_inverted = fit3.inverted() & judged_r
    rubric = rubric_reliability(j)
    out = []
    for r, name in enumerate(j.raters):
        gi = float(gold_items[r])
        lo, hi = wilson(float(gold_hits[r]), gi)
        out.append(
            {
                "rater": name,
                "items": int(items[r]),
                "pairs": int(pairs_n[r]),
                "agreement": _r(agree[r]),
                "agreement_pairs": int(agree_n[r]),
                "gold_accuracy": _r(gold_hits[r] / gi) if gi > 0 else None,
                "gold_items": int(gi),
                "gold_ci": [_r(lo), _r(hi)] if gi > 0 else None,
                "position_bias": _r(pos_bias[r]),
                "position_pairs": int(decided_n[r]),
                "tie_rate": _r(tie_rate[r]),
                "median_time_s": _r(medians[r], 2),
                "timed_items": int(timed_n[r]),
                "fast_share": _r(fast_n[r] / timed_n[r]) if timed_n[r] else None,
                "too_fast": False,
                "reliability": _r(reliability[r]),
                "ds3_position_bias": _r(ds3_bias[r]),
                "ds3_information": _r(ds3_info[r]),
                "ds3_inverted": bool(ds3_inverted[r]),
                "nbt_skill": _r(nbt.skills[r]) if pairs_n[r] > 0 else None,
                "nbt_first_listed": _r(nbt.biases[r]) if pairs_n[r] > 0 else None,
                "rubric_reliability": _r(rubric.get(r)),
                "flagged": False,
                "reasons": [],
            }
        )
    return out


def z_of(confidence: float) -> float:
    """Two-sided normal quantile of a central interval at ``confidence`` (0.95 -> 1.96)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def _decided(phat: float, n: float, threshold: float, below: bool, z: float) -> bool:
    lo, hi = wilson(phat * n, n, z)
    return hi < threshold if below else lo > threshold


def more_needed(phat: float, n: float, threshold: float, below: bool, z: float, min_n: int) -> int | None:
    """How many more observations, at the same observed rate, would put the Wilson interval wholly on the
    wrong side of ``threshold`` (and reach ``min_n``): what a project lead needs before deciding. None when
    the rate sits on the threshold (no sample size would decide) or more than 100,000 would be needed."""
    if (below and phat >= threshold) or (not below and phat <= threshold):
        return None
    n0 = max(int(math.ceil(n)), 0)
    if _decided(phat, max(n0, 1), threshold, below, z):
        return max(min_n - n0, 0)
    lo, hi = max(n0, 1), max(2 * n0, 2)
    while not _decided(phat, hi, threshold, below, z):
        lo, hi = hi, hi * 2
        if hi > 100_000:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _decided(phat, mid, threshold, below, z) else (mid, hi)
    return max(hi, min_n) - n0


def check(
    code: str,
    estimate: float,
    n: float,
    threshold: float,
    below: bool,
    confidence: float,
    min_n: int,
    unit: str,
    what: str,
) -> dict[str, Any] | None:
    """One evidence rule on a proportion: flag only when the Wilson interval at ``confidence`` lies wholly on
    the wrong side of ``threshold`` (below it when ``below``) and ``n >= min_n``. Returns the evidence dict
    (``decision`` ``flag`` or ``insufficient_evidence``) when the point estimate is on the wrong side, None
    when it is not (nothing to report)."""
    wrong = estimate < threshold if below else estimate > threshold
    if not wrong or n <= 0:
        return None
    z = z_of(confidence)
    lo, hi = wilson(estimate * n, n, z)
    decided = (hi < threshold if below else lo > threshold) and n >= min_n
    side = "upper" if below else "lower"
    rule = (
        f"{what} {'<' if below else '>'} {threshold}: flagged when the {side} end of its Wilson "
        f"{confidence:.0%} interval is {'below' if below else 'above'} {threshold} and n >= {min_n} {unit}"
    )
    return {
        "code": code,
        "decision": "flag" if decided else "insufficient_evidence",
        "estimate": _r(estimate),
        "n": int(round(n)) if float(n).is_integer() else _r(n, 2),
        "unit": unit,
        "interval": [_r(lo), _r(hi)],
        "confidence": confidence,
        "threshold": threshold,
        "direction": "below" if below else "above",
        "rule": rule,
        "more_needed": 0 if decided else more_needed(estimate, n, threshold, below, z, min_n),
    }


def _reason(e: dict[str, Any]) -> str:
    op = "<" if e["direction"] == "below" else ">"
    lo, hi = e["interval"]
    return (
        f"{e['code']}: {e['estimate']:.2f} {op} {e['threshold']} on {e['n']} {e['unit']} "
        f"({e['confidence']:.0%} interval {lo:.2f}-{hi:.2f})"
    )


def flag(
    raters: list[dict[str, Any]],
    thresholds: Any,
    pool_median: float | None,
    pool_first: float | None,
    consensus: dict[str, Any] | None = None,
) -> list[str]:
    """Fill ``flagged``/``reasons``/``evidence``/``insufficient_evidence``/``too_fast``; return notes.

    Every rule is a proportion with a Wilson interval at ``thresholds.confidence``; a rater is flagged on a
    rule only when the interval lies wholly on the wrong side of the threshold and the rule's n reaches its
    minimum (``min_items`` pairs or judgments; ``min_gold_items`` gold items). A point estimate on the wrong
    side without that evidence is listed under ``insufficient_evidence`` with how many more observations, at
    the same rate, would decide. Why: one agreement out of two overlapping pairs is 0.50, under a 0.6
    threshold, and is no evidence at all; a flag takes a person off a project.
    - agreement with the leave-one-out consensus, on the rater's pairs that have one;
    - gold accuracy on gold items; ds3 reliability (``min_reliability``) on the rater's pairs;
    - position bias on the decided pairs that involve the first-listed response, only when the pool as a
      whole picks the first-listed response at most ``max_position_bias`` of the time (otherwise the order
      was not shuffled and the first answer really is better more often);
    - too fast: the share of the rater's timed judgments faster than ``min_median_time_ratio`` x the pool's
      median, against 1/2 (a median below the line, with evidence; a sign test).
    Judgments without a rater id are never flagged.
    ``consensus`` (``consensus_check``): when gold does not show the consensus to be right, ``low_agreement``
    is suspended: listed under ``insufficient_evidence`` with ``suspended`` saying why, never a flag.
    """
    t = thresholds
    conf = float(getattr(t, "confidence", 0.95))
    notes = []
    check_position = pool_first is None or pool_first <= t.max_position_bias
    if not check_position:
        notes.append(
            f"position bias not flagged: the pool picks the first-listed response {pool_first:.2f} of the time, "
            "so the display order was probably not shuffled"
        )
    min_rel = getattr(t, "min_reliability", None)
    for r in raters:
        found = []
        if r["gold_accuracy"] is not None:
            found.append(
                check(
                    "low_gold_accuracy",
                    r["gold_accuracy"],
                    r["gold_items"],
                    t.min_gold_accuracy,
                    True,
                    conf,
                    t.min_gold_items,
                    "gold items",
                    "gold accuracy",
                )  # fmt: skip
            )
        if r["agreement"] is not None:
            found.append(
                check(
                    "low_agreement",
                    r["agreement"],
                    r["agreement_pairs"],
                    t.min_agreement,
                    True,
                    conf,
                    t.min_items,
                    "overlapping pairs",
                    "agreement with the leave-one-out consensus",
                )  # fmt: skip
            )
        if check_position and r["position_bias"] is not None:
            found.append(
                check(
                    "position_bias",
                    r["position_bias"],
                    r["position_pairs"],
                    t.max_position_bias,
                    False,
                    conf,
                    t.min_items,
                    "decided pairs with the first-listed response",
                    "share won by the first-listed response",
                )  # fmt: skip
            )
        if min_rel is not None and r["reliability"] is not None:
            found.append(
                check(
                    "low_reliability",
                    r["reliability"],
                    r["pairs"],
                    min_rel,
                    True,
                    conf,
                    t.min_items,
                    "pairs",
                    "ds3 accuracy",
                )  # fmt: skip
            )
        if pool_median and r["median_time_s"] is not None:
            r["too_fast"] = bool(r["median_time_s"] < t.min_median_time_ratio * pool_median)
            fast = check("too_fast", r.get("fast_share") or 0.0, r.get("timed_items") or 0, 0.5, False, conf,
                         t.min_items, "timed judgments",
                         f"share of judgments under {t.min_median_time_ratio} x the pool median "
                         f"{pool_median:.1f} s")  # fmt: skip
            if fast is not None:
                fast["median_time_s"] = r["median_time_s"]
            found.append(fast)
        found = [e for e in found if e is not None]
        if consensus is not None and consensus["suspended"]:
            for e in found:
                if e["code"] == "low_agreement":
                    e.update(
                        decision="insufficient_evidence", more_needed=None, suspended=consensus["reason"]
                    )
        flags = [e for e in found if e["decision"] == "flag"]
        reasons = [_reason(e) for e in flags]
        if r["rater"] is None:
            if reasons:
                notes.append(
                    "judgments without a rater id look poor (" + "; ".join(reasons) + ") but are kept"
                )
            reasons, flags = [], []
        r["reasons"] = reasons
        r["flagged"] = bool(reasons)
        r["evidence"] = flags
        r["insufficient_evidence"] = [e for e in found if e["decision"] == "insufficient_evidence"]
    return notes


def consensus_check(j: Judgments, thresholds: Any) -> dict[str, Any]:
    """The campaign-level guard on ``low_agreement``: the consensus's accuracy on gold (``consensus_gold``),
    reported with its Wilson interval at ``thresholds.confidence``. Agreement flags are suspended when that
    accuracy is not above ``min_consensus_gold_accuracy`` (0.5: no better than a coin between the two
    orders), i.e. when the outside reference says the consensus is more often wrong than right.

    Why the point estimate and not the interval: gold is 2-5% of a sparse campaign, so only a handful of gold
    comparisons have two votes (3-15 on the simulated ones); requiring the interval's lower end above 0.5
    suspended agreement flags on a campaign whose consensus was right on 5 of 6 gold items and lost 5 of the
    6 bad raters found there. Suspending errs on the side of the rater (no flag is raised, the rule says
    why), so it need not wait for an interval. With no gold there is nothing to check with: the consensus
    stays the reference and a note says it is unchecked."""
    level = float(getattr(thresholds, "min_consensus_gold_accuracy", 0.5))
    conf = float(getattr(thresholds, "confidence", 0.95))
    right, n = consensus_gold(j)
    lo, hi = wilson(right, n, z_of(conf)) if n else (None, None)
    acc = right / n if n else None
    suspended = acc is not None and not acc > level
    reason = None
    if suspended:
        reason = f"consensus contradicted by gold: accuracy {acc:.2f} [{lo:.2f}, {hi:.2f}] on {n} gold items"
    return {
        "accuracy": _r(acc),
        "n": n,
        "unit": "gold comparisons with two or more votes",
        "interval": [_r(lo), _r(hi)] if n else None,
        "confidence": conf,
        "level": level,
        "rule": (
            f"low_agreement flags are suspended when the consensus's accuracy on gold comparisons with two or "
            f"more votes is not above {level} (no gold: unchecked)"
        ),
        "suspended": suspended,
        "reason": reason,
    }


def build_report(j: Judgments, cfg: Any, nbt: noisy_bt.NoisyBTFit | None = None) -> dict[str, Any]:
    """The ``raters report --json`` object (docs/design.md fields first, then extras)."""
    with one_blas_thread():
        return _build_report(j, cfg, nbt)


def _build_report(j: Judgments, cfg: Any, nbt: noisy_bt.NoisyBTFit | None) -> dict[str, Any]:
    raters = rater_metrics(j, cfg, nbt)
    times = j.j_time[~np.isnan(j.j_time)]
    pool_median = float(np.median(times)) if len(times) else None
    decided = (j.p_first >= 0) & j.p_lead
    pool_first = float((j.p_first[decided] == 1).mean()) if decided.any() else None
    cons_check = consensus_check(j, cfg.thresholds)
    notes = flag(raters, cfg.thresholds, pool_median, pool_first, cons_check)
    if cons_check["suspended"]:
        notes.append(f"low_agreement flags suspended: {cons_check['reason']}")
        print(f"warning: low_agreement flags suspended: {cons_check['reason']}", file=sys.stderr)
    elif not cons_check["n"]:
        notes.append(
            "no gold comparison with two or more votes: the consensus behind low_agreement is unchecked"
        )
    raters.sort(key=lambda r: (r["rater"] is None, str(r["rater"])))
    counts = unit_counts(j)
    agreement, n_comparisons = percent_agreement(counts)
    flagged = [r["rater"] for r in raters if r["flagged"]]
    flagged_idx = [i for i, name in enumerate(j.raters) if name in set(flagged)]
    keep = ~np.isin(j.p_rater, flagged_idx)
    agreement_kept, _ = percent_agreement(unit_counts(j, keep))
    if agreement is None:
        notes.append("no comparison was judged twice: agreement and alpha need overlapping judgments")
    return {
        "raters": raters,
        "alpha": _r(krippendorff_alpha(counts, "ordinal")),
        "agreement": _r(agreement),
        "alpha_method": ALPHA_METHOD,
        "alpha_nominal": _r(krippendorff_alpha(counts, "nominal")),
        "agreement_comparisons": n_comparisons,
        "agreement_without_flagged": _r(agreement_kept),
        "published_agreement": PUBLISHED_AGREEMENT,
        "records": j.n_records,
        "judgments": len(j.j_row),
        "groups": j.n_groups,
        "gold_records": len(j.gold_rows),
        "gold_conflicts": j.gold_conflicts,
        "flagged": flagged,
        "pool_median_time_s": _r(pool_median, 2),
        "pool_position_bias": _r(pool_first),
        "reliability_method": "ds3 accuracy: three-outcome Dawid-Skene, position-aware, gold clamped",
        "rubric_method": "dawid-skene accuracy" if j.j_scores else None,
        "thresholds": cfg.thresholds.model_dump(mode="json"),
        "consensus_check": cons_check,
        "notes": notes,
    }
