"""Merge repeated judgments of one comparison into one training record with soft pairwise labels.

Methods (``--method``):
- ``ds3`` (default): our three-outcome Dawid-Skene (``rewardlab.raters.ds3``): per-rater 3x3 confusion over
  the displayed sides (first better, tie, second better), gold clamped, each rater pulled toward the pool;
  p = P(a above) + P(tie) / 2 from its tempered posterior.
- ``majority``: per implied pair, p = (votes for the order + half the ties) / votes.
- ``noisy-bt``: the NoisyBradleyTerry likelihood of crowd-kit, fitted by our own code (``noisy_bt``;
  crowd-kit 1.4.2's ``fit`` has a wrong rater gradient, see that module): careful raters count, random
  clickers and position-biased raters are explained by their skill and bias and hardly move the scores;
  p = sigmoid(s_a - s_b). K-wise groups share item scores, so their soft labels are transitive.
- ``dawid-skene``: crowd-kit's DawidSkene with each implied pair as a task and {a above, tie, b above} as
  the classes; p = P(a above) + P(tie) / 2.
- ``none``: every kept judgment is written as it is; only the exclusion applies.

Ties: ds3 models a tie as its own class. crowd-kit's pairwise models drop them, so for the others a tie counts as half a win for each side (in NoisyBT two
rows of weight 0.5, in majority half a vote each way). The consensus ranks put two responses level when
|p - 0.5| <= ``tie_margin``; K-wise groups are ordered by NoisyBT score (or by expected wins, the sum of
p, for the other methods) and adjacent responses within the margin share a rank.

An aggregated record keeps the prompt, the responses in the order the first rater saw them, the first
judgment's meta, and the per-rubric mean scores; it adds ``soft_pairs`` ([[i, j, p]], P(response i beats
j) for every i < j), ``weight`` (mean over pairs of max(p, 1 - p): 0.5 when the votes give no direction,
1 when they are certain), ``raters`` (the raters used) and ``agreement`` (mean share of each used
judgment's pairs that match the consensus). ``gold`` is false: gold references are not votes; they go to
``<out>/gold.jsonl`` and their ranks to ``meta.aggregation.gold_ranks`` of the matching record. Judgments
of excluded raters go to ``<out>/excluded.jsonl`` with the rater and the reason.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.special import expit

from rewardlab.raters import ds3, noisy_bt
from rewardlab.raters.table import Judgments, pair_index

METHODS = ("ds3", "majority", "noisy-bt", "dawid-skene", "none")


@dataclass
class Consensus:
    """Per unit and per group results of one aggregation (canonical response order)."""

    unit_p: np.ndarray  # P(a above b); nan where no kept vote
    group_ranks: list[list[int] | None]
    group_weight: np.ndarray
    group_agreement: np.ndarray
    group_used: np.ndarray  # kept judgments per group
    j_agreement: np.ndarray  # per judgment: share of its pairs matching the consensus (nan if not kept)
    fit: noisy_bt.NoisyBTFit | None = None
    unit_post: np.ndarray | None = None  # ds3: [units, 3] the soft label's P(a above b, tie, b above a)
    ds3_fit: ds3.DS3Fit | None = None


def unit_layout(j: Judgments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, a, b) for every unit, in unit order."""
    group = np.empty(j.n_units, dtype=np.int64)
    a = np.empty(j.n_units, dtype=np.int64)
    b = np.empty(j.n_units, dtype=np.int64)
    for k in np.unique(j.group_k):
        pairs = np.array(list(combinations(range(int(k)), 2)), dtype=np.int64)
        groups = np.flatnonzero(j.group_k == k)
        units = (j.unit_offset[groups][:, None] + np.arange(len(pairs))[None, :]).ravel()
        group[units] = np.repeat(groups, len(pairs))
        a[units] = np.tile(pairs[:, 0], len(groups))
        b[units] = np.tile(pairs[:, 1], len(groups))
    return group, a, b


