"""The PPO-for-RLHF terms as small pure tensor functions (no models, no configs).

Why a separate module: each term is where PPO implementations quietly go wrong (score on a pad token,
KL sign, whitening that shifts the mean of rewards, value clipping), so each lives alone and is tested
against hand-computed numbers in tests/unit/test_ppo_math.py. The recipe (recipes/ppo.py) only wires them.

Conventions (following "The N+ Implementation Details of RLHF with PPO", Huang et al. 2024):
- Tensors are ``[batch, response_len]`` over the *response* tokens only; ``mask`` is 1 on real response
  tokens (up to and including the first EOS) and 0 on the padding after it.
- ``logp`` is log pi(token_t | prompt, tokens_<t); values ``V_t`` are predicted from the same state.
"""

from __future__ import annotations

import math

import torch

INVALID_LOGPROB = 1.0  # marks padded positions; harmless because every use is masked


# ---------------------------------------------------------------- masks and means


def response_mask(response_ids: torch.Tensor, stop_token_ids: list[int] | int) -> tuple[torch.Tensor, ...]:
    """Mask of the real response tokens, whether each answer stopped, and the index of its last real token.

    A response is real up to and including its first stop token (EOS); anything after is padding, even
    when the pad id equals the EOS id. ``last_index`` is the EOS position when there is one, else the last
    generated position: this is where the sequence score goes (never on a pad after EOS, TRL #3750).
    """
    stops = [stop_token_ids] if isinstance(stop_token_ids, int) else list(stop_token_ids)
    is_stop = torch.zeros_like(response_ids, dtype=torch.bool)
    for s in stops:
        is_stop |= response_ids == s
    length = response_ids.shape[1]
    positions = torch.arange(length, device=response_ids.device).expand_as(response_ids)
    first_stop = torch.where(is_stop, positions, torch.full_like(positions, length)).min(dim=1).values
    has_stop = first_stop < length
    last_index = torch.where(has_stop, first_stop, torch.full_like(first_stop, length - 1))
    mask = (positions <= last_index.unsqueeze(1)).to(torch.float32)
    return mask, has_stop, last_index


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
    """Mean over the positions where mask is 1 (all positions when mask is None)."""
    if mask is None:
        return x.mean() if dim is None else x.mean(dim)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor | None = None, unbiased: bool = True) -> torch.Tensor:
    """Variance over masked positions, with Bessel's correction by default (as PPO implementations do)."""
    mean = masked_mean(x, mask)
    sq = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = x.numel() if mask is None else mask.sum()
        n = torch.as_tensor(n, dtype=x.dtype)
        if n > 1:
            sq = sq * n / (n - 1)
    return sq


