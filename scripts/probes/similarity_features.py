"""Probe, not a feature: does the frozen encoder's prompt-answer similarity add to the fine-tuned MiniLM RM?
And what would a two-seed ensemble add? (Issue 12 asks for +2 points over TRL; both would be new levers.)

all-MiniLM-L6-v2 was trained as a sentence embedder on question-answer pairs, and the shipped RM reads it
on one concatenated [prompt; answer] sequence. Zero-shot, cos(embed(prompt), embed(answer)) picks HH-RLHF's
preferred answer about as often as "longer answer wins". This probe measures, on the tuning split only
(tuning-train 1,348 pairs / tuning-eval 400, `scripts/bench_real.py`'s split, data seed 0):
1. zero-shot rules: similarity to the last user turn, to the whole prompt, and length;
2. the shipped RM trained on tuning-train (seeds 0 and 1), its accuracy on tuning-eval, and a cross-fitted
   logistic combination (5 folds x 5 repeats, on tuning-eval) of its score difference with the length and
   similarity differences: if the frozen features carried what the fine-tuned model missed, the
   combination would beat the RM alone;
3. the two seeds' RMs averaged (an ensemble of two).

    python scripts/probes/similarity_features.py --out runs/probe-similarity      # ~9 min on 2 cores

Measured 2026-12-01 (docs/reward-models.md, round six): the similarity and length features add nothing to the
fine-tuned RM.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_real  # noqa: E402


def embed(texts: list[str], tokenizer, model, batch: int = 64) -> np.ndarray:  # noqa: ANN001
    """Mean-pooled, normalised sentence embeddings, as sentence-transformers computes them for this model."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tokenizer(
                texts[i : i + batch], padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out).numpy()


def features(rows: list[dict]) -> dict[str, np.ndarray]:
    """Chosen-minus-rejected differences: similarity to the last user turn, to the whole prompt, log length."""
    from transformers import AutoModel, AutoTokenizer

    from rewardlab import models
    from rewardlab.data.formats.hh_rlhf import split

    path = models.resolve(bench_real.MODEL)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    prompts, chosen, rejected = zip(*(split(r["chosen"], r["rejected"]) for r in rows), strict=True)
    last_user = [p[p.rfind("Human:") + 6 :].strip() for p in prompts]
    q, p = embed(last_user, tokenizer, model), embed([x[-1000:] for x in prompts], tokenizer, model)
    c, r = embed(list(chosen), tokenizer, model), embed(list(rejected), tokenizer, model)
    return {
        "sim_last_turn": (q * c).sum(1) - (q * r).sum(1),
        "sim_prompt": (p * c).sum(1) - (p * r).sum(1),
        "log_length": np.log1p([len(x) for x in chosen]) - np.log1p([len(x) for x in rejected]),
    }


def rm_margins(run: Path, rows: list[dict]) -> np.ndarray:
    """The trained RM's score of the chosen answer minus the rejected one's."""
    from rewardlab.data.formats.hh_rlhf import split, to_messages
    from rewardlab.scoring import RewardScorer

    rm = RewardScorer.from_path(str(run / "model"))
    prompts, chosen, rejected = zip(*(split(r["chosen"], r["rejected"]) for r in rows), strict=True)
    messages = [to_messages(p) for p in prompts]
    return rm.score(messages, list(chosen))[:, 0] - rm.score(messages, list(rejected))[:, 0]


def cross_fitted(x: np.ndarray, repeats: int = 5) -> float:
    """Accuracy of a logistic rule on x (no intercept: swapping a pair flips its features), 5-fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    accs = []
    for rep in range(repeats):
        margin = np.zeros(len(x))
        for fit, held in KFold(5, shuffle=True, random_state=rep).split(x):
            both = np.vstack([x[fit], -x[fit]])
            labels = np.r_[np.ones(len(fit)), np.zeros(len(fit))]
            rule = LogisticRegression(fit_intercept=False, max_iter=2000).fit(both, labels)
            margin[held] = rule.decision_function(x[held])
        accs.append(float((margin > 0).mean()))
    return float(np.mean(accs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=bench_real.DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("runs/probe-similarity"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    splits = bench_real.make_splits(args.data, 0)
    args.out.mkdir(parents=True, exist_ok=True)
    train = bench_real.write_jsonl(splits["tune_train"], args.out / "tune_train.jsonl")
    held = bench_real.write_jsonl(splits["tune_eval"], args.out / "tune_eval.jsonl")
    margins = []
    for seed in args.seeds:
        run = args.out / f"rm-seed{seed}"
        if not (run / "model" / "config.json").exists():
            subprocess.run(
                [sys.executable, "-m", "rewardlab", "train", "rm", ROOT / "configs/rm/minilm.yaml",
                 f"data.train={train}", f"data.eval={held}", f"output_dir={run}", f"train.seed={seed}"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        margins.append(rm_margins(run, splits["tune_eval"]))
    f = features(splits["tune_eval"])
    print(f"tuning-eval pairs: {len(splits['tune_eval'])}")
    for name, x in f.items():
        print(f"zero-shot {name:14} {(x > 0).mean():.3f}")
    frozen = np.c_[f["log_length"], f["sim_last_turn"], f["sim_prompt"]]
    print(f"cross-fitted length + similarities       {cross_fitted(frozen):.3f}")
    for seed, m in zip(args.seeds, margins, strict=True):
        print(f"seed {seed}: RM {(m > 0).mean():.3f}; cross-fitted RM alone {cross_fitted(m[:, None]):.3f}, "
              f"RM + length + similarities {cross_fitted(np.c_[m, frozen]):.3f}")  # fmt: skip
    if len(margins) > 1:
        print(f"ensemble of {len(margins)} seeds (mean margin): {(np.mean(margins, axis=0) > 0).mean():.3f}")


if __name__ == "__main__":
    main()
