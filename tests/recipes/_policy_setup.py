"""Runs the policy recipe tests share: a trained tiny RM and a tiny SFT policy, built once per test process.

Each is made through the real CLI (in-process) into one temporary folder removed at exit, so the policy
tests pay for the RM and SFT training once, whichever of them runs first.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "sample"
SHARED = Path(tempfile.mkdtemp(prefix="rewardlab-policy-tests-"))
atexit.register(shutil.rmtree, SHARED, ignore_errors=True)


def check(result) -> None:  # noqa: ANN001 - CLIResult
    assert result.exit_code == 0, repr(result)


@functools.cache
def trained_rm() -> Path:
    """The tiny RM trained on the bundled campaign (configs/rm/tiny.yaml, 3 epochs): its model folder."""
    out = SHARED / "rm"
    check(run_cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"data.train={DATA}", f"output_dir={out}",
                  "train.epochs=3"))  # fmt: skip
    return out / "model"


@functools.cache
def sft_policy() -> Path:
    """The tiny SFT policy (configs/sft/tiny.yaml, 30 epochs of the campaign's best answers): its model folder."""
    out = SHARED / "sft"
    check(run_cli("train", "sft", ROOT / "configs/sft/tiny.yaml", f"data.train={DATA}", f"output_dir={out}",
                  "train.epochs=30", "train.log_every=50"))  # fmt: skip
    return out / "model"


def untrained_rm(name: str, source: str) -> Path:
    """A reward model with an untrained head (enough for the mechanics), saved once per test process."""
    from rewardlab import models

    out = SHARED / name / "model"
    if not (out / "config.json").exists():
        model = models.build_reward_model(source)
        model.config.reward_mean, model.config.reward_std = 0.1, 2.0
        models.save_model(model, models.load_tokenizer(source), out)
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# RM metrics that measure time (or where a run resumed): they differ between otherwise identical runs.
RM_TIMING_KEYS = {
    "rankings_per_s",
    "sequences_per_s",
    "tokens_per_s",
    "train_time_s",
    "post_train_s",
    "resumed_from_step",
}