def _majority_p(j: Judgments, keep: np.ndarray) -> np.ndarray:
    unit = j.p_unit[keep]
    out = j.p_outcome[keep]
    n = np.bincount(unit, minlength=j.n_units).astype(float)
    wins = np.bincount(unit, weights=(out == 1) + 0.5 * (out == 0), minlength=j.n_units)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, wins / np.maximum(n, 1), np.nan)


def _dawid_skene_p(j: Judgments, keep: np.ndarray) -> np.ndarray:
    """p = P(a above) + P(tie) / 2 from crowd-kit's DawidSkene over the kept pair rows."""
    from rewardlab.raters.quality import pair_dawid_skene

    p = np.full(j.n_units, np.nan)
    if not keep.any():
        return p
    model = pair_dawid_skene(j, keep)
    if model is None:  # a single label everywhere: nothing to learn, every vote says the same
        label = int(j.p_outcome[keep][0])
        p[np.unique(j.p_unit[keep])] = {1: 1.0, 0: 0.5, -1: 0.0}[label]
        return p
    probas = model.probas_
    up = probas[1].to_numpy() if 1 in probas.columns else 0.0
    tie = probas[0].to_numpy() if 0 in probas.columns else 0.0
    p[probas.index.to_numpy()] = up + 0.5 * tie
    return p


def _noisy_bt_p(
    j: Judgments, keep: np.ndarray, cfg: Any, units: tuple
) -> tuple[np.ndarray, noisy_bt.NoisyBTFit]:
    from rewardlab.raters.quality import fit_reliability

    fit = fit_reliability(j, cfg, keep)
    group, a, b = units
    base = j.item_offset[group]
    p = expit(fit.scores[base + a] - fit.scores[base + b])
    voted = np.bincount(j.p_unit[keep], minlength=j.n_units) > 0
    p[~voted] = np.nan
    return p, fit


def _ranks_from_order(order: list[int], p_adjacent: list[float], margin: float, k: int) -> list[int]:
    """Dense ranks for items listed best first; an adjacent pair within ``margin`` of 0.5 shares a rank."""
    ranks = [0] * k
    rank = 1
    for pos, item in enumerate(order):
        if pos > 0 and abs(p_adjacent[pos - 1] - 0.5) > margin:
            rank += 1
        ranks[item] = rank
    return ranks


def consensus(
    j: Judgments, method: str, keep_judgment: np.ndarray, cfg: Any, rater_weight: np.ndarray | None = None
) -> Consensus:
    """Aggregate the kept judgments (``keep_judgment``: bool per judgment) with ``method``.

    ``rater_weight`` (ds3 only): per rater vote weight in [0, 1], how flagged raters are down-weighted."""
    from rewardlab.raters.quality import one_blas_thread

    with one_blas_thread():
        if method == "ds3":
            return _ds3_consensus(j, keep_judgment, cfg, rater_weight)
        return _consensus(j, method, keep_judgment, cfg)


def ds3_options(cfg: Any) -> Any:
    """The config's ds3 section (defaults when the config object predates it)."""
    from rewardlab.config import DS3Options

    return getattr(cfg, "ds3", None) or DS3Options()


