"""The RM recipe learns: held-out accuracy above a baseline by a margin measured beforehand (real CLI).

- simulated campaign (careful raters, K=2), tiny random RM: well above chance on held-out prompts;
- real human pairs (512 of Anthropic HH-RLHF helpful-base, tests/data/), all-MiniLM-L6-v2 with the shipped
  config: above the "shorter answer wins" rule and chance on its own held-out part.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from rewardlab.data.dataset import write_dataset

SLICE = Path(__file__).resolve().parents[1] / "data" / "hh-rlhf-helpful-base-slice.jsonl.gz"


def simulated(out: Path, n_train: int, n_eval: int) -> tuple[Path, Path]:
    from rewardlab.config import SimulateConfig
    from rewardlab.data.simulate import simulate_campaign

    careful = {"careful": 1.0, "noisy": 0.0, "random": 0.0, "position_biased": 0.0, "too_fast": 0.0}
    cfg = SimulateConfig(
        prompts=n_train + n_eval,
        k=2,
        overlap=1,
        raters=8,
        gold_rate=0.0,
        tie_epsilon=0.0,
        seed=0,
        mix=careful,
    )
    records = [r for r in simulate_campaign(cfg)[0] if not r.get("gold")]
    write_dataset(records[:n_train], out / "train")
    write_dataset(records[n_train : n_train + n_eval], out / "eval")
    return out / "train", out / "eval"


def test_rm_beats_chance_on_held_out_simulated_prompts(tmp_path, cli):
    train, held = simulated(tmp_path, 384, 400)
    res = cli(
        "train", "rm", "configs/rm/tiny.yaml", f"data.train={train}", f"data.eval={held}", "heads=[overall]",
        f"output_dir={tmp_path / 'run'}", "train.epochs=2", "train.lr=1e-3", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    metrics = res.json()
    assert metrics["n_pairs"] == 400
    print(f"held-out accuracy {metrics['accuracy']:.3f} (chance 0.5)")
    # Measured (2026-11-30, seeds 0): 0.70 held-out accuracy (scripts/bench_rm.py: 0.69-0.71 over 3 seeds);
    # chance is 0.5. 0.60 leaves room for platform noise and still fails a recipe that stopped learning.
    assert metrics["accuracy"] > 0.60


def hh_pairs() -> list[dict]:
    """512 HH-RLHF pairs, committed so the test runs on a fresh checkout (tests/data/README.md)."""
    with gzip.open(SLICE, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def shorter_wins(rows: list[dict]) -> float:
    from rewardlab.data.formats.hh_rlhf import split

    hits = 0.0
    for row in rows:
        _, chosen, rejected = split(row["chosen"], row["rejected"])
        hits += 1.0 if len(chosen) < len(rejected) else 0.5 if len(chosen) == len(rejected) else 0.0
    return hits / len(rows)


def length_balanced(rows: list[dict]) -> list[int]:
    """Indices of an equal number of pairs whose chosen answer is the longer and the shorter one (the first
    of each, in order; equal lengths left out): on them every length-only rule scores exactly 0.5."""
    from rewardlab.data.formats.hh_rlhf import split

    longer, shorter = [], []
    for i, row in enumerate(rows):
        _, chosen, rejected = split(row["chosen"], row["rejected"])
        if len(chosen) != len(rejected):
            (longer if len(chosen) > len(rejected) else shorter).append(i)
    k = min(len(longer), len(shorter))
    return longer[:k] + shorter[:k]


def balanced_accuracy(run: Path, rows: list[dict], keep: list[int]) -> tuple[float, float, float]:
    """The saved RM's accuracy on ``keep`` and both length rules' (longer wins, shorter wins) on them."""
    from rewardlab.data.formats.hh_rlhf import split
    from rewardlab.scoring import RewardScorer

    parts = [split(rows[i]["chosen"], rows[i]["rejected"]) for i in keep]
    scores = RewardScorer.from_path(run, device="cpu").score(
        [p for p, _, _ in parts] * 2, [c for _, c, _ in parts] + [r for _, _, r in parts]
    )[:, 0]
    n = len(parts)
    hits = [
        1.0 if scores[i] > scores[n + i] else 0.5 if scores[i] == scores[n + i] else 0.0 for i in range(n)
    ]
    longer = sum(len(c) > len(r) for _, c, r in parts) / n
    return sum(hits) / n, longer, sum(len(c) < len(r) for _, c, r in parts) / n


def test_minilm_learns_real_human_preferences(tmp_path, cli):
    rows = hh_pairs()
    train, held = rows[:N_TRAIN], rows[N_TRAIN : N_TRAIN + N_EVAL]
    for name, part in (("train", train), ("eval", held)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    res = cli(
        "train", "rm", "configs/rm/minilm.yaml", f"data.train={tmp_path / 'train.jsonl'}",
        f"data.eval={tmp_path / 'eval.jsonl'}", f"output_dir={tmp_path / 'run'}", f"data.max_length={MAX_LEN}",
        f"train.lr={LR}", "stats_max_responses=128", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    metrics = res.json()
    rule = shorter_wins(held)
    assert metrics["n_pairs"] == N_EVAL
    print(f"held-out accuracy {metrics['accuracy']:.3f}; shorter answer wins {rule:.3f}")
    # Measured 2026-11-30 (this slice and seed): 0.578 held-out accuracy with whole prompts, 0.613 with the
    # shipped max_prompt_length 64; "shorter answer wins" 0.359 on the
    # same pairs, chance 0.5 ("longer answer wins", ~0.64 here, is NOT reached by so small a run). It took 95 s
    # of one CPU thread in all, pytest start-up included (the machine was too busy to time it idle). The bar:
    # clearly above the shorter-answer rule and above chance, ~1.5 standard errors under the measurement.
    assert metrics["accuracy"] > max(rule + 0.1, 0.53)
    # "longer answer wins" scores ~0.64 on all 256 held-out pairs, above the model, so the bar that guards
    # learning is set on the length-balanced subset, where any length-only model scores 0.5.
    keep = length_balanced(held)
    acc, longer, shorter = balanced_accuracy(tmp_path / "run", held, keep)
    print(f"length-balanced subset ({len(keep)} pairs): accuracy {acc:.3f}; length rules {longer}, {shorter}")
    assert longer == shorter == 0.5 < BALANCED_BAR  # a length-only scorer falls under the bar
    # Measured 2026-12-07 (shared 2-core CPU, 1 thread, /tmp measurement script beside this test's settings,
    # train.seed 0, 1, 2): 184 balanced pairs, accuracy 0.533, 0.554, 0.522 (mean 0.536, sd 0.016; all 256
    # pairs 0.602, 0.629, 0.613 by this scorer, 0.613, 0.609, 0.598 by the recipe's eval). The bar, 0.51, is
    # under the worst seed and above 0.5, where every length-only rule lands: a weak learner passes,
    # a length-only one cannot (the test runs seed 0).
    assert acc > BALANCED_BAR


# one slice, measured once (no search for a smaller one: the machine was too busy): 256 train pairs, 256
# held out, prompts cut from the left at 128 tokens, lr 1e-4, the shipped config otherwise (1 epoch)
N_TRAIN, N_EVAL, MAX_LEN, LR = 256, 256, 128, 1e-4
BALANCED_BAR = 0.51
