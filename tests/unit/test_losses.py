"""Reward-model losses against numbers computed by hand (math module formulas, not the code under test)."""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab import losses


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_bradley_terry_hard_label_is_minus_log_sigmoid():
    out = losses.bradley_terry_pair_loss(t(2.0, -1.0))
    assert out.tolist() == pytest.approx([-math.log(sig(2.0)), -math.log(sig(-1.0))])


def test_bradley_terry_margin_llama2():
    # Llama 2: -log sigmoid(r_w - r_l - m)
    out = losses.bradley_terry_pair_loss(t(1.0), margin=t(3.0))
    assert out.item() == pytest.approx(-math.log(sig(-2.0)))


def test_bradley_terry_soft_label_cross_entropy():
    d, p = 0.5, 0.8
    want = -(p * math.log(sig(d)) + (1 - p) * math.log(sig(-d)))
    assert losses.bradley_terry_pair_loss(t(d), p=t(p)).item() == pytest.approx(want)
    # p = 0.5 is minimised at d = 0 (no preference), so the gradient there is zero
    d0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    losses.bradley_terry_pair_loss(d0, p=t(0.5)).sum().backward()
    assert d0.grad.item() == pytest.approx(0.0)


def test_instructgpt_kwise_normalised_per_group():
    # one group of K=3 with ranks 1,2,3 -> pairs (0,1),(0,2),(1,2); a second group of K=2
    r = t(2.0, 1.0, -1.0, 0.3, 0.0)
    winner = torch.tensor([0, 0, 1, 3])
    loser = torch.tensor([1, 2, 2, 4])
    group = torch.tensor([0, 0, 0, 1])
    g0 = -(math.log(sig(1.0)) + math.log(sig(3.0)) + math.log(sig(2.0))) / 3
    g1 = -math.log(sig(0.3))
    out = losses.pairwise_ranking_loss(r, winner, loser, group, n_groups=2)
    assert out.item() == pytest.approx((g0 + g1) / 2)
    # record weights: 3 and 1
    out_w = losses.pairwise_ranking_loss(r, winner, loser, group, n_groups=2, weight=t(3.0, 1.0))
    assert out_w.item() == pytest.approx((3 * g0 + 1 * g1) / 4)


def test_groups_without_pairs_take_no_part():
    r = t(1.0, 0.0, 5.0, 4.0)
    out = losses.pairwise_ranking_loss(r, torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), n_groups=2)
    assert out.item() == pytest.approx(-math.log(sig(1.0)))


def test_ties_need_a_tie_model():
    with pytest.raises(ValueError, match="tie model"):
        losses.pairwise_ranking_loss(
            t(0.0, 0.0), torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), 1, tie=torch.tensor([True])
        )


def test_rao_kupper_probabilities_by_hand():
    theta, ri, rj = 1.5, 0.7, -0.2
    pi, pj = math.exp(ri), math.exp(rj)
    p_win = pi / (pi + theta * pj)
    p_lose = pj / (pj + theta * pi)
    p_tie = (theta**2 - 1) * pi * pj / ((pi + theta * pj) * (pj + theta * pi))
    win, lose, tie = losses.rao_kupper_log_probs(t(ri - rj), theta)
    assert math.exp(win.item()) == pytest.approx(p_win)
    assert math.exp(lose.item()) == pytest.approx(p_lose)
    assert math.exp(tie.item()) == pytest.approx(p_tie)
    assert p_win + p_lose + p_tie == pytest.approx(1.0)


def test_davidson_probabilities_by_hand():
    nu, ri, rj = 0.8, 0.3, 1.1
    pi, pj = math.exp(ri), math.exp(rj)
    den = pi + pj + nu * math.sqrt(pi * pj)
    win, lose, tie = losses.davidson_log_probs(t(ri - rj), nu)
    assert math.exp(win.item()) == pytest.approx(pi / den)
    assert math.exp(lose.item()) == pytest.approx(pj / den)
    assert math.exp(tie.item()) == pytest.approx(nu * math.sqrt(pi * pj) / den)


