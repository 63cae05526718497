"""Policy-tuning speed against TRL in the same run, one subprocess per measurement (same threads, same data).

DPO: `rewardlab train dpo` is TRL's DPOTrainer with our defaults; the one that matters for speed is
`precompute_ref_log_probs=True` (the reference's log-probs are computed once, in one pass before training,
so a training step runs one model instead of two and the reference leaves memory). TRL's default computes
the reference forward inside every step. Both see the same pairs, batch size, max length and CPU flags
(bf16 off, gradient checkpointing off, no pinned memory). `step_s` is the training loop per step;
`total_s` adds the trainer's setup, so for us it includes the precompute pass.

PPO vs RLOO: our PPO and TRL's RLOOTrainer from the same policy, with the same RM (as a reward function on
decoded text), the same prompts, 16 episodes per step and the same response length limit. `gen_share` is
the share of wall time spent in `model.generate`. PPO also trains a value model and takes
ppo_epochs x minibatches optimizer steps per batch (RLOO: one), so a 1-epoch PPO row is shown too.

    python scripts/bench_policy.py                                  # tiny models (~2 min)
    python scripts/bench_policy.py --model offline:smollm2-135m-instruct --rm-source offline:minilm-l6 \
        --dpo-pairs 96 --ppo-steps 4                                # real small models (~10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "sample"


# ---------------------------------------------------------------- workers (each runs in its own process)


def dpo_rows(n_pairs: int) -> list[dict]:
    from rewardlab.data.dataset import iter_records, load_dataset, split_by_prompt
    from rewardlab.recipes.dpo import build_pairs

    train, _ = split_by_prompt(load_dataset(DATA), 0.1, 0)
    rows, _ = build_pairs(list(iter_records(train)), "all", "none")
    return rows[:n_pairs]


def worker_dpo(args: argparse.Namespace, ours: bool) -> dict:
    """One DPO run; ours goes through the real CLI, TRL's default through DPOTrainer directly."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from rewardlab import models

    rows = dpo_rows(args.dpo_pairs)
    steps = max(1, len(rows) // args.batch)
    started = time.perf_counter()
    if ours:
        from rewardlab.cli import app

        subset = Path(args.work) / "pairs-data"
        _write_subset_dataset(subset, args.dpo_pairs)
        out = Path(args.work) / "dpo-ours"
        app(["train", "dpo", str(ROOT / "configs/dpo/tiny.yaml"), f"data.train={subset}", "data.eval_fraction=0",
             f"output_dir={out}", f"model.name_or_path={args.model}", f"train.max_steps={steps}",
             f"train.batch_size={args.batch}", "train.log_every=1000", "dpo.soft_labels=none"], standalone_mode=False)  # fmt: skip
        runtime = [
            json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "train_runtime" in x
        ][-1]
        return {
            "steps": steps,
            "step_s": runtime["train_runtime"] / steps,
            "total_s": time.perf_counter() - started,
        }
    tokenizer = models.load_tokenizer(args.model)
    model = models.build_policy(args.model)
    cfg = DPOConfig(
        output_dir=str(Path(args.work) / "dpo-trl"), max_steps=steps, per_device_train_batch_size=args.batch,
        learning_rate=5e-4, max_length=256, bf16=False, gradient_checkpointing=False, dataloader_pin_memory=False,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=1000, seed=0,
    )  # fmt: skip
    trainer = DPOTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    result = trainer.train()
    return {
        "steps": steps,
        "step_s": result.metrics["train_runtime"] / steps,
        "total_s": time.perf_counter() - started,
    }


def _write_subset_dataset(out: Path, n_pairs: int) -> None:
    """The records whose pairs make up the first n_pairs rows (so both DPO runs see the same pairs)."""
    from rewardlab.data.dataset import iter_records, load_dataset, split_by_prompt, write_dataset
    from rewardlab.recipes.dpo import build_pairs

    train, _ = split_by_prompt(load_dataset(DATA), 0.1, 0)
    kept, count = [], 0
    for rec in iter_records(train):
        if count >= n_pairs:
            break
        kept.append(rec)
        count += build_pairs([rec], "all", "none")[1]["pairs"]
    write_dataset(kept, out)


def timed_generate(model: object, clock: dict) -> None:
    """Wrap model.generate to add its wall time to clock['generate']."""
    inner = model.generate

    def generate(*a, **k):  # noqa: ANN002, ANN003, ANN202
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            clock["generate"] += time.perf_counter() - t

    model.generate = generate


def worker_ppo(args: argparse.Namespace, epochs: int) -> dict:
    from rewardlab.cli import app

    out = Path(args.work) / f"ppo-{epochs}"
    started = time.perf_counter()
    app(["train", "ppo", str(ROOT / "configs/ppo/tiny.yaml"), f"data.train={DATA}", f"output_dir={out}",
         f"model.name_or_path={args.model}", f"ppo.reward_model={args.rm}", f"train.max_steps={args.ppo_steps}",
         "ppo.rollout_batch_size=16", "ppo.mini_batch_size=8", f"ppo.ppo_epochs={epochs}",
         f"ppo.max_new_tokens={args.max_new_tokens}"], standalone_mode=False)  # fmt: skip
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][
        1:
    ]  # first step: warm-up
    seconds = sum(r["time/step_s"] for r in rows)
    return {
        "steps": len(rows),
        "episodes_per_s": 16 * len(rows) / seconds,
        "tokens_per_s": sum(r["time/tokens_per_s"] * r["time/step_s"] for r in rows) / seconds,
        "gen_share": sum(r["time/generate_share"] * r["time/step_s"] for r in rows) / seconds,
        "mean_length": sum(r["response_length"] for r in rows) / len(rows),
        "total_s": time.perf_counter() - started,
    }


