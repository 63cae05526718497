"""`rewardlab train ppo`: logged signals, value-model initialisation, exact resume, bad batch sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _policy_setup import DATA, ROOT, read_jsonl, untrained_rm
from safetensors.torch import load_file

CONFIG = ROOT / "configs/ppo/tiny.yaml"
LOGGED = {
    "reward/rm_score_mean", "reward/rm_score_std", "objective/kl", "objective/kl_coef", "policy/entropy",
    "policy/clipfrac", "policy/approx_kl", "value/loss", "value/explained_variance", "response_length",
    "time/generate_share", "time/episodes_per_s", "time/tokens_per_s",
}  # fmt: skip


def ppo_args(run: Path, rm: Path, *extra: str) -> list[str]:
    return [
        "train", "ppo", str(CONFIG), f"data.train={DATA}", f"output_dir={run}", "model.name_or_path=offline:tiny-llama",
        f"ppo.reward_model={rm}", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=4", "ppo.ppo_epochs=2",
        "ppo.max_new_tokens=10", "train.log_every=1", *extra,
    ]  # fmt: skip


def test_ppo_logs_signals_with_adaptive_k3_kl(cli, tmp_path):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    run = tmp_path / "ppo"
    res = cli(*ppo_args(run, rm, "train.max_steps=2", "ppo.adaptive_kl=true", "ppo.kl_estimator=k3",
                        "ppo.kl_horizon=100", "train.grad_accum=2"), "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    assert out["steps"] == 2
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert set(row) >= LOGGED, LOGGED - set(row)
        assert row["objective/kl"] >= 0.0  # k3 is never negative
        assert 0.0 <= row["time/generate_share"] <= 1.0
        assert 1 <= row["response_length"] <= 10
    assert rows[0]["objective/kl_coef"] == pytest.approx(0.05)  # logged before the controller's first update
    assert out["kl_coef"] != pytest.approx(0.05, abs=1e-9)  # adapted towards the target
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["value_model"] == str(rm)  # same tokenizer: the value model starts from the RM
    assert manifest["reference_model"] == "offline:tiny-llama"
    assert (run / "model" / "model.safetensors").exists()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2


def test_ppo_resume_continues_exactly(cli, tmp_path):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    common = ["train.lr_scheduler=constant", "train.seed=3"]
    straight = tmp_path / "straight"
    assert cli(*ppo_args(straight, rm, "train.max_steps=3", *common)).exit_code == 0
    split = tmp_path / "split"
    res = cli(*ppo_args(split, rm, "train.max_steps=2", "train.save_every=2", *common))
    assert res.exit_code == 0, res
    assert (split / "checkpoints" / "step-00000002" / "COMPLETE").exists()
    res = cli(*ppo_args(split, rm, "train.max_steps=3", "train.save_every=2", "train.resume=true", *common))
    assert res.exit_code == 0, res
    assert "resumed from step-00000002" in res.stderr
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(split / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    steps = [r["step"] for r in read_jsonl(split / "metrics.jsonl")]
    assert steps == [1, 2, 3]


def test_value_model_starts_from_the_policy_when_the_rm_tokenizer_differs(cli, tmp_path):
    rm = untrained_rm("rm-minilm", "offline:minilm-l6")  # BERT tokenizer, unlike the tiny Llama policy
    run = tmp_path / "ppo"
    res = cli(
        *ppo_args(run, rm, "train.max_steps=1", "model.lora={r: 4, alpha: 8}"), "--json"
    )  # and a LoRA policy
    assert res.exit_code == 0, res
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["value_model"] == "offline:tiny-llama"
    assert (run / "model" / "model.safetensors").exists()  # LoRA merged into a plain folder
    assert not (run / "model" / "adapter_config.json").exists()
    assert any("another tokenizer" in note for note in manifest["notes"])
    assert res.json()["steps"] == 1


def test_bad_batch_sizes_fail_before_loading_anything(cli, tmp_path):
    res = cli(
        *ppo_args(tmp_path / "x", tmp_path / "no-rm", "ppo.rollout_batch_size=6", "ppo.mini_batch_size=4")
    )
    assert res.exit_code == 2
    assert "ppo.rollout_batch_size (6) must be a multiple of ppo.mini_batch_size (4)" in res.stderr


@pytest.mark.parametrize("setting", ["ppo.top_k=50", "ppo.top_p=0.9"])
def test_truncated_sampling_is_refused(cli, tmp_path, setting):
    """PPO's log-probs are softmax(logits / temperature): a top-k/top-p sampler would be off-policy."""
    res = cli(*ppo_args(tmp_path / "x", tmp_path / "no-rm", setting))
    assert res.exit_code == 2
    assert "off-policy" in res.stderr and "ppo.top_k" in res.stderr
