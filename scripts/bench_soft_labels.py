"""Which soft label trains the better reward model from sparse votes: ds3's posterior or its vote label?

    python scripts/bench_soft_labels.py --seeds 1 2 3 --out runs/bench-soft-labels
    python scripts/bench_soft_labels.py --data PATH/pandalm-testset-v1.json.gz      # your own copy

Why: ``ds3.soft_label`` chooses what a merged comparison's p means: ``posterior`` (the chance that a is truly
better) or ``vote`` (the chance that a new, typical rater picks a: the posterior times the pool's confusion).
The vote label predicts held-out human votes better (scripts/bench_aggregate.py --sparse) and the posterior
is better calibrated against a simulator's true order; what matters downstream is the reward model trained
on them. This benchmark measures that on real human judgments.

Data: PandaLM's test set (``../shared/realdata/pandalm-testset-v1.json.gz``, 939 comparisons of two model
answers, each judged by the same 3 annotators). Comparisons are split by prompt with a fixed split seed:
30% of the prompts are the test part, the rest the train part. Per seed:
- train: the train part subsampled as a sparse campaign (``bench_aggregate.sparse_records``: 10% of the
  comparisons keep all 3 votes, the rest one vote at random; 20 pseudo-raters per annotator with lognormal
  workloads, 10% of them turned into random clickers or adversaries), merged by ``rewardlab raters
  aggregate`` twice, once per soft label (everything else the shipped defaults), and each merged set
  trains ``configs/rm/minilm.yaml`` with the same training seed;
- test: every test comparison whose 3 annotators' decided votes have a strict majority, labelled by it
  (the test part never enters aggregation or training).
Reported per label: the RM's accuracy on the test majorities, its ECE there (rewardlab's metrics.json), and
the log loss of sigmoid(r_a - r_b) against each of the test comparisons' decided human votes (how well the
RM's probability predicts a rater). Paired differences (vote - posterior) per seed, mean +- SE over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_aggregate  # noqa: E402  (the sparse subsampling the aggregation benchmark reports on)

ROOT = Path(__file__).resolve().parent.parent
PANDALM = next(
    (p / "shared/realdata/pandalm-testset-v1.json.gz" for p in ROOT.parents
     if (p / "shared/realdata/pandalm-testset-v1.json.gz").is_file()),
    ROOT.parent / "shared/realdata/pandalm-testset-v1.json.gz",
)  # fmt: skip
LABELS = ("posterior", "vote")


def split(records: list[dict], split_seed: int, test_share: float = 0.3) -> tuple[list[dict], list[dict]]:
    """(train records, test records) by prompt: no prompt is on both sides."""
    prompts = sorted({r["prompt"] for r in records})
    random.Random(split_seed).shuffle(prompts)
    test_prompts = set(prompts[: int(round(test_share * len(prompts)))])
    return [r for r in records if r["prompt"] not in test_prompts], [
        r for r in records if r["prompt"] in test_prompts
    ]


def test_set(records: list[dict]) -> tuple[list[dict], list[list[int]]]:
    """(one hard-labelled record per comparison with a strict majority of decided votes, the decided votes
    of each as +1 = first response better / -1 = second)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["prompt"], *r["responses"]), []).append(r)
    out, votes = [], []
    for (prompt, *responses), recs in groups.items():
        v = [1 if r["ranks"][0] < r["ranks"][1] else -1 for r in recs if r["ranks"][0] != r["ranks"][1]]
        if sum(v) == 0:
            continue
        ranks = [1, 2] if sum(v) > 0 else [2, 1]
        out.append({"id": f"test-{len(out)}", "prompt": prompt, "responses": responses, "ranks": ranks,
                    "rater": "majority-of-3"})  # fmt: skip
        votes.append(v)
    return out, votes


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(cmd: list[str], log: Path, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    with log.open("w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {rc}); log: {log}")


def label_stats(agg: Path) -> dict[str, float]:
    """Mean max(p, 1 - p) of the merged training labels (how sure the labels are)."""
    from rewardlab.data.dataset import iter_records, load_dataset, pairs

    sure = [max(p["p"], 1 - p["p"]) for r in iter_records(load_dataset(agg)) for p in pairs(r)]
    return {"label_sureness": float(np.mean(sure)), "train_pairs": len(sure)}


def vote_log_loss(run_dir: Path, test: list[dict], votes: list[list[int]]) -> float:
    """Mean log loss of sigmoid(r_first - r_second) against every decided human vote of the test pairs."""
    from rewardlab.scoring import RewardScorer

    scorer = RewardScorer.from_path(run_dir, device="cpu")
    prompts = [r["prompt"] for r in test for _ in (0, 1)]
    responses = [x for r in test for x in r["responses"]]
    s = scorer.score(prompts, responses)[:, 0].reshape(-1, 2)
    gap = s[:, 0] - s[:, 1]
    margins = np.array([v * g for g, vs in zip(gap, votes, strict=True) for v in vs])
    return float(np.logaddexp(0.0, -margins).mean())  # log(1 + e^-m) without overflow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=PANDALM, help="pandalm-testset-v1.json(.gz)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-soft-labels")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "rm" / "minilm.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="rm config overrides (key=value)")
    args = ap.parse_args()
    from rewardlab.data.dataset import write_dataset
    from rewardlab.data.schema import normalize

    records = bench_aggregate.pandalm_records(args.data)
    train_part, test_part = split(records, args.split_seed)
    test, votes = test_set(test_part)
    overlap = {r["prompt"] for r in train_part} & {r["prompt"] for r in test}
    assert not overlap, f"{len(overlap)} test prompts are also in the train part"
    test_file = write_jsonl(test, args.out / "test.jsonl")
    print(
        f"train part {len(train_part)} judgments, test {len(test)} comparisons ({sum(map(len, votes))} votes)"
    )
    cli = [sys.executable, "-m", "rewardlab.cli"]
    results: dict[str, dict[int, dict]] = {lab: {} for lab in LABELS}
    for seed in args.seeds:
        sparse, _ = bench_aggregate.sparse_records(train_part, seed)
        raw = args.out / f"seed{seed}" / "train"
        if not raw.exists():
            write_dataset([normalize(r) for r in sparse], raw)
        for lab in LABELS:
            base = args.out / f"seed{seed}" / lab
            agg, rm = base / "agg", base / "rm"
            base.mkdir(parents=True, exist_ok=True)
            if not (agg / "rater_report.json").exists():
                run([*cli, "raters", "aggregate", str(raw), "--out", str(agg), f"ds3.soft_label={lab}"],
                    base / "aggregate.log", args.threads)  # fmt: skip
            start = time.time()
            if not (rm / "metrics.json").exists():
                run([*cli, "train", "rm", str(args.config), f"data.train={agg}", f"data.eval={test_file}",
                     f"train.seed={seed}", f"output_dir={rm}", *args.overrides], base / "rm.log", args.threads)  # fmt: skip
            m = json.loads((rm / "metrics.json").read_text())
            ev = m.get("eval", m)
            row = {"accuracy": ev["accuracy"], "ece": ev.get("ece"), "vote_log_loss": vote_log_loss(rm, test, votes),
                   **label_stats(agg), "wall_s": round(time.time() - start, 1)}  # fmt: skip
            results[lab][seed] = row
            print(f"seed {seed} {lab:<9} " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in row.items()), flush=True)  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    seeds = args.seeds
    print(f"\n{'label':<10} {'accuracy':>16} {'ECE':>16} {'vote log loss':>16} {'label sureness':>16}")
    for lab in LABELS:
        cols = []
        for k in ("accuracy", "ece", "vote_log_loss", "label_sureness"):
            v = [results[lab][s][k] for s in seeds]
            se = np.std(v, ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
            cols.append(f"{np.mean(v):.4f} +- {se:.4f}")
        print(f"{lab:<10} " + " ".join(f"{c:>16}" for c in cols))
    for k in ("accuracy", "ece", "vote_log_loss"):
        d = [results["vote"][s][k] - results["posterior"][s][k] for s in seeds]
        se = np.std(d, ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        print(
            f"vote - posterior, {k}: {np.mean(d):+.4f} +- {se:.4f} (per seed: {', '.join(f'{x:+.4f}' for x in d)})"
        )


if __name__ == "__main__":
    main()
