"""PPO terms against hand-computed numbers (see the comments for the arithmetic)."""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab import ppo_math as pm


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def near(x: torch.Tensor, expected) -> None:
    torch.testing.assert_close(x, t(expected), atol=1e-5, rtol=0)


def test_response_mask_stops_at_first_eos_even_when_pad_equals_eos():
    eos = 2
    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0], [5, 2, 2, 2, 2]])
    mask, has_eos, last = pm.response_mask(ids, eos)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert has_eos.tolist() == [True, False, True, True]
    # the score goes on the EOS itself, or on the last generated token when there is no EOS
    assert last.tolist() == [2, 4, 0, 1]


def test_response_mask_accepts_several_stop_tokens():
    ids = torch.tensor([[5, 7, 3, 3], [5, 6, 2, 3]])
    mask, has_eos, last = pm.response_mask(ids, [2, 7])
    assert last.tolist() == [1, 2]
    assert has_eos.tolist() == [True, True]


def test_masked_mean_and_var():
    x = t([[1.0, 2.0, 100.0], [3.0, 4.0, 100.0]])
    m = t([[1, 1, 0], [1, 1, 0]])
    assert pm.masked_mean(x, m).item() == pytest.approx(2.5)
    # unbiased: (2.25 + 0.25 + 0.25 + 2.25) / 3
    assert pm.masked_var(x, m).item() == pytest.approx(5 / 3)
    assert pm.masked_var(x, m, unbiased=False).item() == pytest.approx(5 / 4)


