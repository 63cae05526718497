"""Reward-model losses: small pure functions on tensors, tested against hand-computed numbers.

Conventions. ``rewards`` is a flat tensor with one reward per encoded response (a batch of comparison
groups flattened to sum(K) sequences). A pair is (w, l): indices into ``rewards`` of the response ranked
better and the one ranked worse (for a tie the order does not matter). ``d = r_w - r_l``. ``p`` is the
probability that w beats l (1.0 for a hard label, an aggregated soft label otherwise); ``margin`` is the
Llama 2 margin from the strength label (0 when absent). ``group`` maps each pair (or each response for
Plackett-Luce) to its comparison group, so that every group counts once whatever its K (InstructGPT
normalises the C(K,2) pairs of a ranking into one batch element).

Tie models work on exp-scale strengths pi = exp(r) and are written in log space so they never overflow:
- Rao-Kupper (theta > 1): P(i>j) = sigmoid(d - log theta); P(tie) = (theta^2 - 1) sigmoid(d - log theta)
  sigmoid(-d - log theta).
- Davidson (nu > 0): with e = exp(d/2): P(i>j) = e / (e + 1/e + nu); P(tie) = nu / (e + 1/e + nu).
When ties are modelled, the non-tie pairs use the same model's win probability, so one model explains
wins and ties together (rather than Bradley-Terry for wins plus a separate tie rule).

The tie parameter may be a float (fixed) or a 0-d tensor (learned: ``tie_param_from_raw`` maps an
unconstrained raw value to theta = 1 + softplus(raw) or nu = softplus(raw), and ``tie_raw_init`` starts
it where P(tie | d = 0) equals the data's share of ties).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TIE_MODELS = ("rao-kupper", "davidson")


def bradley_terry_pair_loss(
    d: torch.Tensor, p: torch.Tensor | None = None, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pair -(p log sigmoid(d - m) + (1 - p) log sigmoid(-d - m)).

    With p = 1 this is the Llama 2 margin loss -log sigmoid(d - m); with m = 0 it is the soft-label
    cross-entropy. The margin pushes whichever side is preferred further apart, so it is applied to both
    terms symmetrically.
    """
    m = torch.zeros_like(d) if margin is None else margin
    win = F.logsigmoid(d - m)
    if p is None:
        return -win
    return -(p * win + (1 - p) * F.logsigmoid(-d - m))


def _value(param: float | torch.Tensor) -> float:
    return float(param.detach()) if isinstance(param, torch.Tensor) else float(param)


def rao_kupper_log_probs(
    d: torch.Tensor, theta: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log P(i>j), log P(j>i), log P(tie)) under Rao-Kupper with d = r_i - r_j, theta > 1."""
    if _value(theta) <= 1:
        raise ValueError(f"Rao-Kupper needs theta > 1, got {_value(theta)}")
    t = torch.as_tensor(theta, dtype=d.dtype, device=d.device)
    log_theta = torch.log(t)
    win = F.logsigmoid(d - log_theta)
    lose = F.logsigmoid(-d - log_theta)
    tie = torch.log(t - 1) + torch.log(t + 1) + win + lose  # log(theta^2 - 1), exact near theta = 1
    return win, lose, tie


def davidson_log_probs(
    d: torch.Tensor, nu: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log P(i>j), log P(j>i), log P(tie)) under Davidson with d = r_i - r_j, nu > 0."""
    if _value(nu) <= 0:
        raise ValueError(f"Davidson needs nu > 0 to model ties, got {_value(nu)}")
    half = d / 2
    log_nu = torch.log(torch.as_tensor(nu, dtype=d.dtype, device=d.device)).expand_as(d)
    norm = torch.logsumexp(torch.stack([half, -half, log_nu]), dim=0)
    return half - norm, -half - norm, log_nu - norm


def tie_param_from_raw(raw: torch.Tensor, kind: str) -> torch.Tensor:
    """The learned tie parameter from its unconstrained raw value: theta = 1 + softplus(raw) for
    Rao-Kupper (> 1), nu = softplus(raw) for Davidson (> 0)."""
    if kind == "rao-kupper":
        return 1 + F.softplus(raw)
    if kind == "davidson":
        return F.softplus(raw)
    raise ValueError(f"unknown tie model '{kind}' (one of {', '.join(TIE_MODELS)})")


