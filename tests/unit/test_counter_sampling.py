"""The device-side seeded samplers: per-row generators on the logits' device (bit-identical on CPU to the
host sampler before 2026-12) and the counter hash (generation.counter_uniform: against a pure-Python
reference, uniform and independent noise); each row's draw a function of its seed and step only."""

from __future__ import annotations

import pytest
import torch

from rewardlab import generation


def _lowbias32(x: int) -> int:
    """The hash written out on Python ints (no torch), to check the int64 in-place version."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_counter_noise_equals_the_pure_python_hash():
    seeds, step, vocab = [0, 7, 2**63 + 5], 3, 70
    u = generation.counter_uniform(seeds, step, vocab, "cpu")
    for row, seed in enumerate(seeds):
        key = generation._splitmix64(seed ^ generation._splitmix64(step))
        lo, hi = key & 0xFFFFFFFF, key >> 32
        for j in (0, 1, 33, 69):
            h = _lowbias32(_lowbias32(j ^ lo) ^ hi)
            assert u[row, j].item() == ((h >> 9) + 0.5) / 2**23  # exact in float32
    assert _lowbias32(0) == 0 and _lowbias32(1) == 0x688990C0  # the multiplies really wrap modulo 2**32


def test_counter_noise_is_uniform_and_rows_and_steps_are_uncorrelated():
    u = generation.counter_uniform(list(range(8)), 0, 50_000, "cpu")
    assert u.min() >= 2**-24 and u.max() <= 1 - 2**-24
    # mean 1/2 and variance 1/12 with 400k values: standard errors 4.6e-4 and 1.3e-4
    assert u.mean().item() == pytest.approx(0.5, abs=3e-3)
    assert u.var().item() == pytest.approx(1 / 12, abs=1e-3)
    # ten equal bins hold 10% each (binomial se 4.7e-4)
    bins = torch.histc(u, bins=10, min=0.0, max=1.0) / u.numel()
    torch.testing.assert_close(bins, torch.full((10,), 0.1), atol=3e-3, rtol=0)
    nxt = generation.counter_uniform(list(range(8)), 1, 50_000, "cpu")
    # adjacent seeds, the same row at the next step, neighbouring vocabulary entries: correlation ~ N(0, 1/sqrt(n))
    pairs = [(u[0], u[1]), (u[0], nxt[0]), (u[3, :-1], u[3, 1:])]
    for a, b in pairs:
        corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(corr) < 0.02, corr  # 1/sqrt(50k) = 0.0045


def test_counter_sampler_draws_the_softmax_over_steps_and_ignores_the_batch():
    """One seed over 4000 decode steps samples softmax(logits): the steps' noise is independent."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    processor = generation.seeded_sampling([12345], noise="counter")
    ids = torch.zeros((1, 1), dtype=torch.long)
    picks = torch.stack([processor(ids, logits).argmax(-1)[0] for _ in range(4000)])
    freq = torch.bincount(picks, minlength=5).float() / 4000
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.035, rtol=0)  # se <= 0.008
    # a row's draws over several steps are the same alone as in a batch of 5 (any order of the others)
    big = torch.randn(5, 300, generator=torch.Generator().manual_seed(0))
    together = generation.seeded_sampling([5, 6, 7, 8, 9], noise="counter")
    alone = generation.seeded_sampling([7], noise="counter")
    shuffled = generation.seeded_sampling([9, 7, 5], noise="counter")
    for _ in range(4):
        t = together(torch.zeros((5, 1), dtype=torch.long), big).argmax(-1)
        a = alone(torch.zeros((1, 1), dtype=torch.long), big[2:3]).argmax(-1)
        s = shuffled(torch.zeros((3, 1), dtype=torch.long), big[[4, 2, 0]]).argmax(-1)
        assert t[2] == a[0] == s[1] and t[4] == s[0] and t[0] == s[2]


def test_counter_noise_is_made_on_the_logits_device_and_dtype():
    scores = torch.randn(3, 40, dtype=torch.bfloat16)
    for noise in ("generator", "counter"):
        out = generation.seeded_sampling([1, 2, 3], noise=noise)(
            torch.zeros((3, 1), dtype=torch.long), scores
        )
        assert out.dtype == torch.float32 and out.device == scores.device
    meta = generation.counter_uniform([1, 2], 0, 40, "meta")  # no host tensor of vocabulary size is needed
    assert meta.device.type == "meta" and meta.shape == (2, 40)
    # the extremes of the hash give finite noise: u never rounds to 0 or 1
    assert ((torch.tensor([0, 2**23 - 1]).float() + 0.5) * 2**-23).log().neg().log().isfinite().all()
    with pytest.raises(ValueError, match="generator or counter"):
        generation.seeded_sampling([1], noise="gpu")


def test_device_generators_on_cpu_draw_exactly_what_the_host_sampler_drew():
    """The sampler before 2026-12, written out: CPU generators per row, torch.rand, two logs, a copy."""
    seeds = [3, 2**62 + 1, 99]
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(4))
    old_gens = [torch.Generator().manual_seed(s % 2**63) for s in seeds]
    new = generation.seeded_sampling(seeds, temperature=0.7)
    ids = torch.zeros((3, 1), dtype=torch.long)
    for _ in range(3):  # the streams advance alike, step after step
        u = torch.stack([torch.rand(1000, generator=g) for g in old_gens])
        expected = logits.float() / 0.7 + (-torch.log(-torch.log(u.clamp(min=1e-20))))
        assert torch.equal(new(ids, logits), expected)
