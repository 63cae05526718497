"""Why K-wise training trails TRL's expanded pairs at equal epochs: a cheap linear-probe study.

    python scripts/bench_kwise_probe.py                 # 24 seeds, lr 0.01 and 0.03, all variants
    python scripts/bench_kwise_probe.py --seeds 8 --lrs 0.03

The full MiniLM runs of scripts/bench_rm.py take minutes each, and one standard error of their accuracy is
~1.5 points, so the causes are separated here on a proxy that runs in seconds: the bench's K = 4 data
(scripts/bench_rm.make_data, 160 training rankings, 240 held-out), responses embedded once by the frozen
all-MiniLM-L6-v2 (mean pooling), and a linear reward head trained for one epoch with AdamW and a linear
schedule in each of these ways (same 8 rankings per optimizer step, 20 steps, as the bench):

- ``trl``: every ranking expanded into its 6 pairs, shuffled, 48 pairs per step (TRL's RewardTrainer);
- ``kwise``: rewardlab's loss, all pairs of a group averaged per group, 8 groups per step, random batches;
- ``kwise-len``: the same with rewardlab's length-grouped batches (``group_by_length``, bucket 50);
- ``pl``: Plackett-Luce per group (the simulator's careful raters are Plackett-Luce);
- ``... x2``: the same at twice the learning rate.

Accuracy is rewardlab.eval.rm's on the held-out rankings; differences are paired by seed (same initial head)
against ``trl`` at the same lr: mean +- standard error.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def embed(records: list[dict], tokenizer, encoder) -> list[np.ndarray]:
    import torch

    from rewardlab.recipes.rm import encode_records

    ids, _ = encode_records(tokenizer, records, 256)
    out = []
    with torch.no_grad():
        for group in ids:
            width = max(len(x) for x in group)
            x = torch.zeros(len(group), width, dtype=torch.long)
            mask = torch.zeros(len(group), width)
            for i, seq in enumerate(group):
                x[i, : len(seq)] = torch.from_numpy(seq.astype(np.int64))
                mask[i, : len(seq)] = 1
            h = encoder(input_ids=x, attention_mask=mask).last_hidden_state
            out.append(((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy())
    return out


def train_head(kind, seed, lr, train, emb, lengths, by_length=False, batch=8):
    """One epoch of a linear reward head; returns its weight vector."""
    import torch

    from rewardlab import losses
    from rewardlab.data.schema import implied_pairs
    from rewardlab.recipes.rm import epoch_batches

    torch.manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(emb[0].shape[1]) * 0.02)
    opt = torch.optim.AdamW([w], lr=lr, weight_decay=0.0)
    steps = math.ceil(len(train) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    x = [torch.from_numpy(e).float() for e in emb]
    if kind == "trl":
        pairs = [(g, i, j) for g, rec in enumerate(train) for i, j, _ in implied_pairs(rec["ranks"])]
        random.Random(seed).shuffle(pairs)
        per_step = math.ceil(len(pairs) / steps)
        batches = [pairs[s * per_step : (s + 1) * per_step] for s in range(steps)]
        for chunk in batches:
            d = torch.stack([(x[g][i] - x[g][j]) @ w for g, i, j in chunk])
            loss = -torch.nn.functional.logsigmoid(d).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        return w.detach()
    for chunk in epoch_batches(lengths, batch, seed, 0, by_length, 50):
        r = torch.cat([x[g] for g in chunk]) @ w
        group = torch.cat([torch.full((len(x[g]),), k) for k, g in enumerate(chunk)])
        ranks = torch.cat([torch.tensor(train[g]["ranks"]) for g in chunk])
        offset = np.cumsum([0] + [len(x[g]) for g in chunk])
        rows = [(offset[k] + i, offset[k] + j, k) for k, g in enumerate(chunk) for i, j, _ in implied_pairs(train[g]["ranks"])]  # fmt: skip
        win, lose, grp = (torch.tensor(c) for c in zip(*rows, strict=True))
        if kind == "pl":
            loss = losses.plackett_luce_loss(r, ranks, group, len(chunk))
        else:
            loss = losses.pairwise_ranking_loss(r, win, lose, grp, len(chunk))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return w.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--lrs", default="0.01,0.03")
    args = ap.parse_args()

    import bench_rm
    import torch
    from transformers import AutoModel

    from rewardlab import models
    from rewardlab.eval.rm import evaluate_rewards
    from rewardlab.recipes.rm import encode_records

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, eval_dir = bench_rm.make_data(4, 160, 240, Path(tmp))
        train, held = bench_rm.load(train_dir), bench_rm.load(eval_dir)
    tokenizer = models.load_tokenizer("offline:minilm-l6")
    encoder = AutoModel.from_pretrained(str(models.resolve("offline:minilm-l6"))).eval()
    emb, held_emb = embed(train, tokenizer, encoder), embed(held, tokenizer, encoder)
    lengths = [max(len(x) for x in g) for g in encode_records(tokenizer, train, 256)[0]]  # length grouping

    def accuracy(w) -> float:
        rewards = [(torch.from_numpy(e).float() @ w).numpy()[:, None] for e in held_emb]
        return evaluate_rewards(held, rewards, ["overall"])["accuracy"]

    variants = [
        ("trl", "trl", 1.0, False),
        ("kwise", "bt", 1.0, False),
        ("kwise-len", "bt", 1.0, True),
        ("pl", "pl", 1.0, False),
        ("trl x2", "trl", 2.0, False),
        ("kwise x2", "bt", 2.0, False),
        ("pl x2", "pl", 2.0, False),
    ]
    print(f"{'lr':>6} {'variant':10} {'accuracy':>8}  {'vs trl (paired)':>18}")
    for lr in (float(x) for x in args.lrs.split(",")):
        acc = {
            name: np.array(
                [
                    accuracy(train_head(kind, s, lr * scale, train, emb, lengths, by_len))
                    for s in range(args.seeds)
                ]
            )
            for name, kind, scale, by_len in variants
        }
        for name, values in acc.items():
            diff = 100 * (values - acc["trl"])
            se = diff.std(ddof=1) / math.sqrt(len(diff))
            print(f"{lr:>6} {name:10} {values.mean():>8.4f}  {diff.mean():>+8.2f} +- {se:.2f} pt")


if __name__ == "__main__":
    main()
