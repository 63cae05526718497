"""Active learning on the simulator: does `uncertainty` selection reach an RM accuracy with fewer labels than
`random`?

    python scripts/active_learning.py --out runs/active-learning             # linear RM, 5 seeds: minutes
    python scripts/active_learning.py --rm tiny-rm --seeds 3 --out /tmp/al   # the real recipe: ~25 min

Each seed: a pool of simulated prompts with K candidate answers (the simulator's candidate generator stands
in for the policy, so the run stays CPU-cheap), and held-out prompts ranked by the simulator's truth. Round 0
rates `--initial` random pairs; every next round trains a tiny RM from scratch on all labels so far (`--rm
linear`: Bradley-Terry on hashed words; `--rm tiny-rm`: the real `train rm` recipe on offline:tiny-rm), scores the pool and sends `--budget` more pairs to the simulated raters, chosen by the
strategy (`rewardlab.recipes.sample.select_items`, the code `rewardlab sample` uses). After each round the
RM's accuracy on the held-out truth is recorded. Writes `<out>/active_learning.json` (the report plots it),
`<out>/metrics.json`, and prints the curve as a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DISABLE_TQDM", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/active-learning")
    ap.add_argument("--strategies", nargs="+", default=["random", "uncertainty"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=4, help="labelling rounds after the initial one")
    ap.add_argument("--initial", type=int, default=40, help="random pairs rated before the first RM")
    ap.add_argument("--budget", type=int, default=40, help="pairs rated per round")
    ap.add_argument("--pool", type=int, default=150, help="pool prompts (K answers each)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-per-prompt", type=int, default=1, help="pairs one prompt may add per round")
    ap.add_argument("--heldout", type=int, default=120, help="held-out prompts ranked by the truth")
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument(
        "--rm",
        choices=["tiny-rm", "linear"],
        default="linear",
        help="tiny-rm: the real `train rm` recipe on offline:tiny-rm; linear: a Bradley-Terry model "
        "on hashed words (seconds, for many seeds)",
    )
    ap.add_argument("--model", default="offline:tiny-rm")
    ap.add_argument(
        "--target", type=float, default=None, help="accuracy target (default: random's final mean)"
    )
    return ap.parse_args(argv)


def sim_config(seed: int, prompts: int, k: int) -> Any:
    """One careful-ish rater pool, one judgment per pair (a label = one rated pair), no gold items."""
    from rewardlab.config import SimulateConfig

    return SimulateConfig(seed=seed, prompts=prompts, k_mix={str(k): 1.0}, overlap=1, gold_rate=0.0, raters=8)


def pair_item(item: dict[str, Any], i: int, j: int) -> dict[str, Any]:
    return {"id": f"{item['id']}-{i}-{j}", "prompt": item["prompt"], "responses": [item["responses"][i],
            item["responses"][j]], "meta": item["meta"]}  # fmt: skip


def train_rm(
    records: list[dict], heldout_dir: Path, work: Path, args: argparse.Namespace, seed: int
) -> tuple[Path, float]:
    """Train the tiny RM from scratch on ``records``; its final eval on the held-out truth is the accuracy."""
    from rewardlab.config import RMConfig
    from rewardlab.data.dataset import write_dataset
    from rewardlab.recipes import rm as rm_recipe

    if work.exists():
        shutil.rmtree(work)
    write_dataset(records, work / "labels")
    cfg = RMConfig.model_validate(
        {
            "output_dir": str(work / "rm"),
            "model": {"name_or_path": args.model},
            "data": {"train": str(work / "labels"), "eval": str(heldout_dir), "max_length": 128},
            "train": {"lr": 1e-3, "epochs": args.epochs, "batch_size": 8, "seed": seed, "log_every": 50},
            "tracking": {"backend": "none"},
        }
    )
    with contextlib.redirect_stdout(sys.stderr), contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115
        metrics = rm_recipe.run(cfg)
    return work / "rm" / "model", float(metrics["accuracy"])


class LinearRM:
    """Bradley-Terry on hashed response words and bigrams (crossed with the task family): a tiny RM."""

    dims = 1 << 14

    def __init__(self, records: list[dict], seed: int):
        from sklearn.linear_model import LogisticRegression

        from rewardlab.data.dataset import pairs

        rows, labels = [], []
        for rec in records:
            for pair in pairs(rec):
                if pair["tie"]:
                    continue
                diff = self.features(rec, pair["chosen"]) - self.features(rec, pair["rejected"])
                rows += [diff, -diff]
                labels += [1, 0]
        self.model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=500, random_state=seed)
        self.model.fit(np.array(rows), np.array(labels))

    def features(self, rec: dict, text: str) -> np.ndarray:
        import zlib

        family = ((rec.get("meta") or {}).get("task") or {}).get("family", "")
        words = text.lower().split()
        grams = words + [a + " " + b for a, b in zip(words, words[1:])] + [f"len{min(len(words) // 5, 8)}"]
        x = np.zeros(self.dims)
        for g in grams:
            for key in (g, family + ":" + g):
                x[zlib.crc32(key.encode()) % self.dims] += 1.0
        return x / max(1.0, len(grams)) ** 0.5

    def score(self, recs: list[dict], texts: list[str]) -> np.ndarray:
        return np.array([self.features(r, t) @ self.model.coef_[0] for r, t in zip(recs, texts)])[:, None]

    def accuracy(self, heldout: list[dict]) -> float:
        from rewardlab.data.dataset import pairs

        right = []
        for rec in heldout:
            for pair in pairs(rec):
                if not pair["tie"]:
                    a, b = self.score([rec, rec], [pair["chosen"], pair["rejected"]])[:, 0]
                    right.append(1.0 if a > b else 0.5 if a == b else 0.0)
        return float(np.mean(right))


def choose(strategy: str, pool: list[dict], labeled: set[tuple[int, int, int]], rm: Any,
           budget: int, seed: int, max_per_prompt: int | None) -> list[tuple[int, int, int]]:  # fmt: skip
    """The next pairs (pool item, answer i, answer j) to rate, never one already rated."""
    from rewardlab.recipes.sample import Group, candidate_items, select_items

    groups = [Group(it["prompt"], it["meta"], list(it["responses"])) for it in pool]
    if rm is not None:
        if isinstance(rm, LinearRM):
            flat = rm.score(
                [it for it in pool for _ in it["responses"]], [r for g in groups for r in g.responses]
            )
        else:
            from rewardlab.scoring import RewardScorer

            scorer = RewardScorer.from_path(rm)
            flat = scorer.score(
                [g.prompt for g in groups for _ in g.responses], [r for g in groups for r in g.responses]
            )
        start = 0
        for g in groups:
            g.overall = flat[start : start + len(g.responses), :1]
            start += len(g.responses)
    items = [it for it in candidate_items(groups, "pair") if (it.group, *it.indices) not in labeled]
    chosen = select_items(
        items, groups, strategy if rm is not None else "random", budget, seed, max_per_prompt
    )
    return [(it.group, *it.indices) for it in chosen]


def batch_quality(batch: list[dict], rated: list[dict]) -> tuple[float, float]:
    """Why a strategy helps or not: the mean true utility gap of the picked pairs, and the share of the
    raters' labels that agree with the truth (a tie label counts half)."""
    from rewardlab.data.sim_tasks import true_utilities

    gaps = [abs(float(np.subtract(*true_utilities(b["meta"]["task"], b["responses"])))) for b in batch]
    right = []
    for rec in rated:
        if rec.get("gold") or not rec.get("rater"):
            continue
        u = true_utilities(rec["meta"]["task"], rec["responses"])
        r = rec["ranks"]
        right.append(0.5 if r[0] == r[1] else float((r[0] < r[1]) == (u[0] > u[1])))
    return float(np.mean(gaps)), float(np.mean(right)) if right else float("nan")