def test_tie_model_loss_uses_ties_and_same_model_for_wins():
    theta = 2.0
    d = t(0.4, 1.2)
    tie = torch.tensor([True, False])
    out = losses.tie_model_pair_loss(d, tie, "rao-kupper", theta)
    p0 = (theta**2 - 1) * sig(0.4 - math.log(theta)) * sig(-0.4 - math.log(theta))
    p1 = sig(1.2 - math.log(theta))
    assert out.tolist() == pytest.approx([-math.log(p0), -math.log(p1)])
    # a tie pulls the rewards together: the gradient on d is positive at d > 0 (descent lowers d)
    dd = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    losses.tie_model_pair_loss(dd, torch.tensor([True]), "rao-kupper", theta).sum().backward()
    assert dd.grad.item() > 0


def test_tie_model_soft_label_and_margin():
    nu, d, p, m = 1.0, 0.5, 0.7, 0.25
    win, _, _ = losses.davidson_log_probs(t(d - m), nu)
    _, lose, _ = losses.davidson_log_probs(t(d + m), nu)
    want = -(p * win.item() + (1 - p) * lose.item())
    e = math.exp((d - m) / 2)
    assert math.exp(win.item()) == pytest.approx(e / (e + 1 / e + nu))
    got = losses.tie_model_pair_loss(t(d), torch.tensor([False]), "davidson", nu, p=t(p), margin=t(m))
    assert got.item() == pytest.approx(want)


def test_bad_tie_params_fail():
    with pytest.raises(ValueError):
        losses.rao_kupper_log_probs(t(0.0), 1.0)
    with pytest.raises(ValueError):
        losses.davidson_log_probs(t(0.0), 0.0)


def test_plackett_luce_by_hand():
    # group 0: rewards (1, 0, 2) ranked (2, 3, 1): order is item2 > item0 > item1
    r = t(1.0, 0.0, 2.0, 0.5, -0.5)
    ranks = torch.tensor([2, 3, 1, 1, 2])
    group = torch.tensor([0, 0, 0, 1, 1])
    stage1 = 2.0 - math.log(math.exp(2) + math.exp(1) + math.exp(0))
    stage2 = 1.0 - math.log(math.exp(1) + math.exp(0))
    g0 = -(stage1 + stage2) / 2
    g1 = -(0.5 - math.log(math.exp(0.5) + math.exp(-0.5)))
    out = losses.plackett_luce_loss(r, ranks, group, n_groups=2)
    assert out.item() == pytest.approx((g0 + g1) / 2)


def test_plackett_luce_k2_equals_bradley_terry():
    r = t(0.9, 0.1)
    pl = losses.plackett_luce_loss(r, torch.tensor([1, 2]), torch.tensor([0, 0]), 1)
    assert pl.item() == pytest.approx(-math.log(sig(0.8)))


def test_plackett_luce_ties_breslow():
    # ranks (1, 1, 2): both tied items choose from all three; the last is alone and skipped
    r = t(1.0, 0.5, 0.0)
    z = math.log(math.exp(1) + math.exp(0.5) + 1)
    want = -((1.0 - z) + (0.5 - z)) / 2
    out = losses.plackett_luce_loss(r, torch.tensor([1, 1, 2]), torch.tensor([0, 0, 0]), 1)
    assert out.item() == pytest.approx(want)


def test_centering_is_per_pair_mean_of_squared_sums():
    # TRL / Eisenstein et al.: coef * mean((r_w + r_l)^2). One K=2 group (1, 3) and one K=3 group
    # (2, -1, 0) with pairs (0,1) (0,2) (1,2): group means 16 and (1 + 4 + 1) / 3 = 2, averaged = 9.
    r = t(1.0, 3.0, 2.0, -1.0, 0.0)
    winner, loser = torch.tensor([0, 2, 2, 3]), torch.tensor([1, 3, 4, 4])
    group = torch.tensor([0, 1, 1, 1])
    assert losses.centering_loss(r, winner, loser, group, 2, 0.1).item() == pytest.approx(0.1 * 9.0)
    # not the batch mean squared: mean(r) = 1 would give 0.1 * 1
    # record weights (3, 1): (3 * 16 + 2) / 4; a zero-weight group adds nothing
    w = t(3.0, 1.0)
    assert losses.centering_loss(r, winner, loser, group, 2, 0.1, w).item() == pytest.approx(0.1 * 50 / 4)
    assert losses.centering_loss(r, winner, loser, group, 2, 0.1, t(0.0, 1.0)).item() == pytest.approx(0.2)
    assert losses.centering_loss(r, winner, loser, group, 2, 0.0).item() == 0.0
    # K = 2, unit weights: exactly TRL's term
    trl = 0.01 * ((1.0 + 3.0) ** 2 + (2.0 - 1.0) ** 2) / 2
    two = losses.centering_loss(t(1.0, 3.0, 2.0, -1.0), torch.tensor([0, 2]), torch.tensor([1, 3]),
                                torch.tensor([0, 1]), 2, 0.01)  # fmt: skip
    assert two.item() == pytest.approx(trl)


