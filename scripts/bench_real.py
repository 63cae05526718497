"""Benchmark on real human preferences: rewardlab's shipped MiniLM config against TRL's RewardTrainer.

    python scripts/bench_real.py                         # test split, 3 seeds (final numbers)
    python scripts/bench_real.py --split tune --only rewardlab --seeds 0 train.lr=1e-4   # tuning a default
    python scripts/bench_real.py --data ~/hh-rlhf/helpful-base/test.jsonl.gz    # your own copy
    python scripts/bench_real.py --backbone smollm2 --limit 40 --threads 1     # SmolLM2-135M decoder RM
    python scripts/bench_real.py --merge s0.json s1.json s2.json   # one paired table from one-seed runs
    python scripts/bench_real.py --backbone smollm2 --limit 200 --same-pairs   # both tools on TRL's kept pairs

Data: Anthropic HH-RLHF helpful-base test split (2,354 human pairs; `../shared/realdata/`, or `--data` for
the file from the `Anthropic/hh-rlhf` dataset, `data_dir="helpful-base"`). Pairs are grouped by their
conversation up to the last Assistant turn (so no prompt sits on both sides of a split) and the groups are
shuffled with a fixed data seed (`--split-seed`, not the training seed): the first >= 600 pairs are the test
part, the rest the train part (1,754 and 600 with the defaults). The tuning split is carved from the train
part only, the same way: >= 400 tuning-eval pairs, the rest tuning-train. Defaults were chosen on the tuning
split (`--split tune`); the test part is only for the final numbers.

Both tools get the same raw file (HH's "\\n\\nHuman: ... \\n\\nAssistant: ..." chosen/rejected transcripts),
the same backbone (all-MiniLM-L6-v2), max_length 256 and epochs, and the same training seed:
- rewardlab: the real console script, `rewardlab train rm configs/rm/minilm.yaml data.train=... data.eval=...`
  (test accuracy is its own metrics.json, computed at the end of its run).
- TRL: RewardTrainer with its defaults (lr 1e-4, batch 8, linear schedule, no warmup, dropout off) and only
  what CPU and a BERT tokenizer need: eos_token="[SEP]", bf16=False, gradient checkpointing off,
  dataloader_pin_memory=False; `--trl-lr` changes its lr (the issue's probe used 3e-5 and 1e-4). Its test
  accuracy scores each test transcript as it trained (text + eos), cut from the LEFT to max_length: TRL
  would drop over-long pairs, but every test pair must be scored, and left truncation keeps the responses.

rewardlab runs twice per seed, as shipped (prompts cut to their last 64 tokens) and uncapped
(`max_prompt_length=null`), beside TRL in the same invocation. Each run is its own process (so peak RSS is
clean; read with os.wait4) and its wall time is the whole run: process start, imports, data, training,
evaluation, saving. pairs/s is training pairs over training-loop time (TRL: train_runtime); real tokens/s
is the non-pad tokens of both responses of every trained pair (prompt + response each) over the same time:
the cap shortens what rewardlab trains on, so pairs/s alone flatters it.

`--backbone smollm2` (issue 30 item 5): SmolLM2-135M-Instruct for both tools, rewardlab's
configs/rm/smollm2.yaml run packed (`train.packing=true`) and padded (`train.packing=false`), nothing else
different, beside TRL. Both tools get the same text: each HH pair split into chat messages by rewardlab's
importer and formatted with the model's chat template (`models.format_conversation`, ending at its
<|im_end|>). SmolLM2 ships pad = eos = <|im_end|>; transformers' sequence-classification head reads the last
token not equal to the pad id, so TRL's tokenizer gets a pad of its own (the unk token <|endoftext|>, which
HH text never holds; checked on every training and test text) and both tools read the reward at the
<|im_end|>; rewardlab pools by the attention mask (docs/reward-models.md). Prints a table with the per-seed paired difference and its standard error, and
writes the results as JSON (`--json`).

`--same-pairs` trains every tool on the pairs TRL keeps: TRL drops a pair whose chosen or rejected text is over
max_length, rewardlab keeps it and cuts its prompt from the left, so by default the two train on different
pairs. With it, a difference left between the tools is not that one (the test pairs are the same either way).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH_FILE = Path("shared") / "realdata" / "hh-rlhf-helpful-base.test.jsonl.gz"
# ../shared next to the repo; a git worktree (repo/../wt/name) finds it one more level up
DEFAULT_DATA = next((p / HH_FILE for p in ROOT.parents if (p / HH_FILE).is_file()), ROOT.parent / HH_FILE)
CONFIG = ROOT / "configs" / "rm" / "minilm.yaml"
MODEL = "offline:minilm-l6"
MAX_LENGTH = 256
TEST_PAIRS, TUNE_PAIRS = 600, 400


# ---------------------------------------------------------------- data


def read_pairs(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def prompt_key(row: dict) -> str:
    """The conversation up to the last Assistant turn both transcripts share (rewardlab's HH importer)."""
    from rewardlab.data.formats.hh_rlhf import split

    return split(row["chosen"], row["rejected"])[0]


def grouped_split(rows: list[dict], n_first: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle prompt groups with ``seed``; whole groups go to the first part until it has >= n_first rows."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(prompt_key(row), []).append(row)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    first, rest = [], []
    for key in keys:
        (first if len(first) < n_first else rest).extend(groups[key])
    return first, rest


def valid(row: dict) -> bool:
    """False for the pairs rewardlab's importer quarantines (an empty response, or the same text twice:
    no preference to learn). The benchmark removes them for BOTH tools before splitting, so both train and
    are tested on the same pairs; rewardlab then keeps every pair it is given."""
    from rewardlab.data.formats.hh_rlhf import split

    _, chosen, rejected = split(row["chosen"], row["rejected"])
    return bool(chosen.strip()) and bool(rejected.strip()) and chosen.strip() != rejected.strip()


def make_splits(path: Path, seed: int) -> dict[str, list[dict]]:
    every = read_pairs(path)
    rows = [r for r in every if valid(r)]
    test, train = grouped_split(rows, TEST_PAIRS, seed)
    tune_eval, tune_train = grouped_split(train, TUNE_PAIRS, seed + 1)
    return {
        "read": every,
        "invalid": [r for r in every if not valid(r)],
        "train": train,
        "test": test,
        "tune_train": tune_train,
        "tune_eval": tune_eval,
    }


def length_rules(rows: list[dict]) -> dict[str, float]:
    """Accuracy of the two length rules on ``rows`` (equal lengths count half): a reward model that only
    learned length would score the 'longer answer wins' number (about 0.60 on HH helpful-base)."""
    from rewardlab.data.formats.hh_rlhf import split

    longer = 0.0
    for row in rows:
        _, chosen, rejected = split(row["chosen"], row["rejected"])
        longer += 1.0 if len(chosen) > len(rejected) else 0.5 if len(chosen) == len(rejected) else 0.0
    return {"longer_wins": longer / len(rows), "shorter_wins": 1.0 - longer / len(rows)}


def write_jsonl(rows: list[dict], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({"chosen": row["chosen"], "rejected": row["rejected"]}) + "\n")
    return path


def with_eos(text: str, eos: str) -> str:
    """The text as TRL's RewardTrainer tokenizes it: ending in the eos (appended unless already there)."""
    return text if text.endswith(eos) else text + eos


def pairs_trl_keeps(rows: list[dict], backbone: str) -> list[dict]:
    """The pairs TRL's RewardTrainer trains on: it drops a pair when its chosen or rejected text, eos
    appended, is over max_length tokens, where rewardlab keeps the pair and cuts its prompt from the left.
    ``--same-pairs`` trains both tools on these, so a difference left is not the over-long pairs'.
    TRL's own count of what it kept is in every result (``pairs_kept``): with this filter it keeps all."""
    from rewardlab import models

    spec = BACKBONES[backbone]
    tokenizer, eos = trl_tokenizer(models.resolve(spec.model))
    eos = eos or tokenizer.eos_token
    texts = chat_texts(rows, tokenizer) if spec.chat else rows
    fits = [
        all(len(tokenizer(with_eos(t, eos))["input_ids"]) <= MAX_LENGTH for t in (x["chosen"], x["rejected"]))
        for x in texts
    ]
    return [row for row, ok in zip(rows, fits, strict=True) if ok]


# ---------------------------------------------------------------- TRL worker (its own process)


def trl_tokenizer(path: str) -> tuple[object, str | None]:
    """The backbone's own tokenizer, with what TRL's RewardTrainer needs and nothing forced on a decoder:
    an eos (a decoder keeps its own; BERT has none, its [SEP] ends texts), and a pad token that is NOT the
    eos. transformers' sequence-classification heads read the last token *not equal to pad_token_id*; with
    pad = eos (SmolLM2 ships pad = eos = <|im_end|>, Llama-3/Mistral loaders set it) every text that ends in
    eos would be read one token early, in training and scoring alike. So a pad equal to the eos (or none)
    becomes a special token that real text never holds (the unk token, else a new "<|pad|>").
    Returns (tokenizer, the eos_token to hand RewardConfig: None keeps the tokenizer's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    eos = None
    if tokenizer.eos_token is None:  # BERT: TRL stops without an eos
        eos = tokenizer.sep_token
        tokenizer.eos_token = eos
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        unk = tokenizer.unk_token
        if unk is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = unk
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    tokenizer.padding_side = "right"
    return tokenizer, eos


def trl_model(path: str, tokenizer: object) -> object:
    """The backbone with a fresh one-output sequence-classification head, its config's pad id the
    tokenizer's (the head's pooling reads it) and room for a pad token added by ``trl_tokenizer``."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def chat_texts(rows: list[dict], tokenizer: object) -> list[dict]:
    """Each HH pair as rewardlab trains and scores it: the transcript split into chat messages by
    rewardlab's importer, then ``models.format_conversation`` (the chat template; the text ends at the
    end-of-turn token). TRL gets these strings, so both tools train on the same text."""
    from rewardlab import models
    from rewardlab.data.formats.hh_rlhf import split, to_messages

    out = []
    for row in rows:
        prompt, chosen, rejected = split(row["chosen"], row["rejected"])
        messages = to_messages(prompt)
        out.append(
            {
                "chosen": models.format_conversation(tokenizer, messages, chosen),
                "rejected": models.format_conversation(tokenizer, messages, rejected),
            }
        )
    return out


def trl_worker(args: argparse.Namespace) -> None:
    import torch
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from rewardlab import models

    backbone = BACKBONES[args.backbone]
    path = models.resolve(backbone.model)
    tokenizer, eos_token = trl_tokenizer(path)
    model = trl_model(path, tokenizer)
    train = read_pairs(Path(args.train))
    if backbone.chat:
        train = chat_texts(train, tokenizer)
    config = RewardConfig(
        output_dir=str(Path(args.work) / "trl-run"),
        learning_rate=args.trl_lr,
        num_train_epochs=args.epochs,
        max_length=MAX_LENGTH,
        seed=args.seed,
        eos_token=eos_token,  # BERT: its [SEP] (TRL stops without an eos); a decoder keeps its own
        bf16=False,
        gradient_checkpointing=False,
        dataloader_pin_memory=False,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(train), processing_class=tokenizer
    )
    kept = len(trainer.train_dataset)
    pad_id = model.config.pad_token_id
    ids = [*trainer.train_dataset["chosen_ids"], *trainer.train_dataset["rejected_ids"]]
    if pad_id is not None and any(pad_id in seq for seq in ids):
        raise SystemExit(f"a training text holds the pad id {pad_id}: TRL's pooling would read early")
    # real (non-pad) tokens of the kept pairs: TRL pads each batch to its longest sequence
    tokens = sum(
        len(c) + len(r)
        for c, r in zip(
            trainer.train_dataset["chosen_ids"], trainer.train_dataset["rejected_ids"], strict=True
        )
    )
    out = trainer.train()
    t_post = time.perf_counter()
    model = trainer.model.eval()
    test = read_pairs(Path(args.eval))
    if backbone.chat:
        test = chat_texts(test, tokenizer)
    eos = tokenizer.eos_token
    texts = [with_eos(t, eos) for row in test for t in (row["chosen"], row["rejected"])]
    tokenizer.truncation_side = "left"
    scores = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    values = [0.0] * len(texts)
    with torch.no_grad():
        for s in range(0, len(order), 32):
            idx = order[s : s + 32]
            batch = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=MAX_LENGTH,
                padding=True,
                return_tensors="pt",
            )
            # the head reads the last token != pad_token_id: that is the last real token only if no real
            # token is the pad (checked, never assumed: see trl_tokenizer)
            real = batch["input_ids"][batch["attention_mask"].bool()]
            if pad_id is not None and bool((real == pad_id).any()):
                raise SystemExit(f"a test text holds the pad id {pad_id}: TRL's pooling would read early")
            for i, v in zip(idx, model(**batch).logits[:, 0].tolist(), strict=True):
                values[i] = v
    scores = [(values[2 * n], values[2 * n + 1]) for n in range(len(test))]
    acc = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in scores) / len(scores)
    trainer.save_model(str(Path(args.work) / "trl-model"))
    post = time.perf_counter() - t_post
    result = {
        "accuracy": acc,
        "n_test_pairs": len(scores),
        "train_pairs": len(train),
        "pairs_kept": kept,
        "pairs_dropped": len(train) - kept,
        "pairs_truncated": 0,
        "pairs_per_s": kept * args.epochs / out.metrics["train_runtime"],
        "tokens_per_s": tokens * args.epochs / out.metrics["train_runtime"],
        "tokens_per_response": tokens / (2 * kept),
        "train_time_s": out.metrics["train_runtime"],
        "post_train_s": post,
        "lr": args.trl_lr,
    }
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------- driver


