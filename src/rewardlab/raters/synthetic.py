"""A small, fast synthetic rating campaign with known utilities, for the raters' tests and benchmark.

Why not the project simulator (``rewardlab.data.simulate``): it builds real prompts and texts and scores
them with a rubric, which is what the end-to-end measurements use; the rater tests need thousands of
judgments in milliseconds and a benchmark needs a million, with only the rater behaviour mattering.

Rater profiles: ``careful`` (Bradley-Terry choice on the true utilities, sharp), ``noisy`` (the same,
blunt), ``random`` (uniform clicks), ``position_biased`` (keeps the shown order 90% of the time, else
careful), ``too_fast`` (random clicks in a few seconds). Careful raters call a tie when two utilities are
within ``tie_band``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rewardlab.data.schema import content_hash, group_key

DEFAULT_MIX = {"careful": 0.6, "noisy": 0.1, "random": 0.2, "position_biased": 0.1}
SHARPNESS = {"careful": 4.0, "noisy": 1.0}


def _profiles(n_raters: int, mix: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Exact shares (rounded), shuffled: a 20% mix of 20 raters is 4 raters, not 'about 4'."""
    total = sum(mix.values())
    counts = {name: int(round(n_raters * share / total)) for name, share in mix.items()}
    names = [name for name, c in counts.items() for _ in range(c)]
    while len(names) < n_raters:
        names.append("careful")
    names = names[:n_raters]
    rng.shuffle(names)
    return names


def _judge(profile: str, u: np.ndarray, rng: np.random.Generator, tie_band: float) -> list[int]:
    """Ranks (1 best) over the responses in the shown order."""
    k = len(u)
    if profile in ("random", "too_fast"):
        order = rng.permutation(k)
    elif profile == "position_biased" and rng.random() < 0.9:
        order = np.arange(k)
    else:
        beta = SHARPNESS.get(profile, SHARPNESS["careful"])
        order = np.argsort(-(beta * u + rng.gumbel(size=k)))
    ranks = [0] * k
    for rank, idx in enumerate(order.tolist(), start=1):
        ranks[idx] = rank
    if k == 2 and profile == "careful" and abs(u[0] - u[1]) < tie_band:
        ranks = [1, 1]
    return ranks


def campaign(
    groups: int = 200,
    k: int = 2,
    raters: int = 20,
    overlap: int = 3,
    mix: dict[str, float] | None = None,
    gold_rate: float = 0.05,
    seed: int = 0,
    tie_band: float = 0.05,
    with_scores: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Normalized records (judgments plus gold references) and the truth:
    ``{"utilities": {group_key: {response: u}}, "raters": {rater: profile}}``."""
    rng = np.random.default_rng(seed)
    profiles = _profiles(raters, mix or DEFAULT_MIX, rng)
    names = [f"r-{n:03d}" for n in range(raters)]
    records: list[dict[str, Any]] = []
    utilities: dict[str, dict[str, float]] = {}
    for g in range(groups):
        prompt = f"Question {g}: which answer is better?"
        responses = [f"Answer {c} to question {g}." for c in range(k)]
        u = rng.normal(size=k)
        key = group_key(prompt, responses)
        utilities[key] = {text: float(v) for text, v in zip(responses, u)}
        if rng.random() < gold_rate:
            true_ranks = [int(r) for r in (np.argsort(np.argsort(-u)) + 1)]
            records.append(_record(f"gold-{g}", prompt, responses, true_ranks, None, True, None, None))
        for r in rng.choice(raters, size=min(overlap, raters), replace=False).tolist():
            shown = rng.permutation(k)
            shown_u = u[shown]
            ranks = _judge(profiles[r], shown_u, rng, tie_band)
            fast = profiles[r] == "too_fast"
            time_s = float(rng.lognormal(math.log(3.0 if fast else 30.0), 0.3))
            scores = None
            if with_scores:
                noise = 0.3 if profiles[r] in ("careful", "position_biased") else 3.0
                scores = {
                    "helpfulness": [
                        float(np.clip(round(3 + v + rng.normal(0, noise)), 1, 5)) for v in shown_u
                    ]
                }
            records.append(
                _record(
                    f"j-{g}-{r}",
                    prompt,
                    [responses[i] for i in shown],
                    ranks,
                    names[r],
                    False,
                    time_s,
                    scores,
                )
            )
    truth = {"utilities": utilities, "raters": dict(zip(names, profiles))}
    return records, truth


def _record(
    rid: str,
    prompt: str,
    responses: list[str],
    ranks: list[int],
    rater: str | None,
    gold: bool,
    time_s: float | None,
    scores: dict | None,
) -> dict[str, Any]:
    rec = {
        "id": rid,
        "prompt": prompt,
        "responses": responses,
        "ranks": ranks,
        "rater": rater,
        "strength": None,
        "scores": scores,
        "gold": gold,
        "time_s": time_s,
        "meta": {"synthetic": True},
        "response_ids": None,
        "soft_pairs": None,
        "weight": 1.0,
        "raters": None,
        "agreement": None,
        "source": "synthetic",
    }
    rec["hash"] = content_hash(rec)
    return rec