def run_curve(
    strategy: str, seed: int, args: argparse.Namespace, out: Path
) -> list[tuple[int, float, float, float]]:
    from rewardlab.data.dataset import write_dataset
    from rewardlab.data.simulate import make_items, rate_items
    from rewardlab.recipes.pipeline_eval import truth_records

    pool = make_items(sim_config(seed, args.pool, args.k))
    heldout_dir = out / "work" / f"heldout-{seed}"
    held = make_items(sim_config(10_000 + seed, args.heldout, args.k))
    pool_prompts = {it["prompt"] for it in pool}
    heldout = truth_records([h for h in held if h["prompt"] not in pool_prompts])
    if args.rm == "tiny-rm" and not heldout_dir.exists():
        write_dataset(heldout, heldout_dir)
    rater_cfg = sim_config(seed, args.pool, args.k)
    labeled: set[tuple[int, int, int]] = set()
    records: list[dict] = []
    curve: list[tuple[int, float]] = []
    model_dir = None
    for rnd in range(args.rounds + 1):
        n = args.initial if rnd == 0 else args.budget
        picks = choose(strategy, pool, labeled, model_dir, n, seed * 100 + rnd, args.max_per_prompt)
        labeled.update(picks)
        batch = [pair_item(pool[g], i, j) for g, i, j in picks]
        rated = rate_items(batch, rater_cfg, seed * 1000 + rnd)
        records += rated
        gap, label_acc = batch_quality(batch, rated)
        if args.rm == "linear":
            model_dir = LinearRM(records, seed)
            acc = model_dir.accuracy(heldout)
        else:
            model_dir, acc = train_rm(records, heldout_dir, out / "work" / f"{strategy}-{seed}", args, seed)
        curve.append((len(labeled), acc, gap, label_acc))
        print(f"  {strategy:<12} seed {seed} round {rnd}: {len(labeled):4d} labels -> held-out accuracy {acc:.3f}"
              f" (picked pairs: true gap {gap:.3f}, raters right {label_acc:.2f})", file=sys.stderr)  # fmt: skip
    return curve


