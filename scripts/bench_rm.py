"""Benchmark: rewardlab's reward-model trainer against TRL's RewardTrainer, same run, same model, same data.

    python scripts/bench_rm.py                       # tiny + minilm, K=2 and K=4
    python scripts/bench_rm.py --models tiny --ks 4  # one cell

Data: simulated campaigns (rewardlab.data.simulate, careful raters, one judgment per comparison, no ties),
split by prompt into train and held-out. rewardlab trains on each ranking as one group (K forwards per
ranking); TRL gets every ranking expanded into its C(K,2) (chosen, rejected) pairs, as TRL users do, with
the same token ids (pre-tokenized `chosen_ids`/`rejected_ids`, so formatting cannot differ), the same
initial weights (same seed), AdamW with the same lr, no weight decay, linear schedule, no warmup, grad
clipping 1.0, and the same number of training rankings per optimizer step (TRL batch = B * C(K,2) pairs).

Each trainer runs in its own subprocess (so peak RSS is per run), with the same torch thread count.
Measured: rankings/s (steady state: from the end of step 1 to the end of the last step, so one-off start-up
costs such as lazy imports in the first optimizer step do not count for either side), processed tokens/s
(non-pad tokens through the model), peak RSS of the process, and held-out pairwise accuracy computed by the
same code for both models (rewardlab.eval.rm on the held-out split; for rewardlab, the recipe's own final
evaluation on data.eval). ``--variant NAME:key=value,...`` adds rewardlab runs with other settings to the
same interleaved run; accuracy gaps are paired by seed (mean +- standard error).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = {"tiny": "offline:tiny-rm", "minilm": "offline:minilm-l6"}
DEFAULTS = {  # per model: train rankings, held-out rankings, epochs, lr, groups per step
    "tiny": {"train": 384, "eval": 400, "epochs": 2, "lr": 1e-3, "batch": 8, "seeds": 3},
    "minilm": {"train": 160, "eval": 240, "epochs": 1, "lr": 5e-5, "batch": 8, "seeds": 1},
}
MAX_LENGTH = 256
SEED = 0  # the data; training seeds are 0..seeds-1 (init and order), averaged


# ---------------------------------------------------------------- data


def make_data(k: int, n_train: int, n_eval: int, out: Path) -> tuple[Path, Path]:
    """A simulated campaign with K responses per prompt, split by prompt into two dataset folders."""
    from rewardlab.config import SimulateConfig
    from rewardlab.data.dataset import write_dataset
    from rewardlab.data.simulate import simulate_campaign

    cfg = SimulateConfig(
        prompts=n_train + n_eval,
        k=k,
        overlap=1,
        raters=8,
        gold_rate=0.0,
        tie_epsilon=0.0,
        seed=SEED,
        mix={
            "careful": 1.0,
            "noisy": 0.0,
            "random": 0.0,
            "position_biased": 0.0,
            "adversarial": 0.0,
            "too_fast": 0.0,
        },
    )
    records, _ = simulate_campaign(cfg)
    records = [r for r in records if not r.get("gold")]
    train, held = records[:n_train], records[n_train : n_train + n_eval]
    write_dataset(train, out / "train")
    write_dataset(held, out / "eval")
    return out / "train", out / "eval"


def load(path: Path) -> list[dict]:
    from rewardlab.data.dataset import iter_records, load_dataset

    return list(iter_records(load_dataset(path)))


# ---------------------------------------------------------------- workers (one process per run)


def heldout_accuracy(model, tokenizer, eval_dir: Path) -> tuple[float, int]:
    from rewardlab.eval.rm import evaluate_rewards, score_records
    from rewardlab.scoring import RewardScorer

    model.eval()
    records = load(eval_dir)
    scorer = RewardScorer(model, tokenizer, MAX_LENGTH)
    metrics = evaluate_rewards(records, score_records(scorer, records, batch_size=32), scorer.heads)
    return metrics["accuracy"], metrics["n_pairs"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_rewardlab(args: argparse.Namespace) -> dict:
    from rewardlab import config as cfglib
    from rewardlab.recipes import rm
    from rewardlab.scoring import RewardScorer

    out = Path(args.work) / "rewardlab-run"
    cfg = cfglib.load(
        None,
        [
            f"output_dir={out}",
            f"model.name_or_path={args.model}",
            f"data.train={args.train}",
            f"data.eval={args.eval}",
            f"data.max_length={MAX_LENGTH}",
            "heads=[overall]",
            f"train.lr={args.lr}",
            f"train.epochs={args.epochs}",
            f"train.batch_size={args.batch}",
            f"train.seed={args.seed}",
            "train.weight_decay=0.0",
            "train.max_grad_norm=1.0",
            "train.lr_scheduler=linear",
            "tracking.backend=jsonl",
            *(args.rl_override or []),
        ],
        stage="rm",
    )
    start = time.perf_counter()
    metrics = rm.run(cfg)
    wall = time.perf_counter() - start
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rankings" in r]
    first, last = steps[0], steps[-1]
    elapsed = last["time"] - first["time"]
    # the recipe already evaluated the final model on data.eval with rewardlab.eval.rm (the same
    # evaluate_rewards as heldout_accuracy); scoring the reloaded folder again would only repeat it
    acc, n_pairs = metrics["accuracy"], metrics["n_pairs"]
    assert RewardScorer.from_path(out).heads == ["overall"]  # the saved folder loads
    return {
        "steps": len(steps),
        "rankings": last["rankings"],
        "rankings_per_s": (last["rankings"] - first["rankings"]) / elapsed,
        "tokens_per_s": (last["tokens"] - first["tokens"]) / elapsed,
        "rankings_per_s_total": last["rankings"] / metrics["train_time_s"],
        "padding_ratio": metrics["padding_ratio"],
        "train_wall_s": wall,
        "accuracy": acc,
        "n_pairs": n_pairs,
        "peak_rss_mb": peak_rss_mb(),
    }


def worker_trl(args: argparse.Namespace) -> dict:
    import torch
    from accelerate.utils import set_seed
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from rewardlab import models
    from rewardlab.data.schema import implied_pairs
    from rewardlab.recipes.rm import encode_records

    set_seed(args.seed)
    tokenizer = models.load_tokenizer(args.model)
    records = load(Path(args.train))
    ids, _ = encode_records(tokenizer, records, MAX_LENGTH)
    rows = []
    for rec, rec_ids in zip(records, ids, strict=True):
        for w, lo, tie in implied_pairs(rec["ranks"]):
            if not tie:  # TRL has no ties: its users drop them
                rows.append({"chosen_ids": rec_ids[w], "rejected_ids": rec_ids[lo]})
    pairs_per_ranking = len(rows) / len(records)
    tokens_per_pair = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows) / len(rows)
    model = models.build_reward_model(args.model, num_heads=1)
    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *a, **kw):
            times.append(time.time())

    per_step_pairs = round(args.batch * math.comb(args.k, 2))
    config = RewardConfig(
        output_dir=str(Path(args.work) / "trl-run"),
        per_device_train_batch_size=per_step_pairs,
        gradient_accumulation_steps=1,
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=args.seed,
        data_seed=args.seed,
        max_length=None,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        dataloader_pin_memory=False,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[StepTimes()],
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    n_pairs = len(rows) * args.epochs
    steps = len(times)
    pairs_after_first = n_pairs - min(per_step_pairs, n_pairs)
    elapsed = times[-1] - times[0]
    acc, n_eval_pairs = heldout_accuracy(trainer.model, tokenizer, Path(args.eval))
    del torch
    return {
        "steps": steps,
        "rankings": n_pairs / pairs_per_ranking,
        "rankings_per_s": pairs_after_first / pairs_per_ranking / elapsed,
        "tokens_per_s": pairs_after_first * tokens_per_pair / elapsed,
        "rankings_per_s_total": n_pairs / pairs_per_ranking / wall,
        "padding_ratio": None,
        "train_wall_s": wall,
        "accuracy": acc,
        "n_pairs": n_eval_pairs,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------- driver


def run_worker(
    trainer: str, model: str, k: int, train: Path, held: Path, opts: dict, threads: int, seed: int
) -> dict:
    """One run in its own process. ``rewardlab[name]`` is a rewardlab variant: its overrides
    (``opts["variants"][name]``) go after the common ``--rl-override`` ones."""
    extra = opts.get("variants", {}).get(trainer, [])
    trainer = "rewardlab" if trainer.startswith("rewardlab") else trainer
    with tempfile.TemporaryDirectory(prefix=f"bench-rm-{trainer}-") as work:
        out = Path(work) / "result.json"
        cmd = [
            sys.executable, __file__, "--worker", trainer, "--model", model, "--k", str(k),
            "--train", str(train), "--eval", str(held), "--lr", str(opts["lr"]), "--epochs", str(opts["epochs"]),
            "--batch", str(opts["batch"]), "--work", work, "--result", str(out), "--seed", str(seed),
            *[f"--rl-override={o}" for o in [*(opts.get("rl_override") or []), *extra]],
        ]  # fmt: skip
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "DISABLE_TQDM": "1",
            "OMP_NUM_THREADS": str(threads),
            "WANDB_MODE": "disabled",
        }
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"{trainer} worker failed:\n{res.stderr[-4000:]}")
        return json.loads(out.read_text())


def mean_of(results: list[dict]) -> dict:
    """Field-wise mean over seeds (None stays None)."""
    out = {}
    for key, value in results[0].items():
        vals = [r[key] for r in results]
        out[key] = None if value is None else sum(vals) / len(vals)
    return out


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,minilm")
    ap.add_argument("--ks", default="2,4")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (the same for both)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="seeds run at the same time (each seed's trainers still one after another)",
    )
    ap.add_argument("--train-rankings", type=int, default=None)
    ap.add_argument("--train-epochs", type=float, default=None)
    ap.add_argument(
        "--rl-override", action="append", help="extra key=value for rewardlab's config (repeatable)"
    )
    ap.add_argument("--trainers", default="rewardlab,trl", help="which of rewardlab,trl to run")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="an extra rewardlab run per seed, NAME:key=value[,key=value] (repeatable), e.g. lr2:train.lr=1e-4",
    )
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--worker", choices=["rewardlab", "trl"], help=argparse.SUPPRESS)
    for name in ("--model", "--train", "--eval", "--work", "--result"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--seeds", type=int, default=None, help="training seeds per cell (default: per model)")
    args = ap.parse_args()

    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        fn = worker_rewardlab if args.worker == "rewardlab" else worker_trl
        Path(args.result).write_text(json.dumps(fn(args)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rm-data-") as tmp:
        for name in args.models.split(","):
            opts = dict(DEFAULTS[name])
            if args.train_rankings:
                opts["train"] = args.train_rankings
            if args.train_epochs:
                opts["epochs"] = args.train_epochs
            opts["rl_override"] = args.rl_override
            opts["variants"] = {
                f"rewardlab[{v.split(':', 1)[0]}]": v.split(":", 1)[1].split(",") for v in args.variant
            }
            for k in (int(x) for x in args.ks.split(",")):
                train, held = make_data(k, opts["train"], opts["eval"], Path(tmp) / f"{name}-k{k}")
                trainers = [*args.trainers.split(","), *opts["variants"]]

                def one_seed(
                    seed: int, trainers=trainers, train=train, held=held, name=name, k=k, opts=opts
                ) -> dict:
                    out = {}
                    for trainer in trainers:  # interleaved: all trainers see the same machine load
                        print(f"[{name} K={k} seed {seed}] {trainer} ...", file=sys.stderr, flush=True)
                        out[trainer] = run_worker(
                            trainer, MODELS[name], k, train, held, opts, args.threads, seed
                        )
                    accs = " ".join(f"{t}={r['accuracy']:.4f}" for t, r in out.items())
                    print(f"[{name} K={k} seed {seed}] {accs}", file=sys.stderr, flush=True)
                    return out

                seeds = range(args.seeds or opts["seeds"])
                with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each worker is its own process
                    per_seed = list(pool.map(one_seed, seeds))
                runs: dict[str, list[dict]] = {t: [r[t] for r in per_seed] for t in trainers}
                rows.append(
                    {"model": name, "k": k, **opts, **{t: mean_of(r) for t, r in runs.items()}, "runs": runs}
                )

    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print()
    head = (
        f"{'model':7} {'K':>2} {'trainer':16} {'rankings/s':>10} {'tokens/s':>9} {'RSS MB':>7} "
        f"{'accuracy':>8} {'pairs':>5} {'steps':>5}  (mean over seeds)"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        for trainer in row["runs"]:
            r = row[trainer]
            print(
                f"{row['model']:7} {row['k']:>2} {trainer:16} {fmt(r['rankings_per_s']):>10} "
                f"{fmt(r['tokens_per_s'], '.0f'):>9} {fmt(r['peak_rss_mb'], '.0f'):>7} "
                f"{fmt(r['accuracy'], '.3f'):>8} {r['n_pairs']:>5.0f} {r['steps']:>5.0f}"
            )
        for name in [t for t in row["runs"] if t.startswith("rewardlab") and "trl" in row["runs"]]:
            print_ratio(row, name)


def print_ratio(row: dict, name: str) -> None:
    """Speed ratios of the means, and the accuracy gap paired by seed: mean +- standard error."""
    ours, trl = row[name], row["trl"]
    speed = ours["rankings_per_s"] / trl["rankings_per_s"]
    target = 2.5 if row["k"] >= 4 else 1.1
    gaps = [100 * (a["accuracy"] - b["accuracy"]) for a, b in zip(row["runs"][name], row["runs"]["trl"])]
    gap = sum(gaps) / len(gaps)
    se = (sum((g - gap) ** 2 for g in gaps) / (len(gaps) - 1) / len(gaps)) ** 0.5 if len(gaps) > 1 else None
    verdict = "met" if speed >= target and gap >= 0 else "MISSED"
    print(
        f"{'':7} {'':>2} {'ratio':16} {speed:>9.2f}x "
        f"{ours['tokens_per_s'] / trl['tokens_per_s']:>8.2f}x "
        f"{ours['peak_rss_mb'] / trl['peak_rss_mb']:>6.2f}x {gap:>+7.1f}pt"
        f" +- {fmt(se, '.1f')} (paired by seed, n={len(gaps)}; {name} vs trl)   "
        f"target >= {target}x and accuracy >= trl's: {verdict}"
    )


if __name__ == "__main__":
    main()