def worker_rloo(args: argparse.Namespace) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from rewardlab import models
    from rewardlab.data.dataset import iter_records, load_dataset, split_by_prompt
    from rewardlab.recipes.online import RewardModelFunction
    from rewardlab.recipes.policy_common import as_messages, unique_prompts
    from rewardlab.scoring import RewardScorer

    train, _ = split_by_prompt(load_dataset(DATA), 0.1, 0)
    prompts = [{"prompt": as_messages(p["prompt"])} for p in unique_prompts(list(iter_records(train)))]
    model = models.build_policy(args.model)
    clock = {"generate": 0.0}
    timed_generate(model, clock)
    step_marks: list[tuple[float, float]] = []

    class Marks(TrainerCallback):
        def on_step_end(self, a, state, control, **k):  # noqa: ANN001, ANN003, ANN201
            step_marks.append((time.perf_counter(), clock["generate"]))

    cfg = RLOOConfig(
        output_dir=str(Path(args.work) / "rloo"), max_steps=args.ppo_steps + 1, per_device_train_batch_size=16,
        num_generations=4, max_completion_length=args.max_new_tokens, learning_rate=3e-4, beta=0.05, top_k=0,
        bf16=False, gradient_checkpointing=False, dataloader_pin_memory=False, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=1, seed=0,
    )  # fmt: skip
    trainer = RLOOTrainer(
        model=model, reward_funcs=[RewardModelFunction(RewardScorer.from_path(args.rm))], args=cfg,
        train_dataset=Dataset.from_list(prompts), processing_class=models.load_tokenizer(args.model),
        callbacks=[Marks()],
    )  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    (t0, g0), (t1, g1) = step_marks[0], step_marks[-1]  # from the end of the warm-up step
    lengths = [
        r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r
    ][1:]
    n = len(step_marks) - 1
    return {
        "steps": n,
        "episodes_per_s": 16 * n / (t1 - t0),
        "tokens_per_s": 16 * sum(lengths) / (t1 - t0),
        "gen_share": (g1 - g0) / (t1 - t0),
        "mean_length": sum(lengths) / max(len(lengths), 1),
        "total_s": time.perf_counter() - started,
    }


# ---------------------------------------------------------------- driver