def _ds3_consensus(j: Judgments, keep_judgment: np.ndarray, cfg: Any, rater_weight: np.ndarray | None):
    """ds3 (raters/ds3.py): per unit P(a above, tie, b above); a consensus tie only where P(tie) is the
    largest outcome and at least ``tie_min``; K-wise groups take the order that best fits the posteriors."""
    opts = ds3_options(cfg)
    fit = ds3.fit(
        j,
        keep_judgment[j.p_judgment],
        rater_weight,
        prior_strength=opts.prior_strength,
        position_strength=opts.position_strength,
        temperature=opts.temperature,
        use_gold=opts.use_gold,
        max_iter=opts.max_iter,
        fit_strength=getattr(opts, "fit_prior_strength", False),
    )
    # The soft label: the posterior of the true order, or (soft_label: vote) the predictive distribution of
    # a new rater's vote, what "the chance that a rater prefers A" means (ds3.DS3Fit.vote_label).
    soft = fit.vote_label() if getattr(opts, "soft_label", "posterior") == "vote" else fit.posterior
    p = soft[:, 0] + 0.5 * soft[:, 1]
    post = fit.raw  # calls (tie, order) from the untempered posterior: tempering only softens p
    # A tie needs both the model (P(tie) the largest and >= tie_min) and the votes (at least
    # tie_votes_min of the pair's weighted votes are ties): "A, B, tie" is best explained by a true tie in
    # Dawid-Skene terms (careful raters split on near-ties), but it is disagreement, and it trains as an
    # uncertain pair (p near 0.5), not as a tie.
    keep = keep_judgment[j.p_judgment]
    w = np.ones(len(j.p_unit)) if rater_weight is None else np.asarray(rater_weight, dtype=float)[j.p_rater]
    w = np.where(keep, w, 0.0)
    votes = np.bincount(j.p_unit, weights=w, minlength=j.n_units)
    tie_votes = np.bincount(j.p_unit, weights=w * (j.p_outcome == 0), minlength=j.n_units)
    with np.errstate(invalid="ignore", divide="ignore"):
        tie_share = np.where(votes > 0, tie_votes / np.maximum(votes, 1e-12), 0.0)
    is_tie = (
        (post[:, 1] >= opts.tie_min)
        & (post[:, 1] >= post[:, 0])
        & (post[:, 1] >= post[:, 2])
        & (tie_share >= opts.tie_votes_min - 1e-9)
    )
    group_used = np.bincount(j.j_group[keep_judgment], minlength=j.n_groups)
    ranks: list[list[int] | None] = [None] * j.n_groups
    unit_out = np.zeros(j.n_units, dtype=np.int8)
    two = np.flatnonzero((j.group_k == 2) & (group_used > 0))
    u2 = j.unit_offset[two]
    tie2 = is_tie[u2]
    up2 = post[u2, 0] >= post[u2, 2]
    unit_out[u2] = np.where(tie2, 0, np.where(up2, 1, -1))
    for g, t, u in zip(two.tolist(), tie2.tolist(), up2.tolist()):
        ranks[g] = [1, 1] if t else ([1, 2] if u else [2, 1])
    kwise = np.flatnonzero((j.group_k > 2) & (group_used > 0))
    for k in np.unique(j.group_k[kwise]).tolist():
        groups = kwise[j.group_k[kwise] == k]
        n_pairs = k * (k - 1) // 2
        units = j.unit_offset[groups][:, None] + np.arange(n_pairs)[None, :]
        orders = ds3.best_orders(post[units], k)
        for g, order, base_u in zip(groups.tolist(), orders.tolist(), j.unit_offset[groups].tolist()):
            r = [0] * k
            rank = 1
            for pos, item in enumerate(order):
                if pos > 0:
                    a, b = sorted((order[pos - 1], item))
                    rank += 0 if is_tie[base_u + pair_index(a, b, k)] else 1
                r[item] = rank
            ranks[g] = r
            for n, (a, b) in enumerate(combinations(range(k), 2)):
                unit_out[base_u + n] = 1 if r[a] < r[b] else (-1 if r[a] > r[b] else 0)
    j_agree, g_agree = _agreement(j, keep, keep_judgment, unit_out, group_used)
    g_weight = _confidence(j, p)
    return Consensus(p, ranks, g_weight, g_agree, group_used, j_agree, None, soft, fit)


