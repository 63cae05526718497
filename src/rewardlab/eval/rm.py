"""Reward-model evaluation: pairwise accuracy (overall, by strength, K, rater agreement, head), ties,
calibration, and the rater agreement ceiling to read the accuracy against.

Why the ceiling: raters disagree with each other on 20-40% of preference pairs (InstructGPT 72-77%,
HH-RLHF ~63% agreement), so an RM at 70% accuracy may already be as good as a held-out human. The ceiling
is computed from the same eval data, so the two numbers sit side by side.

Definitions (docs/reward-models.md documents them too):
- ``accuracy``: over the decided (non-tie) pairs of head 0, the fraction with r_better > r_worse (an exact
  reward tie counts 1/2). ``n_pairs`` counts those pairs. Same definition as TRL's RewardTrainer.
- ``tie_accuracy``: over human-tied pairs, the fraction the model calls a tie: |r_i - r_j| < tie_threshold
  (the threshold saved with the model, see recipes/rm.py). ``accuracy_with_ties`` scores every pair as a
  3-way outcome (better, worse, tie) with that same rule.
- ``ece``: expected calibration error (10 equal-width bins) of the model's P(better beats worse) against the
  human soft label p (1.0 for a hard label, the aggregated probability otherwise); every decided pair is
  counted in both orientations, so the metric does not depend on which side is listed first.
- ``agreement_ceiling``: leave-one-rater-out, scored like ``accuracy``. For comparisons judged by >= 2
  raters, each rater is held out in turn; on every pair that rater decided (ties excluded, as in
  ``accuracy``), the majority of the other raters predicts the held-out verdict (a split majority scores
  1/2, as an exact reward tie does). ``accuracy_on_ceiling_pairs`` scores the RM on exactly the same
  (held-out rater, pair) items by the same rule, so the two numbers compare like for like; null when no
  comparison overlaps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardlab.data.dataset import pairs as record_pairs
from rewardlab.data.schema import group_key, prompt_text

AGREEMENT_BUCKETS = ((0.0, 0.6, "<0.6"), (0.6, 0.8, "0.6-0.8"), (0.8, 1.01, ">=0.8"))
ECE_BINS = 10


def head_pairs(rec: dict[str, Any], head: str) -> list[tuple[int, int, bool, float]]:
    """Human pairs of one record for one head: (better, worse, tie, p).

    'overall' reads ``ranks`` (with aggregated soft labels when present); any other head reads
    ``scores[head]`` (higher is better, equal scores are ties, p = 1). A record without scores for the
    head has no pairs for it.
    """
    if head == "overall":
        return [(q["chosen_index"], q["rejected_index"], q["tie"], float(q["p"])) for q in record_pairs(rec)]
    values = (rec.get("scores") or {}).get(head)
    if not values:
        return []
    out = []
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            a, b = values[i], values[j]
            if a is None or b is None:
                continue
            if a > b:
                out.append((i, j, False, 1.0))
            elif b > a:
                out.append((j, i, False, 1.0))
            else:
                out.append((i, j, True, 0.5))
    return out


def unique_responses(records: Sequence[dict[str, Any]]) -> tuple[list[Any], list[str], list[list[int]]]:
    """Deduplicate (prompt, response) across records (raw multi-rater data repeats them): returns
    (prompts, responses, per-record index lists into them)."""
    seen: dict[tuple[str, str], int] = {}
    prompts: list[Any] = []
    responses: list[str] = []
    index: list[list[int]] = []
    for rec in records:
        key_p = prompt_text(rec["prompt"])
        row = []
        for resp in rec["responses"]:
            key = (key_p, resp)
            if key not in seen:
                seen[key] = len(responses)
                prompts.append(rec["prompt"])
                responses.append(resp)
            row.append(seen[key])
        index.append(row)
    return prompts, responses, index


def _win_prob(d: np.ndarray, tie_kind: str | None, tie_param: float) -> np.ndarray:
    """P(i beats j | not tied) from the reward gap: sigmoid(d) for Bradley-Terry and Davidson (whose
    decided-outcome log-odds are d), the renormalised win probability for Rao-Kupper."""
    if tie_kind == "rao-kupper":
        lt = np.log(tie_param)
        log_win = -np.logaddexp(0.0, -(d - lt))
        log_lose = -np.logaddexp(0.0, -(-d - lt))
        return 1.0 / (1.0 + np.exp(log_lose - log_win))
    return 1.0 / (1.0 + np.exp(-d))


def expected_calibration_error(pred: np.ndarray, label: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Sum over equal-width bins of (bin share) * |mean predicted - mean label|."""
    if len(pred) == 0:
        return None
    edges = np.minimum((pred * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = edges == b
        if mask.any():
            total += mask.mean() * abs(pred[mask].mean() - label[mask].mean())
    return float(total)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate_rewards(
    records: Sequence[dict[str, Any]],
    rewards: Sequence[np.ndarray],
    heads: Sequence[str],
    tie_kind: str | None = None,
    tie_param: float = 1.5,
    tie_threshold: float = 0.0,
) -> dict[str, Any]:
    """All RM metrics from per-record rewards (``rewards[n]`` is [K, n_heads] for record n)."""
    main = heads[0]
    correct: list[float] = []
    by_strength: dict[str, list[float]] = defaultdict(list)
    by_k: dict[str, list[float]] = defaultdict(list)
    by_agreement: dict[str, list[float]] = defaultdict(list)
    by_head: dict[str, list[float]] = defaultdict(list)
    tie_hits: list[float] = []
    three_way: list[float] = []
    pred_p: list[float] = []
    human_p: list[float] = []
    for rec, r in zip(records, rewards, strict=True):
        for h, head in enumerate(heads):
            for w, lo, tie, p in head_pairs(rec, head):
                d = float(r[w, h] - r[lo, h])
                called_tie = abs(d) < tie_threshold
                if tie:
                    if head == main:
                        tie_hits.append(float(called_tie))
                        three_way.append(float(called_tie))
                    continue
                hit = 1.0 if d > 0 else (0.5 if d == 0 else 0.0)
                by_head[head].append(hit)
                if head != main:
                    continue
                correct.append(hit)
                three_way.append(0.0 if called_tie else hit)
                by_strength[rec.get("strength") or "none"].append(hit)
                by_k[str(len(rec["responses"]))].append(hit)
                if rec.get("agreement") is not None:
                    by_agreement[_bucket(float(rec["agreement"]))].append(hit)
                pred_p.append(float(_win_prob(np.array(d), tie_kind, tie_param)))
                human_p.append(p)
    q = np.array(pred_p)
    lab = np.array(human_p)
    metrics: dict[str, Any] = {
        "accuracy": _mean(correct),
        "n_pairs": len(correct),
        "ece": expected_calibration_error(np.concatenate([q, 1 - q]), np.concatenate([lab, 1 - lab])),
        "accuracy_by_strength": {k: _mean(v) for k, v in sorted(by_strength.items())},
        "accuracy_by_k": {k: _mean(v) for k, v in sorted(by_k.items(), key=lambda kv: int(kv[0]))},
        "accuracy_by_agreement": {
            k: _mean(by_agreement[k]) for _, _, k in AGREEMENT_BUCKETS if by_agreement[k]
        },
        "accuracy_by_head": {h: _mean(by_head[h]) for h in heads},
        "n_pairs_by_head": {h: len(by_head[h]) for h in heads},
        "n_tie_pairs": len(tie_hits),
        "tie_accuracy": _mean(tie_hits),
        "accuracy_with_ties": _mean(three_way),
        "tie_threshold": tie_threshold,
        "n_records": len(records),
    }
    metrics.update(agreement_ceiling(records, rewards))
    return metrics


def _bucket(agreement: float) -> str:
    for lo, hi, name in AGREEMENT_BUCKETS:
        if lo <= agreement < hi:
            return name
    return AGREEMENT_BUCKETS[-1][2]


def _verdicts(rec: dict[str, Any]) -> dict[tuple[str, str], int]:
    """One rater's verdict per response pair, keyed by the texts (order-free): +1 first text better,
    -1 second better, 0 tie."""
    out = {}
    resp, ranks = rec["responses"], rec["ranks"]
    for i in range(len(resp)):
        for j in range(i + 1, len(resp)):
            a, b = (i, j) if resp[i] < resp[j] else (j, i)
            out[(resp[a], resp[b])] = int(np.sign(ranks[b] - ranks[a]))
    return out


def _others_say(votes: Sequence[int], held: int) -> int:
    """The other raters' majority on a pair: the sign of their summed votes (+1/-1, a tie counts 0)."""
    return int(np.sign(sum(votes[:held]) + sum(votes[held + 1 :])))


def _hit(sign: float) -> float:
    """Accuracy's rule: 1 when the prediction agrees with the verdict, 1/2 for no preference, else 0."""
    return 1.0 if sign > 0 else (0.5 if sign == 0 else 0.0)


def agreement_ceiling(
    records: Sequence[dict[str, Any]], rewards: Sequence[np.ndarray] | None = None
) -> dict[str, Any]:
    """Leave-one-rater-out: the other raters' majority and the RM, each predicting a held-out rater's
    decided pairs on comparisons judged by >= 2 raters (see the module docstring)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for n, rec in enumerate(records):
        if not rec.get("gold"):
            groups[group_key(rec["prompt"], rec["responses"])].append(n)
    agree: list[float] = []
    model_hits: list[float] = []
    n_groups = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        n_groups += 1
        verdicts = [_verdicts(records[n]) for n in members]
        for pair in verdicts[0]:
            votes = [v[pair] for v in verdicts]
            for held, verdict in enumerate(votes):
                if verdict == 0:  # the held-out rater called a tie: not a decided pair
                    continue
                agree.append(_hit(_others_say(votes, held) * verdict))
                if rewards is not None:
                    rec, r = records[members[held]], rewards[members[held]]
                    i, j = rec["responses"].index(pair[0]), rec["responses"].index(pair[1])
                    model_hits.append(_hit(float(r[i, 0] - r[j, 0]) * verdict))
    return {
        "agreement_ceiling": _mean(agree),
        "ceiling_groups": n_groups,
        "ceiling_judgments": len(agree),
        "accuracy_on_ceiling_pairs": _mean(model_hits),
    }


def score_records(
    scorer: Any, records: Sequence[dict[str, Any]], batch_size: int = 32, progress: bool = False
):
    """Rewards per record ([K, n_heads] each), scoring every distinct (prompt, response) once."""
    prompts, responses, index = unique_responses(records)
    flat = scorer.score(prompts, responses, batch_size=batch_size, progress=progress)
    return [flat[row] for row in index]


def evaluate_scorer(
    scorer: Any, records: Sequence[dict[str, Any]], batch_size: int = 32, progress: bool = False
) -> dict[str, Any]:
    """Score and evaluate records with a loaded ``RewardScorer`` (tie model read from its config)."""
    rewards = score_records(scorer, records, batch_size=batch_size, progress=progress)
    cfg = scorer.model.config
    tie = getattr(cfg, "rewardlab_tie_model", None) or {}
    return evaluate_rewards(
        records,
        rewards,
        scorer.heads,
        tie_kind=tie.get("kind"),
        tie_param=float(tie.get("param", 1.5)),
        tie_threshold=float(getattr(cfg, "rewardlab_tie_threshold", 0.0) or 0.0),
    )
