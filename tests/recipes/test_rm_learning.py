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


# one slice, measured once (no search for a smaller one: the machine was too busy): 256 train pairs, 256
# held out, prompts cut from the left at 128 tokens, lr 1e-4, the shipped config otherwise (1 epoch)
N_TRAIN, N_EVAL, MAX_LEN, LR = 256, 256, 128, 1e-4