def tie_param_for_share(share: float, kind: str) -> float:
    """The parameter at which a pair with equal rewards (d = 0) ties with probability ``share``: the
    starting point that matches the data. Rao-Kupper: P(tie | 0) = (theta - 1) / (theta + 1), so
    theta = (1 + s) / (1 - s); Davidson: P(tie | 0) = nu / (2 + nu), so nu = 2 s / (1 - s). The share is
    clipped to [0.01, 0.9] so the start is finite and the raw value well inside softplus' range."""
    s = min(max(share, 0.01), 0.9)
    if kind == "rao-kupper":
        return (1 + s) / (1 - s)
    if kind == "davidson":
        return 2 * s / (1 - s)
    raise ValueError(f"unknown tie model '{kind}' (one of {', '.join(TIE_MODELS)})")


def tie_raw_init(share: float, kind: str) -> float:
    """The raw value whose ``tie_param_from_raw`` is ``tie_param_for_share(share)`` (softplus inverted)."""
    param = tie_param_for_share(share, kind)
    x = param - 1 if kind == "rao-kupper" else param
    return math.log(math.expm1(x))


def tie_log_probs(
    d: torch.Tensor, kind: str, param: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dispatch to the configured tie model (``kind`` is 'rao-kupper' or 'davidson')."""
    if kind == "rao-kupper":
        return rao_kupper_log_probs(d, param)
    if kind == "davidson":
        return davidson_log_probs(d, param)
    raise ValueError(f"unknown tie model '{kind}' (one of {', '.join(TIE_MODELS)})")


def tie_model_pair_loss(
    d: torch.Tensor,
    tie: torch.Tensor,
    kind: str,
    param: float | torch.Tensor,
    p: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair negative log-likelihood under a tie model: -log P(tie) for ties, else the soft-label
    cross-entropy of the same model's win probabilities (the margin shifts d as in Bradley-Terry)."""
    m = torch.zeros_like(d) if margin is None else margin
    win, _, _ = tie_log_probs(d - m, kind, param)
    _, lose, _ = tie_log_probs(d + m, kind, param)
    _, _, log_tie = tie_log_probs(d, kind, param)
    pp = torch.ones_like(d) if p is None else p
    decided = -(pp * win + (1 - pp) * lose)
    return torch.where(tie, -log_tie, decided)


def group_mean(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` within each group -> (means [n_groups], counts [n_groups]); empty groups give 0."""
    sums = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add(0, group, values)
    counts = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add(
        0, group, torch.ones_like(values)
    )
    return sums / counts.clamp(min=1), counts


def weighted_group_average(
    per_item: torch.Tensor, group: torch.Tensor, n_groups: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Average per group first, then across groups weighted by the record weight.

    Groups with no items (e.g. a rubric head a record has no scores for) take no part, so they neither
    add loss nor dilute the others. Returns 0 (with a graph) when no group has items.
    """
    means, counts = group_mean(per_item, group, n_groups)
    w = torch.ones(n_groups, dtype=per_item.dtype, device=per_item.device) if weight is None else weight
    w = w * (counts > 0).to(per_item.dtype)
    total = w.sum()
    if total <= 0:
        return per_item.sum() * 0.0
    return (w * means).sum() / total


def pairwise_ranking_loss(
    rewards: torch.Tensor,
    winner: torch.Tensor,
    loser: torch.Tensor,
    group: torch.Tensor,
    n_groups: int,
    p: torch.Tensor | None = None,
    tie: torch.Tensor | None = None,
    margin: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    tie_model: str | None = None,
    tie_param: float | torch.Tensor = 1.5,
) -> torch.Tensor:
    """The K-wise pairwise loss: every implied pair of a group, normalised per group (InstructGPT).

    ``tie_model`` None means plain Bradley-Terry (then every pair must be decided: ties need a tie model).
    """
    d = rewards[winner] - rewards[loser]
    if tie_model is None:
        if tie is not None and bool(tie.any()):
            raise ValueError("tie pairs need a tie model (rao-kupper or davidson)")
        per_pair = bradley_terry_pair_loss(d, p, margin)
    else:
        t = torch.zeros_like(d, dtype=torch.bool) if tie is None else tie
        per_pair = tie_model_pair_loss(d, t, tie_model, tie_param, p, margin)
    return weighted_group_average(per_pair, group, n_groups, weight)


def plackett_luce_loss(
    rewards: torch.Tensor,
    ranks: torch.Tensor,
    group: torch.Tensor,
    n_groups: int,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Listwise negative log-likelihood of each group's ranking, averaged over its K-1 choice stages.

    P(order) = prod_i exp(r_(i)) / sum_{j ranked at or below i} exp(r_(j)). Ties use the Breslow rule:
    tied responses share one risk set (every response ranked equal or worse). The last position's term
    (a choice among itself) is skipped when it is alone, which gives K-1 terms for a strict ranking.
    """
    same_group = group[:, None] == group[None, :]
    at_or_below = ranks[None, :] >= ranks[:, None]  # [i, j]: j is in i's risk set
    risk = same_group & at_or_below
    masked = rewards[None, :].expand(len(rewards), -1).masked_fill(~risk, float("-inf"))
    log_choice = rewards - torch.logsumexp(masked, dim=1)
    is_stage = risk.sum(dim=1) > 1  # a stage is a real choice only if the risk set holds more than one
    values = torch.where(is_stage, -log_choice, torch.zeros_like(log_choice))
    sums = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device).index_add(0, group, values)
    counts = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device).index_add(
        0, group, is_stage.to(rewards.dtype)
    )
    means = sums / counts.clamp(min=1)
    w = torch.ones(n_groups, dtype=rewards.dtype, device=rewards.device) if weight is None else weight
    w = w * (counts > 0).to(rewards.dtype)
    total = w.sum()
    if total <= 0:
        return rewards.sum() * 0.0
    return (w * means).sum() / total


def centering_loss(
    rewards: torch.Tensor,
    winner: torch.Tensor,
    loser: torch.Tensor,
    group: torch.Tensor,
    n_groups: int,
    coef: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """coef * mean over pairs of (r_w + r_l)^2: the auxiliary loss of Eisenstein et al. (2023) and TRL's
    ``center_rewards_coefficient``, which pins each pair's midpoint, not only the batch mean, near zero.

    Pairs are averaged per group and the groups weighted like the ranking loss (``weighted_group_average``),
    so a K-wise group counts once and a zero-weight group not at all; for K = 2 with unit weights this is
    exactly TRL's ``mean((r_chosen + r_rejected) ** 2)``.
    """
    if coef == 0 or len(winner) == 0:
        return rewards.sum() * 0.0
    per_pair = (rewards[winner] + rewards[loser]) ** 2
    return coef * weighted_group_average(per_pair, group, n_groups, weight)


def predicted_tie(d: torch.Tensor, kind: str, param: float | torch.Tensor) -> torch.Tensor:
    """True where the tie model's most likely outcome for the reward gap d is a tie."""
    win, lose, tie = tie_log_probs(d, kind, param)
    return tie > torch.maximum(win, lose)


def tie_threshold(kind: str, param: float) -> float:
    """The |d| below which the tie model predicts a tie (closed form; used to score ties as ties).

    Rao-Kupper: P(tie) > P(win) <=> (theta^2 - 1) sigmoid(-d - log theta) > 1, solved for d.
    Davidson: nu > exp(d/2) <=> d < 2 log nu (no tie region when nu <= 1).
    """
    if kind == "rao-kupper":
        c = param * param - 1
        if c <= 1:
            return 0.0
        # sigmoid(-d - lt) > 1/c  <=>  -d - lt > -log(c - 1)
        return max(0.0, math.log(c - 1) - math.log(param))
    if kind == "davidson":
        return max(0.0, 2 * math.log(param)) if param > 0 else 0.0
    raise ValueError(f"unknown tie model '{kind}'")


def win_probability(d: torch.Tensor, kind: str | None, param: float) -> torch.Tensor:
    """P(i beats j | i and j not tied) for calibration: sigmoid(d) for Bradley-Terry; for tie models the
    win probability renormalised over the two decided outcomes."""
    if kind is None:
        return torch.sigmoid(d)
    win, lose, _ = tie_log_probs(d, kind, param)
    return torch.sigmoid(win - lose)
