"""The loop moves the policy the right way: DPO and PPO from a tiny SFT policy, judged by the ground truth.

On the bundled simulated campaign: the tiny RM and the tiny SFT policy (shared runs), then DPO on the ranked
pairs and PPO against the RM, both starting from the SFT policy. `eval policy` compares each with the SFT
policy on the held-out prompts (the campaign's eval split: prompts no stage trained on), same seed. The
assertions are loose on purpose (tiny models, few steps): truth scores must not drop by more than a small
tolerance, and PPO must raise the RM score it optimizes. scripts/policy_evidence.py runs the full-size
version of this experiment (numbers in the README, section policy).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _policy_setup import DATA, ROOT, SHARED, check, sft_policy, trained_rm
from conftest import run_cli

TOLERANCE = 0.02


def evaluate(run: Path) -> dict:
    res = run_cli("eval", "policy", run, "--reward-model", trained_rm(), "--samples-per-prompt", "4",
                  "--max-new-tokens", "32", "--json")  # fmt: skip
    check(res)
    return res.json()


@pytest.fixture(scope="module")
def sft_eval() -> dict:
    return evaluate(sft_policy().parent)


def test_sft_policy_beats_the_random_base_model(sft_eval):
    assert sft_eval["eval_reference"] == "offline:tiny-llama"
    assert sft_eval["truth_score_mean"] > sft_eval["ref_truth_score_mean"] + 0.03
    assert sft_eval["response_length_mean"] < sft_eval["ref_response_length_mean"]  # it learned to stop


def test_ppo_raises_rm_score_and_keeps_truth(sft_eval):
    run = SHARED / "evidence-ppo"
    check(run_cli("train", "ppo", ROOT / "configs/ppo/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
                  f"model.name_or_path={sft_policy()}", f"ppo.reward_model={trained_rm()}", "train.max_steps=30"))  # fmt: skip
    out = evaluate(run)
    assert out["rm_score_mean"] > out["ref_rm_score_mean"]
    assert out["win_rate_vs_ref"] > 0.5
    assert out["ref_truth_score_mean"] == pytest.approx(sft_eval["truth_score_mean"], abs=0.05)
    assert out["truth_score_mean"] >= out["ref_truth_score_mean"] - TOLERANCE


def test_dpo_keeps_or_raises_truth(sft_eval):
    run = SHARED / "evidence-dpo"
    check(run_cli("train", "dpo", ROOT / "configs/dpo/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
                  f"model.name_or_path={sft_policy()}"))  # fmt: skip
    out = evaluate(run)
    assert out["kl_to_ref"] > 0.1  # it moved
    assert out["truth_score_mean"] >= out["ref_truth_score_mean"] - TOLERANCE