def run_process(cmd: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Run ``cmd`` to the end; (wall seconds, peak RSS MB of that process alone)."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed (exit {proc.returncode}); log:\n{log.read_text()[-4000:]}")
    return wall, usage.ru_maxrss / 1024


@dataclass(frozen=True)
class Backbone:
    """What one ``--backbone`` runs: rewardlab's config, the model TRL loads, and rewardlab's variants (each
    its own run per seed, overrides on top of the config)."""

    config: Path
    model: str
    variants: dict[str, list[str]]
    chat: (
        bool  # TRL gets rewardlab's chat-formatted text (a decoder with a template), else the raw transcript
    )


BACKBONES = {
    # rewardlab runs twice per seed: as shipped (configs/rm/minilm.yaml cuts prompts to their last 64 tokens)
    # and uncapped, so its speed per real token is compared with TRL's on the same text (issue 27: capped,
    # rewardlab's responses average fewer tokens than TRL's kept pairs, which inflates its pairs/s).
    "minilm": Backbone(
        CONFIG, MODEL, {"rewardlab": [], "rewardlab-uncapped": ["max_prompt_length=null"]}, chat=False
    ),
    # a decoder RM (issue 30 item 5): the padding-free forward against the padded one, same config and
    # prompt cap (none) otherwise, beside TRL on the same backbone and max_length
    "smollm2": Backbone(
        ROOT / "configs" / "rm" / "smollm2.yaml",
        "offline:smollm2-135m-instruct",
        {"rewardlab-packed": ["train.packing=true"], "rewardlab-padded": ["train.packing=false"]},
        chat=True,
    ),
}
VARIANTS = BACKBONES["minilm"].variants  # the default backbone's
ALL_TOOLS = [*dict.fromkeys(v for b in BACKBONES.values() for v in b.variants), "trl"]