def run_worker(args: argparse.Namespace, name: str) -> dict:
    result = Path(args.work) / f"{name}.json"
    cmd = [sys.executable, __file__, "--worker", name, "--result", str(result), "--work", args.work,
           "--model", args.model, "--rm", args.rm, "--dpo-pairs", str(args.dpo_pairs), "--batch", str(args.batch),
           "--ppo-steps", str(args.ppo_steps), "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


def make_rm(source: str, out: Path) -> str:
    """An RM with an untrained head: its speed is all that matters here."""
    from rewardlab import models

    model = models.build_reward_model(source)
    model.config.reward_mean, model.config.reward_std = 0.0, 1.0
    models.save_model(model, models.load_tokenizer(source), out)
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="offline:tiny-llama")
    parser.add_argument("--rm-source", default="offline:tiny-rm")
    parser.add_argument("--rm", default="")
    parser.add_argument("--dpo-pairs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--ppo-steps", type=int, default=6, help="measured steps (one more warm-up step runs)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per worker (0: torch's default)"
    )
    parser.add_argument("--work", default="")
    parser.add_argument("--worker", default="")
    parser.add_argument("--result", default="")
    args = parser.parse_args()
    if args.worker:
        if args.worker in ("dpo-ours", "dpo-trl"):
            out = worker_dpo(args, ours=args.worker == "dpo-ours")
        elif args.worker.startswith("ppo-"):
            out = worker_ppo(args, epochs=int(args.worker.split("-")[1]))
        else:
            out = worker_rloo(args)
        Path(args.result).write_text(json.dumps(out))
        return
    args.work = args.work or tempfile.mkdtemp(prefix="bench-policy-")
    args.rm = args.rm or make_rm(args.rm_source, Path(args.work) / "rm")
    threads = args.threads or "default"
    print(
        f"model {args.model}, RM {args.rm_source}, {os.cpu_count()} CPUs, torch threads per worker: {threads}"
    )
    dpo = {name: run_worker(args, name) for name in ("dpo-ours", "dpo-trl")}
    print(f"\nDPO, {dpo['dpo-ours']['steps']} steps of {args.batch} pairs")
    print(f"{'':34s} {'step_s':>8} {'total_s':>8}")
    print(
        f"{'rewardlab (TRL + precomputed ref)':34s} {dpo['dpo-ours']['step_s']:8.3f} {dpo['dpo-ours']['total_s']:8.1f}"
    )
    print(f"{'TRL DPOTrainer defaults':34s} {dpo['dpo-trl']['step_s']:8.3f} {dpo['dpo-trl']['total_s']:8.1f}")
    print(f"{'ratio TRL / rewardlab':34s} {dpo['dpo-trl']['step_s'] / dpo['dpo-ours']['step_s']:8.2f} "
          f"{dpo['dpo-trl']['total_s'] / dpo['dpo-ours']['total_s']:8.2f}")  # fmt: skip
    rl = {name: run_worker(args, name) for name in ("ppo-4", "ppo-1", "rloo")}
    print(
        f"\nOn-policy RL, 16 episodes per step, {args.ppo_steps} measured steps, max {args.max_new_tokens} new tokens"
    )
    print(f"{'':26s} {'episodes/s':>10} {'tokens/s':>9} {'gen_share':>9} {'mean_len':>8} {'vs RLOO':>8}")
    labels = {
        "ppo-4": "rewardlab PPO (4 epochs)",
        "ppo-1": "rewardlab PPO (1 epoch)",
        "rloo": "TRL RLOOTrainer",
    }
    for name, row in rl.items():
        ratio = row["episodes_per_s"] / rl["rloo"]["episodes_per_s"]
        print(f"{labels[name]:26s} {row['episodes_per_s']:10.2f} {row['tokens_per_s']:9.1f} {row['gen_share']:9.2f} "
              f"{row['mean_length']:8.1f} {ratio:8.2f}")  # fmt: skip
    Path(args.work, "bench_policy.json").write_text(json.dumps({"dpo": dpo, "rl": rl}, indent=2))
    print(f"\n(results in {args.work}/bench_policy.json)")


if __name__ == "__main__":
    main()
