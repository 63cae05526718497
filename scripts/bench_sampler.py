"""Milliseconds per decode step of the seeded sampler: per-row generators on the logits' device (the default)
and the counter hash vs the host generators they replaced, and plain multinomial sampling of the same
logits, measured in one run.

    python scripts/bench_sampler.py [--batch 64] [--vocab 128256] [--steps 10] [--device cpu]

Each step is what the sampler adds to a decode step: the logits processor (temperature 0.7, Gumbel noise)
and the argmax greedy decoding takes; multinomial is softmax + ``torch.multinomial``, the step of
``generate(do_sample=True)``, which cannot give one row's answer independently of its batch. The three are
interleaved step by step (so load on a shared machine hits them alike) and the median is printed with the
ratios. On a GPU pass ``--device cuda``: the new noise is then made there, while the host sampler (the code
before 2026-12, written out below) draws on the CPU and copies a batch x vocabulary tensor every step.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> dict[str, float]:
    import torch

    from rewardlab.generation import seeded_sampling

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=128_256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    logits = torch.randn(args.batch, args.vocab, generator=torch.Generator().manual_seed(0)).to(device) * 3
    ids = torch.zeros((args.batch, 1), dtype=torch.long, device=device)
    seeds = list(range(1000, 1000 + args.batch))
    device_gens = seeded_sampling(seeds, temperature=0.7)
    counter = seeded_sampling(seeds, temperature=0.7, noise="counter")
    host_gens = [torch.Generator().manual_seed(s) for s in seeds]

    def host(scores: torch.Tensor) -> torch.Tensor:  # generation.PerRowGumbel before 2026-12
        scores = scores.float() / 0.7
        u = torch.stack([torch.rand(scores.shape[1], generator=g) for g in host_gens])
        return scores + (-torch.log(-torch.log(u.clamp(min=1e-20)))).to(scores.device)

    multinomial_gen = torch.Generator(device=device).manual_seed(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    samplers = {
        "generators on the device (default)": lambda: device_gens(ids, logits).argmax(-1),
        "counter hash on the device": lambda: counter(ids, logits).argmax(-1),
        "host generators (before)": lambda: host(logits).argmax(-1),
        "multinomial": lambda: torch.multinomial(
            torch.softmax(logits.float() / 0.7, -1), 1, generator=multinomial_gen
        ).squeeze(1),
    }
    times: dict[str, list[float]] = {name: [] for name in samplers}
    for fn in samplers.values():  # warm-up: allocations, lazy init
        fn()
    for _ in range(args.steps):
        for name, fn in samplers.items():
            sync()
            started = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - started) * 1000)
    med = {name: statistics.median(t) for name, t in times.items()}
    threads = torch.get_num_threads()
    print(
        f"batch {args.batch}, vocabulary {args.vocab}, device {device}, {threads} thread(s), {args.steps} steps"
    )
    print("| sampler | ms per decode step (median) | min-max |\n|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {med[name]:.1f} | {min(t):.1f}-{max(t):.1f} |")
    old, plain = med["host generators (before)"], med["multinomial"]
    print()
    for name in ("generators on the device (default)", "counter hash on the device"):
        print(f"{name}: {med[name] / old:.2f}x the host sampler, {med[name] / plain:.2f}x multinomial")
    return med


if __name__ == "__main__":
    main()