def whiten(
    x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(x - mean) / std over the masked positions; ``shift_mean=False`` only rescales.

    Rewards are whitened without shifting the mean (shifting would turn "every answer is good" into "half
    are bad"); advantages are whitened with the shift. Masked positions come back as zero.
    """
    mean = masked_mean(x, mask)
    out = (x - mean) * torch.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        out = out + mean
    return out if mask is None else out * mask


def normalize_scores(scores: torch.Tensor, mean: float | None, std: float | None) -> torch.Tensor:
    """RM scores on the scale the RM was fitted to: (s - mean) / std with the RM's stored statistics."""
    if mean is None or std is None:
        return scores
    return (scores - mean) / max(float(std), 1e-8)


# ---------------------------------------------------------------- log-probs, entropy, KL


def logprobs_from_logits(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log p(token) under softmax(logits / temperature): the same distribution the sampler drew from."""
    logits = logits / max(temperature, 1e-7)
    return torch.gather(logits.log_softmax(-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of softmax(logits), computed stably: logsumexp(z) - sum(p * z)."""
    probs = logits.softmax(-1)
    return torch.logsumexp(logits, -1) - (probs * logits).sum(-1)


# Token positions per chunk of the selective log-softmax: a chunk's float32 temporaries are
# chunk x vocab x 4 bytes (4096 x 152k = 2.5 GB would be a whole micro-batch of 8 x 512; 1024 is 0.6 GB).
LOGPROB_CHUNK = 1024


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log softmax(z / T)[token] per position, chunk by chunk over positions, with a hand-written backward.

    Why not ``log_softmax`` + ``gather``: that holds the whole micro-batch's [positions, vocab] in float32
    (the upcast, the log-softmax, and autograd keeps the output for backward), ~2.5 GB each at 8 x 512
    tokens and a 152k vocabulary. Here forward keeps only a [positions] logsumexp, and backward rebuilds
    softmax one chunk at a time: d logp / dz = (onehot(token) - softmax(z / T)) / T. The logits themselves
    (the model's output, in its dtype) are the only full-size tensor, and the model's graph holds them anyway.
    """

    @staticmethod
    def forward(ctx, logits, tokens, temperature, chunk):  # noqa: ANN001, ANN205 - autograd signature
        flat = logits.reshape(-1, logits.shape[-1])
        idx = tokens.reshape(-1)
        wide = torch.promote_types(logits.dtype, torch.float32)  # float32, or float64 for float64 logits
        lse = torch.empty(flat.shape[0], dtype=wide, device=logits.device)
        picked = torch.empty_like(lse)
        for start in range(0, flat.shape[0], chunk):
            part = flat[start : start + chunk].to(wide) / temperature
            lse[start : start + chunk] = torch.logsumexp(part, -1)
            picked[start : start + chunk] = part.gather(1, idx[start : start + chunk, None]).squeeze(1)
        ctx.save_for_backward(logits, tokens, lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        return (picked - lse).reshape(tokens.shape)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        logits, tokens, lse = ctx.saved_tensors
        temperature, chunk = ctx.temperature, ctx.chunk
        flat = logits.reshape(-1, logits.shape[-1])
        idx = tokens.reshape(-1)
        g = grad_out.reshape(-1).to(lse.dtype)
        grad = torch.empty_like(flat)
        for start in range(0, flat.shape[0], chunk):
            end = min(start + chunk, flat.shape[0])
            probs = torch.exp(flat[start:end].to(lse.dtype) / temperature - lse[start:end, None])
            part = -probs * g[start:end, None]
            part.scatter_add_(1, idx[start:end, None], g[start:end, None])
            grad[start:end] = (part / temperature).to(grad.dtype)
        return grad.reshape(logits.shape), None, None, None


def selective_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, chunk: int = LOGPROB_CHUNK
) -> torch.Tensor:
    """``logprobs_from_logits`` (float32 result, float64 for float64 logits) without a full-vocabulary float32 copy of ``logits``.

    ``logits`` [..., vocab] in any float dtype (bf16 stays bf16), ``tokens`` [...]; ``chunk`` positions at a
    time. Equal to the full computation up to float rounding (tests/unit/test_ppo_math.py), gradient too.
    """
    return _SelectiveLogSoftmax.apply(logits, tokens, max(float(temperature), 1e-7), int(chunk))


def chunked_entropy(
    logits: torch.Tensor, temperature: float = 1.0, chunk: int = LOGPROB_CHUNK
) -> torch.Tensor:
    """``entropy_from_logits(logits / temperature)`` in float32, ``chunk`` positions at a time (no grad:
    entropy is logged, not optimised)."""
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    with torch.no_grad():
        for start in range(0, flat.shape[0], chunk):
            part = flat[start : start + chunk].float() / max(float(temperature), 1e-7)
            out[start : start + chunk] = entropy_from_logits(part)
    return out.reshape(logits.shape[:-1])


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token sampled estimate of KL(pi || pi_ref) on tokens drawn from pi (Schulman, "Approximating KL").

    k1 = log pi - log pi_ref: unbiased for the KL's value, can be negative on a single token, and as a
    per-token reward its policy gradient is the exact gradient of the KL penalty (the default).
    k3 = (r - 1) - log r with r = pi_ref / pi: also unbiased for the KL's value, never negative, lower
    variance; but used as a per-token *reward* (as here) its score-function gradient is not the gradient
    of KL(pi || pi_ref): it is biased (GRPO-style use puts k3 in the loss, where its gradient differs
    again). Prefer k1 for the penalty and ``exact_kl`` to report the KL.
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator '{estimator}' (k1 or k3)")


def exact_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(pi(.|prefix) || pi_ref(.|prefix)) per position, summed over the whole vocabulary.

    On a sampled answer, the sum over its positions is an unbiased estimate of the sequence KL with far less
    variance than sum(log pi - log pi_ref) (it averages over every next token, not only the drawn one) and
    never negative. ``logits`` [..., vocab]; the two may differ in vocabulary size only if padded (cut to
    the smaller one).
    """
    vocab = min(logits.shape[-1], ref_logits.shape[-1])
    logp = logits[..., :vocab].float().log_softmax(-1)
    ref_logp = ref_logits[..., :vocab].float().log_softmax(-1)
    return (logp.exp() * (logp - ref_logp)).sum(-1).clamp(min=0.0)


# ---------------------------------------------------------------- rewards


def apply_missing_eos_penalty(
    scores: torch.Tensor, has_eos: torch.Tensor, penalty: float | None, mode: str = "replace"
) -> torch.Tensor:
    """Scores of answers that never stopped: replaced by ``penalty`` (N+ details) or shifted by it (TRL)."""
    if penalty is None:
        return scores
    if mode == "replace":
        return torch.where(has_eos, scores, torch.full_like(scores, penalty))
    if mode == "add":
        return torch.where(has_eos, scores, scores + penalty)
    raise ValueError(f"unknown missing-EOS penalty mode '{mode}' (replace or add)")


def shape_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, last_index: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * KL_t on every real token, plus the sequence score at the last real one.

    Returns (rewards, non_score_rewards); both are zero on padding.
    """
    non_score = -kl_coef * kl * mask
    rewards = non_score.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_index] += scores.to(rewards.dtype)
    return rewards, non_score


# ---------------------------------------------------------------- advantages


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over response tokens; returns (advantages, returns).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V = 0 past the
    last real token (the episode ends at EOS). Returns = A + V, the value targets.
    """
    rewards = rewards * mask
    values = values * mask
    length = rewards.shape[1]
    last = torch.zeros_like(rewards[:, 0])
    reversed_adv = []
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        reversed_adv.append(last)
    advantages = torch.stack(reversed_adv[::-1], dim=1) * mask
    return advantages, (advantages + values) * mask


# ---------------------------------------------------------------- losses


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate: mean of max(-A * ratio, -A * clip(ratio, 1 - c, 1 + c)) over real tokens.

    Stats: ``clipfrac`` (share of tokens where the clipped term is the active one) and ``approx_kl``
    (0.5 * mean (log ratio)^2, the old-vs-new policy KL used to watch step sizes).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": 0.5 * masked_mean(log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: 0.5 * mean max((V - R)^2, (V_clip - R)^2), V_clip within +-c of the old value."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask)}
    return loss, stats


def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect critic, 0 no better than a constant."""
    var_returns = masked_var(returns, mask, unbiased=False)
    if float(var_returns) == 0.0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns)


# ---------------------------------------------------------------- KL controllers


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Ziegler et al. (2019): move beta so the observed KL tracks a target.

    error = clip(KL / target - 1, -0.2, 0.2); beta *= 1 + error * n_steps / horizon, where n_steps is the
    number of episodes in the batch just seen and horizon the number of episodes to close the gap over.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
