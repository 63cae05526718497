"""The documented real-model PPO run: SmolLM2-135M-Instruct tuned against a MiniLM-L6 reward model on CPU.

The two models use different tokenizers (a Llama-style BPE and BERT's WordPiece): the RM scores the decoded
answers with its own tokenizer and chat format, and the value model starts from the policy's backbone.

    python scripts/ppo_smollm.py [--out runs/smollm] [--steps 20] [--rm-epochs 2]

Steps: train the MiniLM RM on the bundled campaign (configs/rm/minilm.yaml), run PPO
(configs/ppo/smollm.yaml), then `eval policy` on the held-out prompts. Prints the RM score before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cli(*args: object) -> None:
    """One rewardlab command in this process."""
    from rewardlab.cli import app

    try:
        app([str(a) for a in args], standalone_mode=False)
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise RuntimeError(f"rewardlab {' '.join(map(str, args))} exited {stop.code}") from None


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/smollm")
    parser.add_argument("--steps", type=int, default=20, help="PPO rollout steps (16 episodes each)")
    parser.add_argument("--rm-epochs", type=float, default=2)
    parser.add_argument("--eval-prompts", type=int, default=24)
    parser.add_argument("--reuse-rm", action="store_true", help="keep an RM already trained in --out")
    args = parser.parse_args()
    out = Path(args.out)
    rm, ppo = out / "rm-minilm", out / "ppo-smollm"
    started = time.perf_counter()
    if not (args.reuse_rm and (rm / "model" / "config.json").exists()):
        cli("train", "rm", "configs/rm/minilm.yaml", f"output_dir={rm}", f"train.epochs={args.rm_epochs}",
            "train.save_every=null", "train.eval_every=null")  # fmt: skip
    rm_seconds = time.perf_counter() - started
    cli("train", "ppo", "configs/ppo/smollm.yaml", f"output_dir={ppo}", f"ppo.reward_model={rm / 'model'}",
        f"train.max_steps={args.steps}", "train.save_every=null")  # fmt: skip
    ppo_seconds = time.perf_counter() - started - rm_seconds
    cli(
        "eval",
        "policy",
        ppo,
        "--n",
        args.eval_prompts,
        "--samples-per-prompt",
        2,
        "--max-new-tokens",
        32,
        "--json",
    )
    metrics = json.loads((ppo / "metrics.json").read_text())
    rm_metrics = json.loads((rm / "metrics.json").read_text())
    report = {
        "rm_accuracy": rm_metrics.get("accuracy"),
        "rm_train_s": round(rm_seconds, 1),
        "ppo_train_s": round(ppo_seconds, 1),
        **{k: metrics.get(k) for k in (
            "steps", "train_rm_score_start", "train_rm_score_end", "train_kl_end", "episodes_per_s",
            "tokens_per_s", "generate_time_share", "rm_score_mean", "ref_rm_score_mean", "win_rate_vs_ref",
            "kl_to_ref", "truth_score_mean", "ref_truth_score_mean", "response_length_mean")},
    }  # fmt: skip
    for key, value in report.items():
        print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    return report


if __name__ == "__main__":
    main()