def tools_of(backbone: str) -> list[str]:
    return [*BACKBONES[backbone].variants, "trl"]


def paired_key(tool: str) -> str:
    """ "paired": the shipped MiniLM config against TRL; "paired-<tool>" for every other variant."""
    return "paired" if tool == "rewardlab" else f"paired-{tool}"


def run_rewardlab(train: Path, held: Path, seed: int, work: Path, env: dict, args, tool: str) -> dict:
    out = work / f"{tool}-s{seed}"
    cmd = [
        sys.executable, "-m", "rewardlab.cli", "train", "rm", str(args.config),
        f"output_dir={out}", f"data.train={train}", f"data.eval={held}", f"train.seed={seed}",
        f"train.epochs={args.epochs}", f"data.max_length={MAX_LENGTH}", "tracking.backend=jsonl",
        *args.overrides, *BACKBONES[args.backbone].variants[tool],
    ]  # fmt: skip
    wall, rss = run_process(cmd, env, work / f"{tool}-s{seed}.log")
    m = json.loads((out / "metrics.json").read_text())
    return {
        "accuracy": m["accuracy"],
        "n_test_pairs": m["n_pairs"],
        "train_pairs": m["train_groups"],
        "pairs_kept": m["train_groups"],
        "pairs_dropped": 0,
        "pairs_truncated": m["truncated_prompt_records"],  # prompt cut from the left (kept)
        "pairs_response_cut": m["truncated_response_records"],  # also the response cut on its right
        "pairs_per_s": m["rankings_per_s"],
        "tokens_per_s": m["tokens_per_s"],  # non-pad tokens of both responses (prompt + response each)
        "tokens_per_response": m["tokens_per_s"] / m["sequences_per_s"],
        "train_time_s": m["train_time_s"],
        "post_train_s": m.get("post_train_s"),
        "wall_s": wall,
        "peak_rss_mb": rss,
    }


