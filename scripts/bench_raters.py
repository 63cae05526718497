"""Benchmark `raters report` and `raters aggregate` on 100k and 1M synthetic judgments (target: 1M <= 60 s).

    .venv/bin/python scripts/bench_raters.py                 # 100k and 1M
    .venv/bin/python scripts/bench_raters.py --sizes 100000  # one size
    .venv/bin/python scripts/bench_raters.py --sizes 1000000 --baseline-src ../main/src   # vs another checkout

Each size is a pairwise campaign with overlap 3 (a third as many comparisons as judgments), ~500
judgments per rater (70% careful, 20% random clickers, 10% position-biased) and 2% gold comparisons,
written once as a dataset folder. Each phase runs in a fresh process so its peak RSS is its own.
Peers, on the same rows: crowd-kit's NoisyBradleyTerry objective + gradient (one evaluation; its gradient is
a Python loop per comparison) against ours, and crowd-kit's alpha_krippendorff (nltk) against ours.
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
from pathlib import Path

import numpy as np

MIX = {"careful": 0.7, "random": 0.2, "position_biased": 0.1}


def generate(n_judgments: int, out: Path, seed: int = 0) -> None:
    """Write a synthetic pairwise campaign with ``n_judgments`` rater judgments (plus gold) to ``out``."""
    from rewardlab.data.dataset import DatasetWriter
    from rewardlab.data.schema import content_hash

    rng = np.random.default_rng(seed)
    n_groups = n_judgments // 3
    n_raters = max(20, n_judgments // 500)
    profiles = rng.choice(list(MIX), size=n_raters, p=list(MIX.values()))
    u = rng.normal(size=(n_groups, 2))
    raters = rng.integers(0, n_raters, size=(n_groups, 3))
    shown_swap = rng.random((n_groups, 3)) < 0.5
    noise = rng.random((n_groups, 3))
    times = rng.lognormal(math.log(30), 0.4, size=(n_groups, 3))
    gold = rng.random(n_groups) < 0.02
    p_careful = 1 / (1 + np.exp(-4 * (u[:, 0] - u[:, 1])))  # P(response 0 wins) for a careful rater
    writer = DatasetWriter(out, chunk_size=100_000)
    for g in range(n_groups):
        prompt = f"Question {g}: which answer is better?"
        texts = (f"Answer A to question {g}.", f"Answer B to question {g}.")
        if gold[g]:
            _add(writer, content_hash, f"gold-{g}", prompt, list(texts), [1, 2] if u[g, 0] > u[g, 1] else [2, 1],
                 None, True, None)  # fmt: skip
        for n in range(3):
            r = int(raters[g, n])
            swap = bool(shown_swap[g, n])
            shown = [texts[1], texts[0]] if swap else list(texts)
            prof = profiles[r]
            if prof == "random" or (prof == "position_biased" and noise[g, n] < 0.9):
                first_wins = noise[g, n] < 0.5 if prof == "random" else True
            else:
                zero_wins = noise[g, n] < p_careful[g]
                first_wins = zero_wins != swap
            ranks = [1, 2] if first_wins else [2, 1]
            _add(
                writer,
                content_hash,
                f"j-{g}-{n}",
                prompt,
                shown,
                ranks,
                f"r-{r:05d}",
                False,
                float(times[g, n]),
            )
    writer.close()


def _add(writer, content_hash, rid, prompt, responses, ranks, rater, gold, time_s) -> None:
    rec = {"id": rid, "prompt": prompt, "responses": responses, "ranks": ranks, "rater": rater,
           "strength": None, "scores": None, "gold": gold, "time_s": time_s, "meta": None,
           "response_ids": None, "soft_pairs": None, "weight": 1.0, "raters": None, "agreement": None,
           "source": "bench"}  # fmt: skip
    rec["hash"] = content_hash(rec)
    writer.add(rec)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, data: Path) -> dict:
    """Run one phase in this process and return its timings (called in a child process)."""
    from rewardlab.config import RatersConfig

    cfg = RatersConfig()
    start = time.perf_counter()
    if name == "report":
        from rewardlab.raters import quality
        from rewardlab.raters.table import from_dataset

        j = from_dataset(data)
        t_read = time.perf_counter() - start
        rep = quality.build_report(j, cfg)
        extra = {"read_s": round(t_read, 1), "flagged": len(rep["flagged"]), "raters": len(rep["raters"])}
    elif name.startswith("aggregate"):
        from rewardlab.raters.aggregate import aggregate_dataset

        method = name.split(":", 1)[1] if ":" in name else None
        with tempfile.TemporaryDirectory() as tmp:
            summary = aggregate_dataset(data, Path(tmp) / "agg", cfg, method)
        extra = {"groups": summary["groups"], "excluded": summary["judgments_excluded"]}
    elif name == "peers":
        return peers(data)
    else:
        raise SystemExit(f"unknown phase {name}")
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak_rss_mb()), **extra}


def peers(data: Path) -> dict:
    """crowd-kit vs rewardlab on the same rows: NoisyBT objective+gradient, Krippendorff's alpha."""
    import pandas as pd
    from crowdkit.aggregation import NoisyBradleyTerry
    from crowdkit.metrics.data import alpha_krippendorff

    from rewardlab.raters import noisy_bt, quality
    from rewardlab.raters.table import from_dataset

    j = from_dataset(data)
    left, right, rater, y, c = noisy_bt.rows_from_judgments(j)
    n_items, n_raters = j.n_items, len(j.raters)
    x = np.random.default_rng(0).normal(size=n_items + 2 * n_raters)
    start = time.perf_counter()
    noisy_bt._objective(x, left, right, rater, y, c, n_items, n_raters, 0.1, 0.05)
    ours_nbt = time.perf_counter() - start
    np_data = np.stack([left, right, np.where(y > 0, left, right)], axis=1) + 1
    x_ck = np.concatenate([[0.0], x])
    start = time.perf_counter()
    NoisyBradleyTerry._compute_log_likelihood(x_ck, np_data, rater, n_items, n_raters, 1e-5)
    NoisyBradleyTerry._compute_gradient(x_ck, np_data, rater, n_items, n_raters, 1e-5)
    theirs_nbt = time.perf_counter() - start
    start = time.perf_counter()
    quality.krippendorff_alpha(quality.unit_counts(j), "nominal")
    ours_alpha = time.perf_counter() - start
    df = pd.DataFrame({"task": j.p_unit, "worker": j.p_rater, "label": j.p_outcome.astype(int)})
    start = time.perf_counter()
    with quality.quiet_crowdkit():
        alpha_krippendorff(df)
    theirs_alpha = time.perf_counter() - start
    return {"rows": len(y), "nbt": [theirs_nbt, ours_nbt], "alpha": [theirs_alpha, ours_alpha]}