def test_whiten_shift_and_no_shift():
    x = t([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)
    expected = [(v - 2.5) / std for v in (1, 2, 3, 4)]
    assert pm.whiten(x).tolist() == pytest.approx(expected, abs=1e-5)
    # rewards keep their mean: only rescaled around it
    assert pm.whiten(x, shift_mean=False).tolist() == pytest.approx([e + 2.5 for e in expected], abs=1e-5)


def test_whiten_zeroes_masked_positions_and_ignores_them():
    x = t([[1.0, 2.0, 50.0], [3.0, 4.0, -50.0]])
    m = t([[1, 1, 0], [1, 1, 0]])
    out = pm.whiten(x, m)
    std = math.sqrt(5 / 3)
    near(out, [[-1.5 / std, -0.5 / std, 0.0], [0.5 / std, 1.5 / std, 0.0]])


def test_normalize_scores_uses_rm_statistics():
    assert pm.normalize_scores(t([3.0, 1.0]), 1.0, 2.0).tolist() == [1.0, 0.0]
    assert pm.normalize_scores(t([3.0]), None, None).tolist() == [3.0]


def test_logprobs_with_temperature():
    logits = t([[[0.0, 2 * math.log(3.0)]]])
    tokens = torch.tensor([[1]])
    # logits / 2 = [0, ln 3] -> p = [1/4, 3/4]
    assert pm.logprobs_from_logits(logits, tokens, temperature=2.0).item() == pytest.approx(
        math.log(0.75), abs=1e-6
    )
    assert pm.logprobs_from_logits(t([[[0.0, 0.0]]]), torch.tensor([[0]])).item() == pytest.approx(
        math.log(0.5)
    )


def test_entropy_of_uniform_and_peaked():
    assert pm.entropy_from_logits(t([0.0, 0.0, 0.0, 0.0])).item() == pytest.approx(math.log(4))
    assert pm.entropy_from_logits(t([100.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_selective_logprobs_match_the_full_log_softmax_value_and_gradient():
    """Chunked logsumexp + gather (and its hand-written backward) = log_softmax + gather, any chunk size."""
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 50, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    tokens = torch.randint(0, 50, (3, 7), generator=gen)
    weights = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    full = pm.logprobs_from_logits(logits, tokens, temperature=0.7)
    (full * weights).sum().backward()
    expected_grad = logits.grad.clone()
    for chunk in (1, 4, 21, 1000):  # 21 positions in all: one chunk, uneven chunks, one per position
        logits.grad = None
        mine = pm.selective_logprobs(logits, tokens, temperature=0.7, chunk=chunk)
        (mine * weights).sum().backward()
        torch.testing.assert_close(mine, full, atol=1e-10, rtol=0)
        torch.testing.assert_close(logits.grad, expected_grad, atol=1e-10, rtol=0)
    # the backward checked numerically too (float64, small case)
    small = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    small_tokens = torch.randint(0, 5, (2, 3), generator=gen)
    assert torch.autograd.gradcheck(
        lambda z: pm._SelectiveLogSoftmax.apply(z, small_tokens, 1.3, 2), (small,)
    )


def test_selective_logprobs_keep_bf16_logits_and_return_float32():
    logits = torch.randn(2, 4, 30, generator=torch.Generator().manual_seed(1)).bfloat16().requires_grad_(True)
    tokens = torch.randint(0, 30, (2, 4), generator=torch.Generator().manual_seed(2))
    out = pm.selective_logprobs(logits, tokens, chunk=3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, pm.logprobs_from_logits(logits.float(), tokens), atol=1e-5, rtol=0)
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_chunked_entropy_matches_the_full_entropy():
    logits = torch.randn(3, 5, 40, generator=torch.Generator().manual_seed(3)) * 4
    for chunk in (1, 6, 100):
        torch.testing.assert_close(
            pm.chunked_entropy(logits, temperature=0.5, chunk=chunk),
            pm.entropy_from_logits(logits / 0.5),
            atol=1e-5,
            rtol=0,
        )
    # hand-computed: a uniform row over 4 tokens has entropy log 4, whatever the temperature
    assert pm.chunked_entropy(torch.zeros(1, 1, 4), temperature=3.0).item() == pytest.approx(math.log(4))


def test_kl_estimators():
    logp, ref = t([math.log(0.5)]), t([math.log(0.25)])
    assert pm.kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # r = p_ref / p = 0.5: (0.5 - 1) - log 0.5
    assert pm.kl_per_token(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2), abs=1e-6)
    # k1 can be negative on a token, k3 never is
    assert pm.kl_per_token(ref, logp, "k1").item() < 0
    assert pm.kl_per_token(ref, logp, "k3").item() > 0
    with pytest.raises(ValueError):
        pm.kl_per_token(logp, ref, "k2")


def test_missing_eos_penalty_replace_and_add():
    scores, has = t([1.0, 2.0]), torch.tensor([True, False])
    assert pm.apply_missing_eos_penalty(scores, has, -1.0, "replace").tolist() == [1.0, -1.0]
    assert pm.apply_missing_eos_penalty(scores, has, -1.0, "add").tolist() == [1.0, 1.0]
    assert pm.apply_missing_eos_penalty(scores, has, None).tolist() == [1.0, 2.0]


def test_shape_rewards_puts_score_on_last_real_token():
    scores = t([2.0, -1.0])
    kl = t([[0.1, 0.2, 0.3], [0.1, 0.1, 0.1]])
    mask = t([[1, 1, 0], [1, 1, 1]])
    rewards, non_score = pm.shape_rewards(scores, kl, mask, torch.tensor([1, 2]), kl_coef=0.5)
    near(rewards, [[-0.05, 1.9, 0.0], [-0.05, -0.05, -1.05]])
    near(non_score, [[-0.05, -0.1, 0.0], [-0.05, -0.05, -0.05]])


def test_gae_hand_computed():
    rewards = t([[0.0, 0.0, 1.0]])
    values = t([[0.5, 0.6, 0.7]])
    adv, ret = pm.gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # t2: 1 - 0.7 = 0.3; t1: 0.7 - 0.6 + 0.5 * 0.3 = 0.25; t0: 0.6 - 0.5 + 0.5 * 0.25 = 0.225
    near(adv, [[0.225, 0.25, 0.3]])
    near(ret, [[0.725, 0.85, 1.0]])


def test_gae_treats_padding_as_terminal():
    rewards = t([[0.0, 1.0, 9.0]])
    values = t([[0.5, 0.6, 9.0]])
    adv, ret = pm.gae(rewards, values, t([[1, 1, 0]]), gamma=1.0, lam=0.5)
    # the pad's value and reward are ignored: t1: 1 - 0.6 = 0.4; t0: 0.6 - 0.5 + 0.5 * 0.4 = 0.3
    near(adv, [[0.3, 0.4, 0.0]])
    near(ret, [[0.8, 1.0, 0.0]])


def test_gae_with_discount():
    adv, _ = pm.gae(t([[1.0, 1.0]]), t([[0.0, 0.0]]), torch.ones(1, 2), gamma=0.5, lam=1.0)
    # t1: 1; t0: 1 + 0.5 * 0 - 0 + 0.5 * 1 * 1 = 1.5
    near(adv, [[1.5, 1.0]])


def test_policy_loss_clipping():
    old = torch.zeros(1, 3)
    logp = torch.log(t([[1.5, 0.5, 1.1]]))
    adv = t([[1.0, 1.0, -1.0]])
    loss, stats = pm.policy_loss(logp, old, adv, torch.ones(1, 3), cliprange=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5; token 3: 1.1
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1) / 3, abs=1e-6)
    assert stats["clipfrac"].item() == pytest.approx(1 / 3)
    expected_kl = 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    assert stats["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-6)


def test_policy_loss_gradient_is_zero_when_clipped():
    logp = torch.log(t([[1.5]])).requires_grad_()
    loss, _ = pm.policy_loss(logp, torch.zeros(1, 1), t([[1.0]]), torch.ones(1, 1), cliprange=0.2)
    loss.backward()
    assert logp.grad.item() == 0.0


def test_value_loss_clipping():
    values, old, returns = t([[1.0, 0.0]]), t([[0.5, 0.5]]), t([[1.0, 1.0]])
    loss, stats = pm.value_loss(values, old, returns, torch.ones(1, 2), cliprange_value=0.2)
    # token 1: max(0, (0.7 - 1)^2 = 0.09); token 2: max(1, (0.3 - 1)^2 = 0.49) -> 0.5 * (0.09 + 1) / 2
    assert loss.item() == pytest.approx(0.2725, abs=1e-6)
    assert stats["vf_clipfrac"].item() == pytest.approx(0.5)


def test_explained_variance():
    returns = t([1.0, 2.0, 3.0])
    assert pm.explained_variance(returns, returns) == pytest.approx(1.0)
    assert pm.explained_variance(t([0.0, 0.0, 0.0]), returns) == pytest.approx(0.0)
    # residuals [1, 0, -1] around mean 0 (var 2/3) vs returns var 2/3 -> 0; shift by 1: residual var 2/3 still
    assert pm.explained_variance(t([0.0, 2.0, 4.0]), returns) == pytest.approx(0.0)


def test_adaptive_kl_controller():
    ctl = pm.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(12.0, n_steps=100)  # error clipped to +0.2 -> x 1.002
    assert ctl.value == pytest.approx(0.1002)
    ctl = pm.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(3.0, n_steps=100)  # error -0.5 clipped to -0.2 -> x 0.998
    assert ctl.value == pytest.approx(0.0998)
    ctl.update(6.6, n_steps=1000)  # error 0.1 -> x 1.01
    assert ctl.value == pytest.approx(0.0998 * 1.01)
    fixed = pm.FixedKLController(0.05)
    fixed.update(100.0, 100)
    assert fixed.value == 0.05
    ctl2 = pm.AdaptiveKLController(1.0, 6.0, 10)
    ctl2.load_state_dict(ctl.state_dict())
    assert ctl2.value == ctl.value


def test_exact_kl_sums_over_the_vocabulary_and_is_never_negative():
    p, q = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.5, 0.25])
    want = 0.5 * math.log(2) + 0.25 * math.log(0.5)  # sum p log p/q
    got = pm.exact_kl(p.log().reshape(1, 1, 3), q.log().reshape(1, 1, 3))
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(want, abs=1e-6)
    same = pm.exact_kl(p.log().reshape(1, 3) + 7.0, p.log().reshape(1, 3))  # logits: shift-invariant
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    a, b = torch.randn(4, 5, 11), torch.randn(4, 5, 11)
    assert (pm.exact_kl(a, b) >= 0).all()
    # the sampled k1 estimate averages to it: E_{y~p}[log p(y) - log q(y)] = KL(p || q)
    draws = torch.multinomial(p, 200_000, replacement=True)
    k1 = (p.log() - q.log())[draws].mean().item()
    assert k1 == pytest.approx(want, abs=0.01)