def _agreement(j: Judgments, keep, keep_judgment, unit_out, group_used):
    """Per kept judgment: share of its pairs matching the consensus; per group: the mean over judgments."""
    match = (j.p_outcome == unit_out[j.p_unit]).astype(float)
    n_j = len(j.j_row)
    rows = np.bincount(j.p_judgment[keep], minlength=n_j)
    hits = np.bincount(j.p_judgment[keep], weights=match[keep], minlength=n_j)
    with np.errstate(invalid="ignore", divide="ignore"):
        j_agree = np.where(rows > 0, hits / np.maximum(rows, 1), np.nan)
    kept_j = keep_judgment & (rows > 0)
    g_sum = np.bincount(j.j_group[kept_j], weights=j_agree[kept_j], minlength=j.n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        g_agree = np.where(group_used > 0, g_sum / np.maximum(group_used, 1), np.nan)
    return j_agree, g_agree


def _confidence(j: Judgments, p: np.ndarray) -> np.ndarray:
    """Per group: mean over its pairs of max(p, 1 - p) (0.5: no direction, 1: certain)."""
    conf = np.where(np.isnan(p), 0.0, np.maximum(p, 1.0 - p))
    unit_group = unit_layout(j)[0]
    n_units_g = np.bincount(unit_group, minlength=j.n_groups)
    return np.bincount(unit_group, weights=conf, minlength=j.n_groups) / np.maximum(n_units_g, 1)


def _consensus(j: Judgments, method: str, keep_judgment: np.ndarray, cfg: Any) -> Consensus:
    keep = keep_judgment[j.p_judgment]
    units = unit_layout(j)
    fit = None
    if method == "majority":
        p = _majority_p(j, keep)
    elif method == "dawid-skene":
        p = _dawid_skene_p(j, keep)
    elif method == "noisy-bt":
        p, fit = _noisy_bt_p(j, keep, cfg, units)
    else:
        raise ValueError(f"unknown aggregation method {method!r} (one of {', '.join(METHODS[:3])})")
    margin = cfg.tie_margin
    group_used = np.bincount(j.j_group[keep_judgment], minlength=j.n_groups)
    ranks: list[list[int] | None] = [None] * j.n_groups
    unit_out = np.zeros(j.n_units, dtype=np.int8)  # consensus outcome per unit, +1/0/-1
    # Pairs: vectorised.
    two = np.flatnonzero((j.group_k == 2) & (group_used > 0))
    u2 = j.unit_offset[two]
    p2 = p[u2]
    tie2 = np.abs(p2 - 0.5) <= margin
    up2 = (p2 > 0.5) & ~tie2
    unit_out[u2] = np.where(tie2, 0, np.where(up2, 1, -1))
    for g, is_tie, is_up in zip(two.tolist(), tie2.tolist(), up2.tolist()):
        ranks[g] = [1, 1] if is_tie else ([1, 2] if is_up else [2, 1])
    # K-wise: order by NoisyBT score or by expected wins, then tie adjacent items within the margin.
    for g in np.flatnonzero((j.group_k > 2) & (group_used > 0)).tolist():
        k = int(j.group_k[g])
        base_u = int(j.unit_offset[g])
        pmat = np.full((k, k), 0.5)
        for n, (a, b) in enumerate(combinations(range(k), 2)):
            pmat[a, b] = p[base_u + n]
            pmat[b, a] = 1.0 - p[base_u + n]
        # NoisyBT ranks by item score (transitive); the others by expected wins, the row sums of p.
        score = pmat.sum(axis=1) if fit is None else fit.scores[j.item_offset[g] : j.item_offset[g] + k]
        order = sorted(range(k), key=lambda i: (-score[i], i))
        adjacent = [pmat[order[n], order[n + 1]] for n in range(k - 1)]
        ranks[g] = _ranks_from_order(order, adjacent, margin, k)
        for n, (a, b) in enumerate(combinations(range(k), 2)):
            ra, rb = ranks[g][a], ranks[g][b]
            unit_out[base_u + n] = 1 if ra < rb else (-1 if ra > rb else 0)
    j_agree, g_agree = _agreement(j, keep, keep_judgment, unit_out, group_used)
    return Consensus(p, ranks, _confidence(j, p), g_agree, group_used, j_agree, fit)


def unit_calls(j: Judgments, cons: Consensus) -> np.ndarray:
    """Per unit: the consensus outcome its group's ranks imply, +1 a above b, 0 tie (or unjudged), -1."""
    out = np.zeros(j.n_units, dtype=np.int8)
    for g, ranks in enumerate(cons.group_ranks):
        if ranks is None:
            continue
        base = int(j.unit_offset[g])
        for n, (a, b) in enumerate(combinations(range(len(ranks)), 2)):
            out[base + n] = 1 if ranks[a] < ranks[b] else (-1 if ranks[a] > ranks[b] else 0)
    return out


# ---------------------------------------------------------------- exclusion


def kept_flagged_raters(report: dict[str, Any] | None, cfg: Any, method: str | None) -> dict[str, str]:
    """Flagged raters that ``exclude: flagged`` keeps under ds3 (rater id -> why): those whose ds3 confusion
    is worth at least ``ds3.keep_flagged_min_bits`` per judgment.

    Why: a flag says "does not vote like the consensus", not "carries no information". ds3 learns each
    rater's confusion, so an adversarial rater's votes are read inverted and a position-biased rater's
    "the second one" counts as strong evidence; dropping them threw that away (adversarial campaign, tuning
    seeds: ds3 without them 0.3 points below crowd-kit's DawidSkene, which keeps them; level with them).
    Random clickers carry ~0 bits and are still dropped. Other methods read a vote at face value, so they
    keep excluding every flag.
    """
    min_bits = ds3_options(cfg).keep_flagged_min_bits
    if method != "ds3" or cfg.exclude != "flagged" or report is None or min_bits is None:
        return {}
    out = {}
    for r in report["raters"]:
        bits = r.get("ds3_information")  # absent from reports written before it existed: drop as before
        if r["flagged"] and r["rater"] is not None and bits is not None and bits >= min_bits:
            how = (
                "inverted (answers the opposite order), read inverted"
                if r.get("ds3_inverted")
                else "informative"
            )
            out[r["rater"]] = f"flagged but kept: {how}, {bits:.2f} bits per judgment under ds3"
    return out


def excluded_raters(
    j: Judgments, report: dict[str, Any] | None, cfg: Any, method: str | None = None
) -> dict[str, str]:
    """Rater id -> reason, by the config's policy: ``flagged`` (the report's flags plus ``exclude_list``),
    ``listed`` (``exclude_list`` only) or ``none``. With ``method`` ds3, ``flagged`` keeps the flagged
    raters ``kept_flagged_raters`` names (``exclude_list`` still drops them)."""
    if cfg.exclude == "none":
        return {}
    out: dict[str, str] = {}
    kept = kept_flagged_raters(report, cfg, method)
    if cfg.exclude == "flagged" and report is not None:
        for r in report["raters"]:
            if r["flagged"] and r["rater"] is not None and r["rater"] not in kept:
                out[r["rater"]] = "flagged: " + "; ".join(r["reasons"])
    present = {name for name in j.raters if name is not None}
    for name in cfg.exclude_list:
        if name in present and name not in out:
            out[name] = "listed in exclude_list"
    return out


# ---------------------------------------------------------------- records out


def _mean_scores(items: list[tuple[tuple[int, ...], dict[str, list]]], k: int) -> dict[str, list] | None:
    """Mean per rubric and canonical response over judgments (``order`` maps display -> canonical)."""
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for order, scores in items:
        for rubric, values in scores.items():
            s = sums.setdefault(rubric, [0.0] * k)
            c = counts.setdefault(rubric, [0] * k)
            for pos, v in enumerate(values):
                if v is not None:
                    s[order[pos]] += v
                    c[order[pos]] += 1
    if not sums:
        return None
    return {
        rubric: [round(s / c, 4) if c else None for s, c in zip(sums[rubric], counts[rubric])]
        for rubric in sums
    }


def aggregated_records(
    j: Judgments,
    cons: Consensus,
    keep_judgment: np.ndarray,
    source_rows: dict[int, dict],
    strengths: list[str | None] | None,
    gold_by_group: dict[int, dict],
    method: str,
):
    """Yield one normalized record per group with kept judgments (see the module docstring)."""
    from rewardlab.data.schema import content_hash

    scores_by_group: dict[int, list] = {}
    for jdx, scores in j.j_scores:
        if keep_judgment[jdx]:
            scores_by_group.setdefault(int(j.j_group[jdx]), []).append((j.j_order[jdx], scores))
    raters_by_group: dict[int, set] = {}
    strength_by_group: dict[int, Counter] = {}
    for jdx in np.flatnonzero(keep_judgment).tolist():
        g = int(j.j_group[jdx])
        raters_by_group.setdefault(g, set()).add(j.raters[j.j_rater[jdx]])
        if strengths is not None and strengths[jdx] is not None and cons.j_agreement[jdx] == 1.0:
            strength_by_group.setdefault(g, Counter())[strengths[jdx]] += 1
    first_j = np.searchsorted(j.j_row, j.group_first)
    for g in np.flatnonzero(cons.group_used > 0).tolist():
        k = int(j.group_k[g])
        canon = j.group_responses[g]
        order = j.j_order[int(first_j[g])]  # display position -> canonical index
        src = source_rows[int(j.group_first[g])]
        canon_ranks = cons.group_ranks[g]
        base_u = int(j.unit_offset[g])
        soft, tie_pairs = [], []
        for pi, pj in combinations(range(k), 2):
            ci, cj = order[pi], order[pj]
            a, b = min(ci, cj), max(ci, cj)
            u = base_u + pair_index(a, b, k)
            p = float(cons.unit_p[u])
            soft.append([pi, pj, round(p if ci < cj else 1.0 - p, 4)])
            if cons.unit_post is not None:
                tie_pairs.append([pi, pj, round(float(cons.unit_post[u, 1]), 4)])
        mean_scores = _mean_scores(scores_by_group.get(g, []), k)
        meta = dict(src.get("meta") or {})
        agg_meta: dict[str, Any] = {
            "method": method,
            "judgments": int(cons.group_used[g]),
            "confidence": round(float(cons.group_weight[g]), 4),
        }
        if tie_pairs:
            agg_meta["tie_pairs"] = tie_pairs
        if g in gold_by_group:
            gold = gold_by_group[g]
            by_text = dict(zip(gold["responses"], gold["ranks"]))
            agg_meta["gold_ranks"] = [by_text[canon[order[pos]]] for pos in range(k)]
        meta["aggregation"] = agg_meta
        strength = None
        if g in strength_by_group:
            strength = strength_by_group[g].most_common(1)[0][0]
        rec = {
            "id": "agg-" + j.group_keys[g],
            "prompt": src["prompt"],
            "responses": [canon[order[pos]] for pos in range(k)],
            "ranks": [canon_ranks[order[pos]] for pos in range(k)],
            "rater": None,
            "strength": strength,
            "scores": None
            if mean_scores is None
            else {rubric: [vals[order[pos]] for pos in range(k)] for rubric, vals in mean_scores.items()},
            "gold": False,
            "time_s": None,
            "meta": meta,
            "response_ids": src.get("response_ids"),
            "soft_pairs": soft,
            "weight": 1.0,  # one discount, not two: the soft label carries the uncertainty (docs/raters.md)
            "raters": sorted(raters_by_group.get(g, set()), key=lambda r: (r is None, str(r))),
            "agreement": round(float(cons.group_agreement[g]), 4),
            "source": "rewardlab raters aggregate",
        }
        rec["raters"] = [r if r is not None else "" for r in rec["raters"]]
        rec["hash"] = content_hash(rec)
        yield rec


def aggregate_dataset(
    path: str | Path,
    out: str | Path,
    cfg: Any,
    method: str | None = None,
    log: Any = None,
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``raters aggregate``: report, exclude, merge, and write the output dataset plus its side files.

    ``report``: a ``quality.build_report`` result for this dataset and config, to skip computing it again.
    With ``cfg.pseudonymize`` the merge reads a pseudonymized copy of ``path`` (raters/pseudonym.py), so the
    output dataset, its side files and the summary hold pseudonyms only.
    """
    from rewardlab.errors import UserError
    from rewardlab.raters.pseudonym import raters_input

    if Path(out).resolve() == Path(path).resolve():
        raise UserError(f"--out {out}: must differ from the input dataset")
    with raters_input(path, cfg, outputs=[out]) as (source, cfg):
        return _aggregate_dataset(source, out, cfg, method, log, report, shown=str(path))


def _aggregate_dataset(
    path: Path,
    out: str | Path,
    cfg: Any,
    method: str | None,
    log: Any,
    report: dict[str, Any] | None,
    shown: str,
) -> dict[str, Any]:
    """``aggregate_dataset`` on the dataset to read (``shown``: the path the user gave, for the outputs)."""
    from rewardlab.data.dataset import DatasetWriter, load_dataset
    from rewardlab.data.schema import to_json
    from rewardlab.errors import UserError
    from rewardlab.raters import quality
    from rewardlab.raters.pseudonym import is_pseudonymized
    from rewardlab.raters.table import from_dataset

    method = method or cfg.method
    if method not in METHODS:
        raise UserError(f"--method: unknown method '{method}' (one of {', '.join(METHODS)})")
    log = log or (lambda message: None)
    j = from_dataset(path)
    log(f"read {j.n_records} records, {len(j.j_row)} judgments of {j.n_groups} comparisons")
    if cfg.exclude == "downweight" and method != "ds3":
        raise UserError(
            f"exclude: downweight needs method ds3 (got {method}); use exclude: flagged to drop flagged raters"
        )
    if report is None and cfg.exclude in ("flagged", "downweight"):
        report = quality.build_report(j, cfg)
    excluded = excluded_raters(j, report, cfg, method)
    kept_flagged = {k: v for k, v in kept_flagged_raters(report, cfg, method).items() if k not in excluded}
    if kept_flagged:
        log(f"keeping {len(kept_flagged)} flagged rater(s) that ds3 reads by their confusion")
    log(f"excluding {len(excluded)} rater(s) ({cfg.exclude} policy); merging with {method}")
    excluded_idx = [i for i, name in enumerate(j.raters) if name in excluded]
    keep_judgment = ~np.isin(j.j_rater, excluded_idx)
    rater_weight = None
    downweighted: list[str] = []
    if cfg.exclude == "downweight" and report is not None:
        downweighted = sorted(r["rater"] for r in report["raters"] if r["flagged"] and r["rater"] is not None)
        rater_weight = np.array([cfg.flagged_weight if name in downweighted else 1.0 for name in j.raters])
        log(f"down-weighting {len(downweighted)} flagged rater(s) to {cfg.flagged_weight}")
    ds = load_dataset(path)
    out_dir = Path(out)
    extra = {"aggregated_from": shown, "method": method, "excluded_raters": sorted(excluded)}
    if getattr(cfg, "pseudonymize", False) or is_pseudonymized(path):
        extra["pseudonymized"] = True
    writer = DatasetWriter(out_dir, extra_meta=extra)
    written = 0
    if method == "none":
        for rec in decoded_records(ds, j.j_row[keep_judgment].tolist()):
            writer.add(rec)
            written += 1
        groups = int(np.count_nonzero(np.bincount(j.j_group[keep_judgment], minlength=j.n_groups)))
        dropped = j.n_groups - groups
    else:
        cons = consensus(j, method, keep_judgment, cfg, rater_weight)
        firsts = sorted({int(r) for r in j.group_first[cons.group_used > 0]})
        source_rows = _rows(ds, firsts, ["prompt", "chat", "meta", "response_ids"])
        strengths = None
        col = ds.data.table.column("strength")
        if col.null_count < len(col):
            all_strengths = col.to_pylist()
            strengths = [all_strengths[r] for r in j.j_row.tolist()]
        gold_rows = _rows(ds, j.gold_rows, ["responses", "ranks"])
        gold_by_group: dict[int, dict] = {}
        for row, g in zip(j.gold_rows, j.gold_groups.tolist()):
            gold_by_group.setdefault(g, gold_rows[row])
        for rec in aggregated_records(j, cons, keep_judgment, source_rows, strengths, gold_by_group, method):
            writer.add(rec)
            written += 1
        groups = written
        dropped = int(np.count_nonzero((cons.group_used == 0) & (j.group_first >= 0)))
    writer.close()
    n_excl = _write_side_files(ds, j, keep_judgment, excluded, out_dir, to_json)
    if report is not None:
        report["dataset"] = shown
        (out_dir / "rater_report.json").write_text(
            json.dumps(report, indent=1, default=str), encoding="utf-8"
        )
    return {
        "groups": groups,
        "judgments_used": int(keep_judgment.sum()),
        "judgments_excluded": n_excl,
        "excluded_raters": sorted(excluded),
        "method": method,
        "out": str(out_dir),
        "records_written": written,
        "gold_records": len(j.gold_rows),
        "groups_dropped": dropped,
        "excluded_file": str(out_dir / "excluded.jsonl"),
        "gold_file": str(out_dir / "gold.jsonl"),
        "flagged": [] if report is None else report["flagged"],
        "downweighted_raters": downweighted,
        "kept_flagged_raters": kept_flagged,
    }


def _rows(ds, rows: list[int], columns: list[str]) -> dict[int, dict]:
    """Selected rows of a dataset, decoded enough for output (chat prompts, meta JSON)."""
    if not rows:
        return {}
    table = ds.data.table
    names = [c for c in columns if c in table.column_names]
    taken = table.select(names).take(pa.array(rows, type=pa.int64())).to_pylist()
    out = {}
    for row, values in zip(rows, taken):
        if "prompt" in values and values.get("chat"):
            values["prompt"] = json.loads(values["prompt"])
        if values.get("meta") is not None:
            values["meta"] = json.loads(values["meta"])
        out[row] = values
    return out


def decoded_records(ds, rows: list[int], chunk: int = 20_000):
    """Full normalized records at ``rows`` (in that order), read from Arrow in chunks: iterating a
    ``datasets.Dataset`` row by row costs ~90 us a row, this ~10."""
    from rewardlab.data.dataset import decode

    table = ds.data.table
    for start in range(0, len(rows), chunk):
        for row in table.take(pa.array(rows[start : start + chunk], type=pa.int64())).to_pylist():
            yield decode(row)


def _write_side_files(ds, j: Judgments, keep_judgment: np.ndarray, excluded: dict[str, str], out_dir: Path,
                      to_json) -> int:  # fmt: skip
    """``excluded.jsonl`` (each excluded judgment with rater and reason) and ``gold.jsonl`` (references)."""
    excl_rows = j.j_row[~keep_judgment].tolist()
    with open(out_dir / "excluded.jsonl", "w", encoding="utf-8") as fh:
        for rec in decoded_records(ds, excl_rows):
            line = {
                "rater": rec["rater"],
                "reason": excluded.get(rec["rater"], "excluded"),
                "record": to_json(rec),
            }
            fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    with open(out_dir / "gold.jsonl", "w", encoding="utf-8") as fh:
        for rec in decoded_records(ds, j.gold_rows):
            fh.write(json.dumps(to_json(rec), ensure_ascii=False, default=str) + "\n")
    return len(excl_rows)
