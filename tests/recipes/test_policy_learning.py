"""Tests that guard learning, not only that numbers are finite.

- PPO: the first minibatch of each step sees the very policy that sampled, so its ratio is 1 and its
  approx-KL 0 (up to float rounding): sampling and scoring use the same distribution. Also under bf16
  autocast, and the adaptive KL controller moves beta toward its target.
- DPO raises the implicit reward margin on the pairs it trains on.
- GRPO, RLOO and rejection sampling raise the score of the RM they optimise (a fixed random tiny RM: a
  function of the text the policy can climb in a few steps).
- SFT and DPO run their bf16 autocast path on CPU.
"""

from __future__ import annotations

import pytest
from _policy_setup import DATA, ROOT, SHARED, read_jsonl, untrained_rm


def ppo_args(run, rm, *extra):  # noqa: ANN001, ANN202
    return [
        "train", "ppo", str(ROOT / "configs/ppo/tiny.yaml"), f"data.train={DATA}", f"output_dir={run}",
        "model.name_or_path=offline:tiny-llama", f"ppo.reward_model={rm}", "ppo.rollout_batch_size=8",
        "ppo.mini_batch_size=4", "ppo.ppo_epochs=2", "ppo.max_new_tokens=10", "train.max_steps=2", *extra,
    ]  # fmt: skip


def test_ppo_first_minibatch_is_on_policy_and_adaptive_kl_moves_toward_target(cli, tmp_path):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    res = cli(*ppo_args(tmp_path / "ppo", rm, "ppo.adaptive_kl=true", "ppo.kl_target=1000",
                        "ppo.kl_horizon=100", "train.lr=1e-3"), "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    # measured: exactly 0.0 for both (the rollout and the update run the same forward on the same rows)
    assert out["first_minibatch_ratio_max_dev"] < 1e-4
    assert out["first_minibatch_approx_kl_max"] < 1e-8
    rows = read_jsonl(tmp_path / "ppo" / "metrics.jsonl")
    assert rows[-1]["policy/approx_kl"] > 10 * out["first_minibatch_approx_kl_max"]  # later minibatches moved
    # observed KL far below the target: beta shrinks, 8 episodes / horizon 100 * -0.2 per step
    assert out["kl_coef"] == pytest.approx(0.05 * (1 - 0.2 * 8 / 100) ** 2, rel=1e-6)


def test_ppo_bf16_autocast_stays_on_policy(cli, tmp_path):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    res = cli(*ppo_args(tmp_path / "ppo", rm, "train.bf16=true", "train.max_steps=1"), "--json")
    assert res.exit_code == 0, res
    out = res.json()
    assert out["first_minibatch_ratio_max_dev"] < 1e-2  # bf16 rollout and update forward passes agree
    assert (tmp_path / "ppo" / "model" / "model.safetensors").exists()


def test_dpo_raises_the_implicit_reward_margin_on_its_pairs(cli, tmp_path):
    from rewardlab.data.dataset import iter_records, load_dataset, write_dataset

    pairs = tmp_path / "pairs"  # 12 rankings of the bundled campaign: 27 untied pairs
    write_dataset(list(iter_records(load_dataset(DATA)))[:12], pairs)
    run = tmp_path / "dpo"
    # eval on the training pairs themselves: before training the margin is exactly 0 (policy == reference)
    res = cli("train", "dpo", ROOT / "configs/dpo/tiny.yaml", f"data.train={pairs}", f"data.eval={pairs}",
              f"output_dir={run}", "model.name_or_path=offline:tiny-llama", "train.epochs=4",
              "train.batch_size=8", "dpo.soft_labels=none", "train.bf16=true", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    # measured (seed 0): margin 0.75, accuracy 0.84, eval loss 0.693 -> 0.504 after 16 steps
    assert out["eval_rewards/margins"] > MIN_GAIN["dpo_margin"]
    assert out["eval_rewards/accuracies"] > MIN_GAIN["dpo_accuracy"]


def test_sft_bf16_autocast_learns(cli, tmp_path):
    run = tmp_path / "sft"
    res = cli("train", "sft", ROOT / "configs/sft/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "train.max_steps=6", "train.bf16=true", "train.log_every=1", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    losses = [r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0] - 0.3  # measured (seed 0): 7.63 -> 6.92 over 6 steps


def fixed_rm():  # noqa: ANN201
    """The tiny RM with a seeded random head (the same scorer in every process): a fixed function of the
    text for the policy to climb. (``untrained_rm``'s head is random per process: fine for mechanics only.)"""
    import torch

    from rewardlab import models

    out = SHARED / "rm-fixed" / "model"
    if not (out / "config.json").exists():
        torch.manual_seed(1234)
        model = models.build_reward_model("offline:tiny-rm")
        model.config.reward_mean, model.config.reward_std = 0.0, 1.0
        models.save_model(model, models.load_tokenizer("offline:tiny-rm"), out)
    return out


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_online_trainers_raise_the_rm_score(cli, tmp_path, stage):
    rm = fixed_rm()
    run = tmp_path / stage
    res = cli("train", stage, ROOT / f"configs/{stage}/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "model.name_or_path=offline:tiny-llama", f"online.reward_model={rm}", "train.max_steps=8",
              "train.batch_size=16", "online.max_completion_length=12", "train.lr=1e-3", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    # mean RM score of the first 3 vs the last 3 steps' samples (16 each). Measured (seed 0, 8 steps):
    # grpo 0.1015 -> 0.1194, rloo 0.1017 -> 0.1202; the step means scatter by ~0.02, so this guards the
    # direction of learning, not its size
    assert out["train_rm_score_end"] > out["train_rm_score_start"] + MIN_GAIN[stage], out


def test_rejection_sampling_raises_the_rm_score(cli, tmp_path):
    rm = fixed_rm()
    run = tmp_path / "rs"
    res = cli("train", "rs", ROOT / "configs/rs/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "model.name_or_path=offline:tiny-llama", f"rs.reward_model={rm}", "rs.rounds=2",
              "rs.max_new_tokens=12", "train.lr=1e-3", "train.epochs=4", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    # the policy's own answers on the same 64 prompts and seeds (256 answers), before and after two rounds.
    # No answer stops within 12 tokens, so every kept answer is a cut one, trained without an end token.
    # Measured (seed 0, 2026-12-01): 0.1033 -> 0.1128 (4 epochs per round; 2 epochs: 0.1068, 2 epochs at
    # lr 2e-3: 0.1126). The random tiny policy learns little; selection does its part
    # Re-measured 2026-12-07 on current code (shared 2-core CPU, 1 thread, this test's run with train.seed):
    # gain end - start at epochs 2 / 4: seed 0 +0.0035 / +0.0095, seed 1 +0.0047 / +0.0088, seed 3 +0.0011 /
    # +0.0072, seed 4 +0.0027 / +0.0082 (seed 2 not finished). 2 epochs would fail 0.005 on all four seeds;
    # 4 epochs passes every seed with >= 0.0022 margin (worst 0.0072), so epochs 4 / threshold 0.005 stay.
    assert out["train_rm_score_end"] > out["train_rm_score_start"] + MIN_GAIN["rs"], out


MIN_GAIN = {
    "grpo": 0.005,
    "rloo": 0.005,
    "rs": 0.005,
    "dpo_margin": 0.3,
    "dpo_accuracy": 0.65,
}  # set from measured runs (see the comments above)
