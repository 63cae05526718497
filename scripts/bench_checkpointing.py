"""Peak memory of one forward + backward with and without train.gradient_checkpointing (issue 30 item 3).

    PYTHONPATH=src python scripts/bench_checkpointing.py --model offline:smollm2-135m-instruct \
        --batch 8 --length 512 --repeats 2

Each measurement runs in a fresh child process (peak RSS, ``ru_maxrss``, only ever grows within a process),
alternating off/on so load on a shared machine falls on both. A child builds the model the way the stage does
(``build_reward_model`` for ``rm``, ``build_policy`` for ``policy``), turns checkpointing on with
``models.enable_checkpointing`` when asked, runs one training-mode forward + backward on a fixed random batch,
and reports: peak RSS, the bytes autograd saved for the backward (a ``saved_tensors_hooks`` count: the
activation memory checkpointing trims, independent of the allocator), the loss (the same with and without)
and the step time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> dict:
    import torch

    from rewardlab import models

    torch.manual_seed(0)
    build = models.build_reward_model if args.kind == "rm" else models.build_policy
    model = build(args.model)
    if args.checkpointing:
        models.enable_checkpointing(model)
    model.train()
    ids = torch.randint(10, 1000, (args.batch, args.length))
    mask = torch.ones_like(ids)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if args.kind == "rm":
            loss = model(input_ids=ids, attention_mask=mask).logits.float().pow(2).mean()
        else:
            loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()
    seconds = time.perf_counter() - start
    return {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_load_mb": rss_before / 1024,
        "saved_for_backward_mb": saved[0] / 2**20,
        "loss": float(loss.detach()),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="offline:smollm2-135m-instruct")
    parser.add_argument("--kind", choices=("rm", "policy"), default="rm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    base = [sys.executable, __file__, "--child", "--model", args.model, "--kind", args.kind]
    base += ["--batch", str(args.batch), "--length", str(args.length)]
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        for mode in ("off", "on"):
            cmd = base + (["--checkpointing"] if mode == "on" else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def summary(rows: list[dict]) -> dict:
        keys = ("peak_rss_mb", "saved_for_backward_mb", "seconds", "loss", "rss_after_load_mb")
        return {k: [round(r[k], 4) for r in rows] for k in keys} | {
            "peak_rss_mb_mean": statistics.mean(r["peak_rss_mb"] for r in rows),
            "seconds_mean": statistics.mean(r["seconds"] for r in rows),
        }

    off, on = summary(runs["off"]), summary(runs["on"])
    result = {
        "model": args.model,
        "kind": args.kind,
        "batch": args.batch,
        "length": args.length,
        "repeats": args.repeats,
        "off": off,
        "on": on,
        "peak_rss_ratio_on_off": on["peak_rss_mb_mean"] / off["peak_rss_mb_mean"],
        "saved_ratio_on_off": on["saved_for_backward_mb"][0] / off["saved_for_backward_mb"][0],
        "time_ratio_on_off": on["seconds_mean"] / off["seconds_mean"],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
