"""PPO's memory: the model copies it holds, by dtype, in bytes (computed), and measured on SmolLM2-135M.

    python scripts/ppo_memory.py                      # the table for 0.5B / 7B / 8B, before and after
    python scripts/ppo_memory.py --measure [--steps 4] [--repeats 2] [--out runs/ppo-memory]
    python scripts/ppo_memory.py --outcome [--seeds 0 1 2] [--out runs/ppo-memory]

The table counts parameters from each architecture's shapes (layers, widths, vocabulary; LoRA r=16 on every
linear layer of the blocks) and prices them with the planning facts of docs/design.md: bf16 weights 2 bytes,
fp32 weights 4, fp32 gradients 4, AdamW state 8 (fp32 m and v). The RM and the value model are taken to be
the policy's size (the usual recipe: all three from one base). Activations and the KV cache are left out;
the log-softmax temporaries are a separate line, since they scale with tokens, not parameters.

``--measure`` runs SmolLM2-135M-Instruct LoRA PPO on CPU (configs/ppo/smollm.yaml with small rollouts, ``SMALL``; an untrained MiniLM-L6
RM: memory and time do not depend on what it learned) once per layout, each in its own process, alternating
the layouts ``--repeats`` times, and prints each process's peak RSS (ru_maxrss from wait4) and the median
step time after the first step.

``--outcome`` trains the tiny RM and SFT policy once, then tiny LoRA PPO (configs/ppo/tiny.yaml) per seed in
each layout of ``OUTCOME`` and prints the RM score gain (end - start of training) and the final KL, with the
paired difference from ``before`` (mean +- standard error over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ppo_smollm import cli  # one rewardlab command in this process (scripts/ is on sys.path when run)

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9


@dataclass(frozen=True)
class Arch:
    """The shapes a decoder's parameter count follows from (config.json fields)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool = False

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def params(self) -> int:
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        attn = h * h * 2 + h * kv * 2 + ((h + 2 * kv) if self.qkv_bias else 0)
        block = attn + 3 * h * i + 2 * h  # q, k, v, o; gate, up, down; two RMSNorms
        embed = self.vocab * h * (1 if self.tied else 2)
        return self.layers * block + embed + h

    def lora_params(self, r: int = 16) -> int:
        """LoRA A and B on q, k, v, o, gate, up, down of every block (peft's all-linear)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        per_block = r * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)
        return self.layers * per_block


ARCHS = [
    Arch("0.5B (Qwen2.5-0.5B)", 24, 896, 4864, 14, 2, 151936, tied=True, qkv_bias=True),
    Arch("7B (Qwen2.5-7B)", 28, 3584, 18944, 28, 4, 152064, tied=False, qkv_bias=True),
    Arch("8B (Llama-3.1-8B)", 32, 4096, 14336, 32, 8, 128256, tied=False),
]

FULL_TRAIN = 4 + 4 + 8  # fp32 weights, fp32 grads, AdamW m and v
# (what, weights bytes per base parameter, trained in full?)
LAYOUTS = {
    "before: full fine-tune, float32 (the defaults)": [
        ("policy", "fp32 + grads + AdamW", FULL_TRAIN, 0),
        ("reference copy", "fp32", 4, 0),
        ("value model", "fp32 + grads + AdamW", FULL_TRAIN, 0),
        ("reward model", "fp32", 4, 0),
    ],
    "before: LoRA on a bf16 base": [
        ("policy", "bf16 base + LoRA", 2, 1),
        ("reference copy", "bf16", 2, 0),
        ("value model", "fp32 + grads + AdamW", FULL_TRAIN, 0),
        ("reward model", "fp32", 4, 0),
    ],
    "after: LoRA, bf16 base, value_backbone=separate (default)": [
        ("policy", "bf16 base + LoRA", 2, 1),
        ("reference", "= policy, adapter off", 0, 0),
        ("value model", "fp32 + grads + AdamW", FULL_TRAIN, 0),
        ("reward model", "bf16", 2, 0),
    ],
    "after: LoRA, bf16 base, value_backbone=adapter": [
        ("policy", "bf16 base + LoRA", 2, 1),
        ("reference", "= policy, adapter off", 0, 0),
        ("value model", "2nd LoRA + head on the policy's base", 0, 1),
        ("reward model", "bf16", 2, 0),
    ],
}


def table() -> str:
    lines = ["| layout | model | " + " | ".join(a.name for a in ARCHS) + " |",
             "|---|---|" + "---:|" * len(ARCHS)]  # fmt: skip
    for layout, parts in LAYOUTS.items():
        totals = [0.0] * len(ARCHS)
        for what, dtype, per_param, adapters in parts:
            cells = []
            for k, arch in enumerate(ARCHS):
                # a LoRA adapter trains in fp32 (peft's default): weights, grads and AdamW, 16 bytes a parameter
                size = arch.params() * per_param + adapters * arch.lora_params() * FULL_TRAIN
                totals[k] += size
                cells.append(f"{size / GB:.1f}")
            lines.append(f"| {layout} | {what} ({dtype}) | " + " | ".join(cells) + " |")
        lines.append(f"| {layout} | **total** | " + " | ".join(f"**{t / GB:.1f}**" for t in totals) + " |")
    counts = ", ".join(
        f"{a.name}: {a.params() / 1e9:.2f}B, LoRA r=16 {a.lora_params() / 1e6:.0f}M" for a in ARCHS
    )
    tokens = 8 * 512
    temps = ", ".join(
        f"{a.name.split()[0]} {3 * tokens * a.vocab * 4 / GB:.1f} GB before, "
        f"{3 * 1024 * a.vocab * 4 / GB:.2f} GB after"
        for a in ARCHS
    )
    return "\n".join(lines) + (
        f"\n\nParameter counts from the shapes: {counts}.\n"
        f"Log-softmax temporaries per micro-batch of 8 x 512 response tokens (float32 upcast, log-softmax kept for "
        f"backward, entropy's softmax: ~3 full-vocabulary copies; after: 3 copies of one 1024-position chunk): "
        f"{temps}. The model's own logits (in its dtype) are there in both cases."
    )


# ---------------------------------------------------------------- measurement

# Small rollouts so one step takes seconds, not minutes, on one shared CPU thread (the defaults' 16 x 2 epochs
# took 240 s a step there); the model copies, which the layouts change, do not depend on them.
SMALL = ["ppo.rollout_batch_size=8", "ppo.mini_batch_size=4", "ppo.ppo_epochs=1", "ppo.max_new_tokens=16",
         "data.max_length=64"]  # fmt: skip
MEASURED = {
    "before": ["ppo.reference_copy=true", "ppo.value_backbone=separate", "ppo.logprob_chunk=null",
               "ppo.reward_model_dtype=float32"],
    "after": ["ppo.value_backbone=adapter"],
}  # fmt: skip


def _rm(out: Path) -> Path:
    folder = out / "rm-minilm-untrained"
    if not (folder / "config.json").exists():
        from rewardlab import models

        model = models.build_reward_model("offline:minilm-l6")
        model.config.reward_mean, model.config.reward_std = 0.0, 1.0
        models.save_model(model, models.load_tokenizer("offline:minilm-l6"), folder)
    return folder


def _one(layout: str, run: Path, rm: Path, steps: int) -> dict:
    cmd = [sys.executable, "-m", "rewardlab.cli", "train", "ppo", str(ROOT / "configs/ppo/smollm.yaml"),
           f"output_dir={run}", f"ppo.reward_model={rm}", f"train.max_steps={steps}", "train.save_every=null",
           f"data.train={ROOT / 'data/sample'}", "model.lora={r: 16, alpha: 32}", "train.lr=1e-4",
           *SMALL, *MEASURED[layout]]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read()
    if status != 0:
        raise RuntimeError(f"{layout} failed ({status}): {err[-2000:]}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    step_s = [r["time/step_s"] for r in rows[1:]] or [rows[0]["time/step_s"]]
    return {"layout": layout, "peak_rss_gb": usage.ru_maxrss * 1024 / GB, "step_s": statistics.median(step_s),
            "process_s": seconds, "rm_score_mean": rows[-1]["reward/rm_score_mean"]}  # fmt: skip


def measure(out: Path, steps: int, repeats: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    rm = _rm(out)
    results = []
    for rep in range(repeats):
        for layout in MEASURED:
            res = _one(layout, out / f"{layout}-{rep}", rm, steps)
            print(json.dumps(res), flush=True)
            results.append(res)
    print("\n| layout | peak RSS (GB) | step s (median after step 1) | runs |\n|---|---:|---:|---:|")
    summary = {}
    for layout in MEASURED:
        mine = [r for r in results if r["layout"] == layout]
        rss = [r["peak_rss_gb"] for r in mine]
        step = [r["step_s"] for r in mine]
        summary[layout] = (statistics.mean(rss), statistics.mean(step))
        spread = lambda xs: f" ({min(xs):.2f}-{max(xs):.2f})" if len(xs) > 1 else ""  # noqa: E731
        print(f"| {layout}: {' '.join(MEASURED[layout])} | {statistics.mean(rss):.2f}{spread(rss)} | "
              f"{statistics.mean(step):.2f}{spread(step)} | {len(mine)} |")  # fmt: skip
    (b_rss, b_step), (a_rss, a_step) = summary["before"], summary["after"]
    print(f"\nafter / before: peak RSS {a_rss / b_rss:.2f}x, step time {a_step / b_step:.2f}x")
    return results


OUTCOME = {
    "before": MEASURED["before"],
    "after, value separate": [],
    "after, value adapter": ["ppo.value_backbone=adapter"],
}


def outcome(out: Path, seeds: list[int]) -> dict:
    data = ROOT / "data" / "sample"
    rm, sft = out / "rm-tiny", out / "sft-tiny"
    if not (rm / "model" / "config.json").exists():
        cli(
            "train",
            "rm",
            ROOT / "configs/rm/tiny.yaml",
            f"data.train={data}",
            f"output_dir={rm}",
            "train.epochs=3",
        )
    if not (sft / "model" / "config.json").exists():
        cli("train", "sft", ROOT / "configs/sft/tiny.yaml", f"data.train={data}", f"output_dir={sft}",
            "train.epochs=30", "train.log_every=50")  # fmt: skip
    rows: dict[str, dict[int, dict]] = {name: {} for name in OUTCOME}
    for seed in seeds:
        for name, extra in OUTCOME.items():
            run = out / f"outcome-{name.replace(' ', '').replace(',', '-')}-{seed}"
            if not (run / "metrics.json").exists():
                started = time.perf_counter()
                cli("train", "ppo", ROOT / "configs/ppo/tiny.yaml", f"data.train={data}", f"output_dir={run}",
                    f"model.name_or_path={sft / 'model'}", f"ppo.reward_model={rm / 'model'}", f"train.seed={seed}",
                    "model.lora={r: 8, alpha: 16, dropout: 0.0}", "train.lr=1e-3", *extra)  # fmt: skip
                print(f"{name} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
            m = json.loads((run / "metrics.json").read_text())
            rows[name][seed] = {
                "gain": m["train_rm_score_end"] - m["train_rm_score_start"],
                "kl": m["train_kl_end"],
            }

    def mean_se(xs: list[float]) -> str:
        se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
        return f"{statistics.mean(xs):+.4f} +- {se:.4f}"

    print(f"\nseeds {seeds} (mean +- standard error; paired differences against 'before', seed by seed)")
    print("| layout | RM score gain | final KL | gain - before | KL - before |\n|---|---:|---:|---:|---:|")
    for name in OUTCOME:
        gain = [rows[name][s]["gain"] for s in seeds]
        kl = [rows[name][s]["kl"] for s in seeds]
        d_gain = [rows[name][s]["gain"] - rows["before"][s]["gain"] for s in seeds]
        d_kl = [rows[name][s]["kl"] - rows["before"][s]["kl"] for s in seeds]
        print(f"| {name} | {mean_se(gain)} | {mean_se(kl)} | {mean_se(d_gain)} | {mean_se(d_kl)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="also run SmolLM2-135M PPO before and after")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--outcome", action="store_true", help="tiny LoRA PPO per seed, before and after")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/ppo-memory")
    args = parser.parse_args()
    print(table())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.measure:
        measure(Path(args.out), args.steps, args.repeats)
    if args.outcome:
        outcome(Path(args.out), args.seeds)


if __name__ == "__main__":
    main()