def run_trl(train: Path, held: Path, seed: int, work: Path, env: dict, args, tool: str = "trl") -> dict:
    result = work / f"trl-s{seed}.json"
    cmd = [
        sys.executable, __file__, "--worker", "trl", "--train", str(train), "--eval", str(held),
        "--seed", str(seed), "--epochs", str(args.epochs), "--trl-lr", str(args.trl_lr),
        "--work", str(work / f"trl-s{seed}"), "--result", str(result), "--backbone", args.backbone,
    ]  # fmt: skip
    wall, rss = run_process(cmd, env, work / f"trl-s{seed}.log")
    return {**json.loads(result.read_text()), "wall_s": wall, "peak_rss_mb": rss}


def mean_se(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def summarize(results: dict[str, list[dict]], variants: dict[str, list[str]] | None = None) -> dict:
    summary: dict = {}
    for tool, rows in results.items():
        if not rows:
            continue
        summary[tool] = {
            key: sum(r[key] for r in rows) / len(rows)
            for key in rows[0]
            if key != "invocation"  # which --merge file a row came from
            and isinstance(rows[0][key], (int, float))
            and all(r.get(key) is not None for r in rows)
        }
        summary[tool]["accuracy_se"] = mean_se([r["accuracy"] for r in rows])[1]
    for tool in variants or VARIANTS:
        if not (results.get(tool) and results.get("trl")):
            continue
        summary[paired_key(tool)] = paired(results, summary, tool, "trl")
    if results.get("rewardlab-packed") and results.get("rewardlab-padded"):
        summary["packed-vs-padded"] = paired(results, summary, "rewardlab-packed", "rewardlab-padded")
    return summary


def paired(results: dict[str, list[dict]], summary: dict, tool: str, base: str) -> dict:
    """``tool`` against ``base``: accuracy difference paired by seed (mean, SE), and ratios of the means."""
    diffs = [a["accuracy"] - b["accuracy"] for a, b in zip(results[tool], results[base], strict=True)]
    mean, se = mean_se(diffs)
    ours, trl = summary[tool], summary[base]
    return {
        "accuracy_diff": mean,
        "accuracy_diff_se": se,
        "per_seed_diff": diffs,
        "pairs_per_s_ratio": ours["pairs_per_s"] / trl["pairs_per_s"],
        "tokens_per_s_ratio": ours["tokens_per_s"] / trl["tokens_per_s"],
        "wall_ratio": ours["wall_s"] / trl["wall_s"],
        "rss_ratio": ours["peak_rss_mb"] / trl["peak_rss_mb"],
    }


def print_table(
    results: dict[str, list[dict]], summary: dict, seeds: list[int], variants: dict | None = None
) -> None:
    head = (
        f"{'tool':<18} {'seed':>4} {'acc':>6} {'pairs/s':>8} {'tok/s':>6} {'tok/resp':>8} {'train s':>8} "
        f"{'post s':>7} {'wall s':>7} "
        f"{'RSS MB':>7} {'kept':>5} {'dropped':>7} {'trunc':>5}"
    )
    print(head)
    print("-" * len(head))
    for tool, rows in results.items():
        for seed, r in zip(seeds, rows, strict=True):
            post = f"{r['post_train_s']:.0f}" if r.get("post_train_s") is not None else "-"
            print(
                f"{tool:<18} {seed:>4} {r['accuracy']:>6.3f} {r['pairs_per_s']:>8.2f} {r['tokens_per_s']:>6.0f} "
                f"{r['tokens_per_response']:>8.1f} {r['train_time_s']:>8.0f} "
                f"{post:>7} {r['wall_s']:>7.0f} {r['peak_rss_mb']:>7.0f} {r['pairs_kept']:>5} "
                f"{r['pairs_dropped']:>7} {r['pairs_truncated']:>5}"
            )
    for tool, s in summary.items():
        if tool not in results:
            continue
        se = f" +- {s['accuracy_se']:.3f}" if s.get("accuracy_se") is not None else ""
        post = s.get("post_train_s")
        share = f", post/train {post / s['train_time_s']:.2f}" if post is not None else ""
        print(
            f"{tool:<18} mean acc {s['accuracy']:.3f}{se}, {s['pairs_per_s']:.2f} pairs/s, "
            f"{s['tokens_per_s']:.0f} real tokens/s ({s['tokens_per_response']:.1f} per response), "
            f"wall {s['wall_s']:.0f} s, RSS {s['peak_rss_mb']:.0f} MB{share}"
        )
    rules = summary["length_rules"]
    print(
        f"length rules on the same pairs: longer wins {rules['longer_wins']:.3f}, shorter wins {rules['shorter_wins']:.3f}"
    )
    comparisons = [(paired_key(t), f"{t} - TRL") for t in variants or VARIANTS]
    for key, label in [*comparisons, ("packed-vs-padded", "packed - padded")]:
        p = summary.get(key)
        if p is None:
            continue
        se = f" +- {p['accuracy_diff_se'] * 100:.1f}" if p["accuracy_diff_se"] is not None else ""
        print(
            f"{label}: {p['accuracy_diff'] * 100:+.1f}{se} points (paired by seed, SE), "
            f"pairs/s {p['pairs_per_s_ratio']:.2f}x, real tokens/s {p['tokens_per_s_ratio']:.2f}x, "
            f"wall {p['wall_ratio']:.2f}x, RSS {p['rss_ratio']:.2f}x"
        )


# what --merge requires to be the same in every file that has it (files written before "limit" was saved lack
# it; their test pairs are still checked, by the length rules)
SAME_SETUP = ("data", "split", "backbone", "config", "sizes", "epochs", "max_length", "limit", "same_pairs",
              "trl_lr", "rewardlab_overrides")  # fmt: skip


def merge(paths: list[Path]) -> dict:
    """One payload from several ``--json`` files of one setup, joined by (tool, seed), the summary recomputed
    over all seeds. A busy 2-core machine fits two runs side by side, not a table's nine, so a table may be
    built from several invocations: accuracy pairs by seed whatever the invocation, but a throughput ratio
    between tools run in different invocations also carries the machine's load, so ``invocation`` says which
    file each row came from. Refuses (exit 2, one line) files whose setup or test pairs (read by their length
    rules) differ, a (tool, seed) given twice, and tools that do not share the same seeds (nothing to pair)."""

    def refuse(message: str) -> None:
        print(f"bench_real.py --merge: {message}", file=sys.stderr)
        raise SystemExit(2)

    def setup(x: dict) -> dict:
        # before --same-pairs existed every run trained on all pairs
        return {**{k: x.get(k) for k in SAME_SETUP}, "same_pairs": x.get("same_pairs", False),
                "length_rules": x["summary"]["length_rules"]}  # fmt: skip

    payloads = []
    for path in paths:
        try:
            payloads.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            refuse(f"{path}: not a bench_real --json file ({err})")
    first = payloads[0]
    base = setup(first)
    for path, p in zip(paths[1:], payloads[1:], strict=True):
        for key, value in setup(p).items():
            compared = key in ("length_rules", "same_pairs") or key in p and key in first
            if compared and value != base[key]:
                refuse(f"{path}: {key} {value!r} differs from {paths[0]}'s {base[key]!r}")
    rows: dict[str, dict[int, dict]] = {}
    for i, (path, p) in enumerate(zip(paths, payloads, strict=True)):
        for tool, runs in p["results"].items():
            for seed, run in zip(p["seeds"], runs, strict=True):
                if seed in rows.setdefault(tool, {}):
                    refuse(f"{path}: {tool} seed {seed} is in an earlier file too")
                rows[tool][seed] = {**run, "invocation": i}
    seeds = sorted(next(iter(rows.values())))
    for tool, by_seed in rows.items():
        if sorted(by_seed) != seeds:
            refuse(f"{tool} has seeds {sorted(by_seed)}, another tool {seeds}: nothing to pair")
    results = {tool: [by_seed[s] for s in seeds] for tool, by_seed in rows.items()}
    summary = summarize(results, BACKBONES[first["backbone"]].variants)
    summary["length_rules"] = first["summary"]["length_rules"]
    return {
        **first,
        "date": [p["date"] for p in payloads],
        "parallel": [p["parallel"] for p in payloads],
        "seeds": seeds,
        "merged_from": [str(p) for p in paths],
        "results": results,
        "summary": summary,
    }


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, fill in the backbone's config, and refuse a --only tool the backbone does not run."""
    args = ap.parse_args(argv)
    if args.config is None:
        args.config = BACKBONES[args.backbone].config
    wrong = sorted(set(args.only or []) - set(tools_of(args.backbone)))
    if wrong:
        ap.error(
            f"--only {' '.join(wrong)}: not run with --backbone {args.backbone} ({', '.join(tools_of(args.backbone))})"
        )
    return args


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="rewardlab config overrides (key=value), e.g. train.lr=1e-4")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HH-RLHF helpful-base jsonl(.gz)")
    ap.add_argument(
        "--backbone",
        choices=list(BACKBONES),
        default="minilm",
        help="minilm: configs/rm/minilm.yaml (shipped, uncapped) vs TRL; smollm2: configs/rm/smollm2.yaml "
        "(packed, padded) vs TRL on SmolLM2-135M-Instruct",
    )
    ap.add_argument("--config", type=Path, default=None, help="default: the backbone's config")
    ap.add_argument("--split", choices=["test", "tune"], default="test")
    ap.add_argument("--split-seed", type=int, default=0, help="data seed of the train/test split")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=float, default=None, help="default: the config's train.epochs")
    ap.add_argument("--trl-lr", type=float, default=1e-4, help="TRL's lr (its default 1e-4)")
    ap.add_argument(
        "--only", choices=ALL_TOOLS, nargs="+", default=None, help="default: the backbone's three"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run")
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="run every (tool, seed) at once, --threads each (a busy shared machine: both tools see the same load)",
    )
    ap.add_argument(
        "--limit", type=int, default=None, help="first N train and eval pairs only (a smoke test)"
    )
    ap.add_argument(
        "--same-pairs",
        action="store_true",
        help="train every tool on the pairs TRL keeps (no pair over max_length): rewardlab then cuts no prompt",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="no runs: join --json files of the same setup (one seed per invocation) into one paired table",
    )
    ap.add_argument("--worker", choices=["trl"], help=argparse.SUPPRESS)
    for name in ("--train", "--eval", "--work", "--result"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parse_args(build_parser(), argv)
    if args.worker == "trl":
        trl_worker(args)
        return
    if args.merge:
        payload = merge(args.merge)
        print(f"merged {len(args.merge)} files: seeds {payload['seeds']}, backbone {payload['backbone']}")
        print_table(
            payload["results"], payload["summary"], payload["seeds"], BACKBONES[payload["backbone"]].variants
        )
        if args.json:
            args.json.write_text(json.dumps(payload, indent=2))
        return
    if not args.data.is_file():
        raise SystemExit(
            f"{args.data}: not found; pass --data PATH (Anthropic/hh-rlhf helpful-base test.jsonl.gz)"
        )
    if args.epochs is None:
        import yaml

        args.epochs = float(yaml.safe_load(args.config.read_text())["train"]["epochs"])
    splits = make_splits(args.data, args.split_seed)
    train_part, eval_part = ("tune_train", "tune_eval") if args.split == "tune" else ("train", "test")
    print(
        f"data: {args.data.name}: {len(splits['read'])} pairs, {len(splits['invalid'])} invalid for both tools "
        f"(empty or identical responses); train {len(splits['train'])} / test {len(splits['test'])} pairs "
        f"(tuning: {len(splits['tune_train'])} / {len(splits['tune_eval'])} carved from train); "
        f"this run: {train_part} {len(splits[train_part])} -> {eval_part} {len(splits[eval_part])}; "
        f"epochs {args.epochs}, max_length {MAX_LENGTH}, seeds {args.seeds}, backbone {args.backbone} "
        f"({args.config.name})",
        flush=True,
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DISABLE_TQDM": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "WANDB_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    variants = BACKBONES[args.backbone].variants
    tools = args.only or tools_of(args.backbone)
    results: dict[str, list[dict]] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        work = Path(tmp)
        train_rows = splits[train_part][: args.limit]
        if args.same_pairs:
            kept = pairs_trl_keeps(train_rows, args.backbone)
            print(f"--same-pairs: {len(kept)} of {len(train_rows)} train pairs fit max_length {MAX_LENGTH}")
            train_rows = kept
        train = write_jsonl(train_rows, work / "train.jsonl")
        held = write_jsonl(splits[eval_part][: args.limit], work / "eval.jsonl")
        jobs = [
            (tool, seed) for seed in args.seeds for tool in tools
        ]  # tools alternate: load drift hits both
        runners = {**dict.fromkeys(variants, run_rewardlab), "trl": run_trl}
        if args.parallel:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(jobs)) as pool:
                futures = {
                    job: pool.submit(runners[job[0]], train, held, job[1], work, env, args, job[0])
                    for job in jobs
                }
                done = {job: f.result() for job, f in futures.items()}
        else:
            done = {job: runners[job[0]](train, held, job[1], work, env, args, job[0]) for job in jobs}
        for (tool, seed), r in done.items():
            results[tool].append(r)
            print(f"  {tool} seed {seed}: acc {r['accuracy']:.3f}, wall {r['wall_s']:.0f} s", flush=True)
    summary = summarize(results, variants)
    summary["length_rules"] = length_rules(splits[eval_part][: args.limit])
    print_table(results, summary, args.seeds, variants)
    if args.json:
        payload = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "data": str(args.data),
            "split": args.split,
            "backbone": args.backbone,
            "config": str(args.config),
            "sizes": {k: len(v) for k, v in splits.items()},
            "epochs": args.epochs,
            "max_length": MAX_LENGTH,
            "seeds": args.seeds,
            "limit": args.limit,
            "same_pairs": args.same_pairs,
            "trl_lr": args.trl_lr,
            "parallel": args.parallel,
            "threads": args.threads,
            "rewardlab_overrides": args.overrides,
            "results": results,
            "summary": summary,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
