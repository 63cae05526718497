"""scripts/bench_loop_real.py's tuning seeds hold out prompts that no report seed holds out (issue 27).

With one pool for every seed, tuning seed 100's 200 held-out prompts shared 51-68 with each report seed's,
so defaults chosen on them were partly chosen on the report prompts. No model: only the draws, on the
512-pair HH-RLHF slice in tests/data (the benchmark draws the same way from the full 2,354 pairs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLICE = ROOT / "tests" / "data" / "hh-rlhf-helpful-base-slice.jsonl.gz"
REPORT_SEEDS, TUNING_SEEDS = range(11), (100, 101, 102)
N, POOL = 40, 40  # the slice has 144 single-turn prompts (the full file 698: 200 and 200)


@pytest.fixture(scope="module")
def bench(script):  # noqa: ANN001, ANN201
    return script("bench_loop_real")


@pytest.fixture(scope="module")
def by_prompt(bench) -> dict[str, list[dict]]:  # noqa: ANN001
    out: dict[str, list[dict]] = {}
    for rec in bench.load_pairs(str(SLICE)):
        out.setdefault(json.dumps(rec["prompt"]), []).append(rec)
    return out


def draw(bench, by_prompt, seed: int, legacy: bool = False) -> set[str]:  # noqa: ANN001
    return bench.heldout_draw(by_prompt, seed, N, 300, legacy=legacy, pool_size=POOL)[1]


def test_tuning_prompts_are_disjoint_from_every_report_seeds_and_from_opening_turns(bench, by_prompt) -> None:
    openings = bench.opening_turns(by_prompt)
    assert openings  # the slice has multi-turn conversations whose first turn is also a single-turn prompt
    report = [draw(bench, by_prompt, s) for s in REPORT_SEEDS]
    for seed in TUNING_SEEDS:
        tuning = draw(bench, by_prompt, seed)
        assert len(tuning) == N
        assert all(not tuning & held for held in report)
        assert not {by_prompt[k][0]["prompt"][0]["content"] for k in tuning} & openings
    for held in report:
        assert len(held) == N and all(bench.single_turn(by_prompt[k][0], 300) for k in held)
        assert not {by_prompt[k][0]["prompt"][0]["content"] for k in held} & openings
    # the old draw is what this guards against: there the tuning seed shares prompts with report seeds
    old_tuning = draw(bench, by_prompt, 100, legacy=True)
    assert any(old_tuning & draw(bench, by_prompt, s, legacy=True) for s in REPORT_SEEDS)


def test_a_tuning_seed_cannot_ask_for_more_prompts_than_its_pool(bench, by_prompt) -> None:
    with pytest.raises(SystemExit, match="pool of 40"):
        bench.heldout_draw(by_prompt, 100, POOL + 1, 300, pool_size=POOL)
