"""Per-row seeded sampling (pc.seeded_sampling): the right distribution, and one row's draw owes nothing to
the other rows of its batch (what makes PPO rollouts the same on 1 process or N)."""

from __future__ import annotations

import pytest
import torch

from rewardlab.recipes.policy_common import seeded_sampling


def _draw(logits: torch.Tensor, seeds: list[int], **warp) -> torch.Tensor:
    processor = seeded_sampling(seeds, **warp)
    scores = processor(torch.zeros((len(seeds), 1), dtype=torch.long), logits.repeat(len(seeds), 1))
    return scores.argmax(-1)


@pytest.mark.parametrize(
    ("warp", "expected"),
    [
        ({}, torch.softmax(torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5]), -1)),
        ({"temperature": 0.5}, torch.softmax(torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5]) / 0.5, -1)),
        ({"top_k": 2}, torch.tensor([0.7311, 0.2689, 0.0, 0.0, 0.0])),  # softmax([2, 1])
    ],
)
def test_gumbel_argmax_samples_the_warped_softmax(warp, expected):
    n = 6000
    picks = _draw(torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]]), list(range(n)), **warp)
    freq = torch.bincount(picks, minlength=5).float() / n
    # binomial standard error <= sqrt(0.25 / 6000) = 0.0065: 0.03 is > 4.5 of them
    torch.testing.assert_close(freq, expected, atol=0.03, rtol=0)


def test_a_rows_draw_depends_on_its_seed_only():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    together = seeded_sampling([11, 22, 33, 44])(torch.zeros((4, 1), dtype=torch.long), logits).argmax(-1)
    alone = seeded_sampling([33])(torch.zeros((1, 1), dtype=torch.long), logits[2:3]).argmax(-1)
    assert together[2] == alone[0]
    steps = seeded_sampling([7, 7])
    first = steps(torch.zeros((2, 1), dtype=torch.long), logits[:2])
    second = steps(torch.zeros((2, 1), dtype=torch.long), logits[:2])
    assert not torch.equal(
        first, second
    )  # each call (generation step) draws fresh noise from the row's stream
