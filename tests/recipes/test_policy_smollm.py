"""The real-model PPO run (slow, opt-in): SmolLM2-135M-Instruct against a MiniLM-L6 RM, different tokenizers.

A short version of scripts/ppo_smollm.py: the MiniLM RM trained for one epoch on the bundled campaign, PPO
for a few steps, then `eval policy`. PPO must complete on CPU and raise the RM score over the starting model.
"""

from __future__ import annotations

import json

import pytest
from _policy_setup import DATA, ROOT, check
from conftest import run_cli


@pytest.mark.slow
def test_smollm_ppo_against_minilm_rm_raises_the_rm_score(tmp_path):
    rm = tmp_path / "rm-minilm"
    check(run_cli("train", "rm", ROOT / "configs/rm/minilm.yaml", f"data.train={DATA}", f"output_dir={rm}",
                  "train.epochs=1", "train.save_every=null", "train.eval_every=null"))  # fmt: skip
    run = tmp_path / "ppo-smollm"
    check(run_cli("train", "ppo", ROOT / "configs/ppo/smollm.yaml", f"data.train={DATA}", f"output_dir={run}",
                  f"ppo.reward_model={rm / 'model'}", "train.max_steps=12", "train.save_every=null"))  # fmt: skip
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["value_model"] == "offline:smollm2-135m-instruct"  # BERT RM: value from the policy
    res = run_cli(
        "eval", "policy", run, "--n", "8", "--samples-per-prompt", "2", "--max-new-tokens", "32", "--json"
    )
    check(res)
    out = res.json()
    assert out["rm_score_mean"] > out["ref_rm_score_mean"]
    assert out["kl_to_ref"] > 0.0
