"""Peak memory, step time and real tokens/s of one RM training step on SmolLM2-135M (CPU): padded (today's
forward), packed (`train.packing: true`, recipes/rm.py `packed_logits`) and padded with gradient
checkpointing (`train.gradient_checkpointing: true`). Each mode runs in its own process (peak RSS read with
os.wait4, so modes do not share a high-water mark), all in one invocation, so the ratios compare like with
like.

    python scripts/bench_rm_packing.py --batch 8 --steps 3 --seeds 0 1

Each step: `--batch` sequences of random token ids with lengths drawn uniformly in [--min-len, --max-len]
(the padded batch pads to its longest), forward through the reward model, the sum of rewards as the loss,
backward, an AdamW step. "real tokens" counts the non-pad tokens only. Prints one JSON line per run and a
table of mean +- sd over seeds. This is a forward/backward microbenchmark on random ids, not an accuracy
comparison: the packed forward's rewards equal the padded forward's (tests/unit/test_rm_packing.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def one(mode: str, seed: int, batch: int, steps: int, min_len: int, max_len: int, backbone: str) -> dict:
    import numpy as np
    import torch

    from rewardlab import models
    from rewardlab.recipes.rm import packed_logits

    torch.manual_seed(seed)
    rm = models.build_reward_model(backbone)
    if mode == "checkpointing":
        models.enable_checkpointing(rm)
    rm.train()
    opt = torch.optim.AdamW(rm.parameters(), lr=1e-5)
    rng = np.random.default_rng(seed)
    vocab = rm.get_input_embeddings().num_embeddings
    times, tokens, padded = [], 0, 0
    for _ in range(steps):
        seqs = [rng.integers(10, vocab, size=int(rng.integers(min_len, max_len + 1))) for _ in range(batch)]
        longest = max(len(s) for s in seqs)
        start = time.perf_counter()
        if mode == "packed":
            rewards = packed_logits(rm, seqs, "cpu")
        else:
            ids = torch.zeros(batch, longest, dtype=torch.long)
            mask = torch.zeros(batch, longest, dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = torch.from_numpy(s)
                mask[i, : len(s)] = 1
            rewards = rm(input_ids=ids, attention_mask=mask).logits
        rewards.float().sum().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
        tokens += sum(len(s) for s in seqs)
        padded += batch * longest
    timed = times[1:] or times  # the first step pays for allocation and thread start-up
    return {
        "mode": mode,
        "seed": seed,
        "step_s": statistics.mean(timed),
        "real_tokens_per_s": tokens / sum(times),
        "pairs_per_s": (batch / 2) * len(times) / sum(times),
        "pad_share": 1 - tokens / padded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="offline:smollm2-135m-instruct")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--min-len", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=384)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--modes", nargs="+", default=["padded", "packed", "checkpointing"])
    ap.add_argument("--child", nargs=2, metavar=("MODE", "SEED"))
    a = ap.parse_args()
    if a.child:
        row = one(a.child[0], int(a.child[1]), a.batch, a.steps, a.min_len, a.max_len, a.backbone)
        print(json.dumps(row))
        return
    rows = []
    for seed in a.seeds:
        for mode in a.modes:
            cmd = [sys.executable, __file__, "--child", mode, str(seed), "--batch", str(a.batch), "--steps",
                   str(a.steps), "--min-len", str(a.min_len), "--max-len", str(a.max_len), "--backbone", a.backbone]  # fmt: skip
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            if status:
                sys.exit(f"{mode} seed {seed} failed")
            row = json.loads(out.strip().splitlines()[-1])
            row["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = ("peak_rss_mb", "step_s", "real_tokens_per_s", "pairs_per_s")
    print(
        "| mode | peak RSS MB | step s | real tokens/s | pairs/s | vs padded (RSS, tokens/s, paired by seed) |"
    )
    print("|---|---|---|---|---|---|")
    base = {r["seed"]: r for r in rows if r["mode"] == "padded"}
    for mode in a.modes:
        r = [x for x in rows if x["mode"] == mode]

        def ms(key: str, rows: list = r) -> str:
            vals = [x[key] for x in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return (
                f"{statistics.mean(vals):.1f} +- {sd:.1f}"
                if key != "pairs_per_s"
                else f"{statistics.mean(vals):.3f}"
            )

        ratio = ""
        if base:
            rss = statistics.mean(x["peak_rss_mb"] / base[x["seed"]]["peak_rss_mb"] for x in r)
            tps = statistics.mean(x["real_tokens_per_s"] / base[x["seed"]]["real_tokens_per_s"] for x in r)
            ratio = f"{rss:.2f}x, {tps:.2f}x"
        print(f"| {mode} | " + " | ".join(ms(k) for k in keys) + f" | {ratio} |")


if __name__ == "__main__":
    main()