def test_learned_tie_parameter_by_hand():
    # theta = 1 + softplus(raw), nu = softplus(raw); softplus(0) = log 2
    raw = torch.tensor(0.0, dtype=torch.float64)
    assert losses.tie_param_from_raw(raw, "rao-kupper").item() == pytest.approx(1 + math.log(2))
    assert losses.tie_param_from_raw(raw, "davidson").item() == pytest.approx(math.log(2))
    # started from the data's tie share s: P(tie | d = 0) = s
    for kind in ("rao-kupper", "davidson"):
        raw0 = torch.tensor(losses.tie_raw_init(0.2, kind), dtype=torch.float64)
        param = losses.tie_param_from_raw(raw0, kind)
        _, _, log_tie = losses.tie_log_probs(t(0.0), kind, param)
        assert math.exp(log_tie.item()) == pytest.approx(0.2)
    # s = 0.2: theta = 1.2 / 0.8 = 1.5, nu = 0.4 / 0.8 = 0.5
    assert losses.tie_param_for_share(0.2, "rao-kupper") == pytest.approx(1.5)
    assert losses.tie_param_for_share(0.2, "davidson") == pytest.approx(0.5)


def test_learned_tie_loss_and_gradient_by_hand():
    # Rao-Kupper at theta = 3 (raw = log(e^2 - 1)): tie pair d = 0.5, decided pair d = 1.0
    raw = torch.tensor(math.log(math.exp(2.0) - 1), dtype=torch.float64, requires_grad=True)
    theta = losses.tie_param_from_raw(raw, "rao-kupper")
    assert theta.item() == pytest.approx(3.0)
    out = losses.tie_model_pair_loss(t(0.5, 1.0), torch.tensor([True, False]), "rao-kupper", theta)
    lt = math.log(3.0)
    tie_nll = -(math.log(8.0) + math.log(sig(0.5 - lt)) + math.log(sig(-0.5 - lt)))
    win_nll = -math.log(sig(1.0 - lt))
    assert out.tolist() == pytest.approx([tie_nll, win_nll])
    out.sum().backward()
    # d/dtheta by hand: tie: -(2 theta / (theta^2 - 1) - (1 - s(0.5 - lt)) / theta - (1 - s(-0.5 - lt)) / theta)
    #                   win: (1 - s(1 - lt)) / theta; chain rule: dtheta/draw = sigmoid(raw)
    dtheta = -(6 / 8 - (1 - sig(0.5 - lt)) / 3 - (1 - sig(-0.5 - lt)) / 3) + (1 - sig(1.0 - lt)) / 3
    assert raw.grad.item() == pytest.approx(dtheta * sig(raw.item()))
    # Davidson with a tensor nu = 2: P(tie | d = 0) = 2 / 4
    _, _, log_tie = losses.davidson_log_probs(t(0.0), torch.tensor(2.0, dtype=torch.float64))
    assert math.exp(log_tie.item()) == pytest.approx(0.5)


def test_tie_threshold_matches_predicted_tie():
    for kind, param in (("rao-kupper", 3.0), ("davidson", 2.0)):
        tau = losses.tie_threshold(kind, param)
        assert tau > 0
        assert bool(losses.predicted_tie(t(tau * 0.99), kind, param))
        assert not bool(losses.predicted_tie(t(tau * 1.01), kind, param))
    # theta = 1.5: P(tie) never exceeds P(win), so there is no tie region
    assert losses.tie_threshold("rao-kupper", 1.5) == 0.0
    assert losses.tie_threshold("rao-kupper", 3.0) == pytest.approx(math.log(7) - math.log(3))


def test_win_probability():
    assert losses.win_probability(t(0.0), None, 1.5).item() == pytest.approx(0.5)
    assert losses.win_probability(t(1.0), None, 1.5).item() == pytest.approx(sig(1.0))
    assert losses.win_probability(t(0.0), "rao-kupper", 1.5).item() == pytest.approx(0.5)
    assert losses.win_probability(t(1.0), "davidson", 1.0).item() == pytest.approx(sig(1.0))
