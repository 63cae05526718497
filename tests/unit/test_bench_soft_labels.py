"""scripts/bench_soft_labels.py: the test part shares no prompt with the training part, and each test
comparison is labelled by the strict majority of its decided votes (splits and ties left out)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bench(script):  # noqa: ANN001, ANN201
    return script("bench_soft_labels")


def judgment(prompt: str, ranks: list[int], rater: str) -> dict:
    return {"prompt": prompt, "responses": [f"x {prompt}", f"y {prompt}"], "ranks": ranks, "rater": rater}


def test_split_is_by_prompt_and_test_labels_are_strict_majorities(bench):  # noqa: ANN001
    records = [
        judgment(f"p{i}", [1, 2] if (i + k) % 3 else [2, 1], f"a{k}") for i in range(40) for k in range(3)
    ]
    train, test = bench.split(records, split_seed=0)
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in test})
    assert len(train) + len(test) == len(records) and 0.2 < len(test) / len(records) < 0.4
    rows = [judgment("m", [1, 2], "a"), judgment("m", [2, 1], "b"), judgment("m", [1, 2], "c"),
            judgment("s", [1, 2], "a"), judgment("s", [2, 1], "b"), judgment("s", [1, 1], "c"),
            judgment("t", [1, 1], "a"), judgment("t", [2, 1], "b")]  # fmt: skip
    labelled, votes = bench.test_set(rows)
    got = {r["prompt"]: (r["ranks"], v) for r, v in zip(labelled, votes, strict=True)}
    # m: 2 of 3 say the first is better; s: one each way (a split: left out); t: the one decided vote wins
    assert got == {"m": ([1, 2], [1, -1, 1]), "t": ([2, 1], [-1])}