def child(name: str, data: Path, src: str | None = None) -> dict:
    """Run one phase in a fresh process; ``src``: put that source tree first on the path (a baseline)."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1"}
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    res = subprocess.run([sys.executable, __file__, "--phase", name, "--data", str(data)], capture_output=True,
                         text=True, env=env)  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--methods", default="ds3,dawid-skene,noisy-bt,majority", help="aggregation methods to time"
    )
    ap.add_argument(
        "--peers-max", type=int, default=100_000, help="largest size to run the crowd-kit peers on"
    )
    ap.add_argument("--baseline-src", default=None,
                    help="also run report and the default aggregate with this source tree (e.g. ../main/src), "
                    "alternating with ours on the same data, and print the ratios")  # fmt: skip
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, Path(args.data))))
        return
    rows, peer_rows, base_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            data = Path(tmp) / f"bench-{size}"
            start = time.perf_counter()
            generate(size, data)
            print(f"generated {size:,} judgments in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            for name in ["report"] + [f"aggregate:{m}" for m in args.methods.split(",")]:
                res = child(name, data)
                rows.append((size, name, res))
                print(
                    f"{size:>9,} {name:<22} {res['seconds']:>7.1f} s  {res['peak_rss_mb']:>6} MB",
                    file=sys.stderr,
                )
            if args.baseline_src:
                for name in ("report", "aggregate"):
                    base, ours = child(name, data, args.baseline_src), child(name, data)
                    base_rows.append((size, name, base, ours))
            if size <= args.peers_max:
                peer_rows.append((size, child("peers", data)))
    print(f"\n{'judgments':>10} | {'phase':<22} | {'seconds':>8} | {'peak RSS MB':>11} | {'target':>8}")
    print("-" * 72)
    for size, name, res in rows:
        target = "<= 60 s" if size >= 1_000_000 else ""
        ok = "" if not target else (" ok" if res["seconds"] <= 60 else " MISS")
        print(f"{size:>10,} | {name:<22} | {res['seconds']:>8.1f} | {res['peak_rss_mb']:>11} | {target}{ok}")
    if base_rows:
        print(f"\n{'baseline vs this tree (default config)':<40} | {'baseline s':>10} | {'ours s':>8} | {'ratio':>6} | "
              f"{'baseline MB':>11} | {'ours MB':>8}")  # fmt: skip
        print("-" * 100)
        for size, name, base, ours in base_rows:
            print(f"{size:>9,} {name:<30} | {base['seconds']:>10.1f} | {ours['seconds']:>8.1f} | "
                  f"{ours['seconds'] / max(base['seconds'], 1e-9):>5.2f}x | {base['peak_rss_mb']:>11} | "
                  f"{ours['peak_rss_mb']:>8}")  # fmt: skip
    if peer_rows:
        print(
            f"\n{'peer (same rows)':<44} | {'rows':>8} | {'crowd-kit s':>11} | {'rewardlab s':>11} | {'ratio':>7}"
        )
        print("-" * 92)
        for _size, res in peer_rows:
            for key, label in [
                ("nbt", "NoisyBT objective+gradient, one evaluation"),
                ("alpha", "Krippendorff alpha (nominal)"),
            ]:
                theirs, ours = res[key]
                print(
                    f"{label:<44} | {res['rows']:>8,} | {theirs:>11.3f} | {ours:>11.3f} | {theirs / max(ours, 1e-9):>6.0f}x"
                )


if __name__ == "__main__":
    main()
