"""`rewardlab train grpo|rloo`: TRL's trainers with our RM as the reward function, a couple of steps each."""

from __future__ import annotations

import json

import pytest
from _policy_setup import DATA, ROOT, read_jsonl, untrained_rm


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_online_trainer_runs_with_our_rm(cli, tmp_path, stage):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    run = tmp_path / stage
    res = cli("train", stage, ROOT / f"configs/{stage}/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "model.name_or_path=offline:tiny-llama", f"online.reward_model={rm}", "train.max_steps=2",
              "train.batch_size=8", "online.num_generations=4", "online.max_completion_length=8", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    assert out["steps"] == 2
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "reward" in r]
    assert rows, "the RM reward is logged through our tracker"
    assert all(isinstance(r["reward"], float) for r in rows)
    assert (run / "model" / "model.safetensors").exists()
    assert json.loads((run / "manifest.json").read_text())["reward_model"] == str(rm)


def test_batch_must_hold_whole_groups(cli, tmp_path):
    res = cli("train", "rloo", ROOT / "configs/rloo/tiny.yaml", f"output_dir={tmp_path / 'x'}",
              "train.batch_size=6", "online.num_generations=4")  # fmt: skip
    assert res.exit_code == 2
    assert "multiple of online.num_generations" in res.stderr