def summarize(curves: dict[str, list[list[tuple]]], target: float | None) -> dict[str, Any]:
    strategies: dict[str, Any] = {}
    for name, per_seed in curves.items():
        labels = [point[0] for point in per_seed[0]]
        table = np.array([[point[1:] for point in c] for c in per_seed])  # [seed, round, (acc, gap, right)]
        acc = table[:, :, 0]
        strategies[name] = {
            "labels": labels,
            "accuracy_mean": [round(float(v), 4) for v in acc.mean(0)],
            "accuracy_std": [round(float(v), 4) for v in acc.std(0)],
            "per_seed": acc.round(4).tolist(),
            "picked_true_gap_mean": [round(float(v), 4) for v in table[:, :, 1].mean(0)],
            "picked_label_accuracy": [round(float(v), 4) for v in np.nanmean(table[:, :, 2], 0)],
        }
    if target is None and "random" in strategies:
        target = strategies["random"]["accuracy_mean"][-1]
    reach = {}
    for name, s in strategies.items():
        hit = [x for x, m in zip(s["labels"], s["accuracy_mean"]) if target is not None and m >= target]
        reach[name] = hit[0] if hit else None
    return {"strategies": strategies, "target_accuracy": target, "labels_to_target": reach}


def print_table(result: dict[str, Any]) -> None:
    names = list(result["strategies"])
    labels = result["strategies"][names[0]]["labels"]
    print("labels | " + " | ".join(f"{n:>17}" for n in names))
    for row, x in enumerate(labels):
        cells = [
            f"{s['accuracy_mean'][row]:.3f} +- {s['accuracy_std'][row]:.3f}"
            for s in result["strategies"].values()
        ]
        print(f"{x:>6} | " + " | ".join(f"{c:>17}" for c in cells))
    print(
        "picked pairs per round (mean over seeds): true utility gap / share of rater labels matching the truth"
    )
    for n, st in result["strategies"].items():
        cells = [f"{g:.3f}/{a:.2f}" for g, a in zip(st["picked_true_gap_mean"], st["picked_label_accuracy"])]
        print(f"  {n:<12} " + "  ".join(cells))
    target = result["target_accuracy"]
    print(
        f"labels to reach held-out accuracy {target:.3f}: "
        + ", ".join(
            f"{n} {v if v is not None else 'not reached'}" for n, v in result["labels_to_target"].items()
        )
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    curves: dict[str, list] = {s: [] for s in args.strategies}
    for seed in range(args.seeds):
        for strategy in args.strategies:
            curves[strategy].append(run_curve(strategy, seed, args, out))
    result = summarize(curves, args.target)
    result["settings"] = {k: v for k, v in vars(args).items()}
    result["seconds"] = round(time.time() - start, 1)
    (out / "active_learning.json").write_text(json.dumps(result, indent=1))
    final = {f"{n}_final_accuracy": s["accuracy_mean"][-1] for n, s in result["strategies"].items()}
    final.update({f"{n}_labels_to_target": v for n, v in result["labels_to_target"].items()})
    (out / "metrics.json").write_text(
        json.dumps({**final, "target_accuracy": result["target_accuracy"]}, indent=1)
    )
    (out / "manifest.json").write_text(
        json.dumps({"stage": "active-learning", "settings": result["settings"]})
    )
    (out / "config.yaml").write_text(yaml.safe_dump({"stage": "active-learning", **result["settings"]}))
    shutil.rmtree(out / "work", ignore_errors=True)
    print_table(result)
    print(f"written: {out / 'active_learning.json'} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
