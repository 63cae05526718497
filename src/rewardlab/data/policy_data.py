"""The data views the policy stages and `eval policy` read: a dataset folder or data file as records, the
train/eval split by prompt (the RM recipe's rule and seed), demonstrations, unique prompts, prompt files.

Why in the data layer: evaluation reads the same views as training, and eval may not import the recipes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from rewardlab.data.dataset import (
    dataset_meta,
    is_dataset_dir,
    iter_records,
    load_dataset,
    set_aside_gold,
    split_by_prompt,
)
from rewardlab.data.schema import group_key, prompt_key
from rewardlab.errors import UserError

Prompt = str | list[dict[str, str]]


# ---------------------------------------------------------------- data


def read_dataset(path: str, fmt: str = "auto") -> tuple[Any, dict[str, Any]]:
    """A dataset folder, or any known file format imported on the fly (rejected rows reported, never hidden)."""
    import sys

    p = Path(path)
    if is_dataset_dir(p):
        return load_dataset(p), {"path": str(p), "fingerprint": dataset_meta(p).get("fingerprint")}
    if not p.is_file():
        raise UserError(
            f"{path}: not a dataset folder or a file (create one with `rewardlab data import` or `simulate`)"
        )
    from rewardlab.data import importing

    out, report = importing.as_dataset(p, fmt=fmt)
    if report is not None and report.quarantined:
        print(f"{path}: {report.summary()}; quarantine: {report.quarantine}", file=sys.stderr)
    if not is_dataset_dir(out):
        raise UserError(f"{path}: no record could be imported")
    return load_dataset(out), {"path": str(p), "fingerprint": dataset_meta(out).get("fingerprint")}


def read_records(path: str, fmt: str = "auto") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All records of a dataset folder or data file, plus lineage info (fingerprint)."""
    ds, info = read_dataset(path, fmt)
    return list(iter_records(ds)), info


def split_records(data_cfg: Any) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Train and eval records: ``data.eval`` when given, else a split of ``data.train`` grouped by prompt.

    The split rule and seed (``data.split_seed``, not ``train.seed``) are the reward-model recipe's, so
    with the same data the policy's held-out prompts are the RM's held-out prompts whatever seeds the two
    trained with. Gold records are set aside (counted in ``info["gold_set_aside"]``) unless
    ``data.use_gold``.
    """
    if not data_cfg.train:
        raise UserError(
            "data.train is not set: give a dataset folder (from `rewardlab data import` or `simulate`)"
        )
    train_ds, meta = read_dataset(data_cfg.train, data_cfg.format)
    info: dict[str, Any] = {"train": data_cfg.train, "train_fingerprint": meta["fingerprint"]}
    if data_cfg.eval:
        eval_ds, eval_meta = read_dataset(data_cfg.eval, data_cfg.format)
        info.update(eval=data_cfg.eval, eval_fingerprint=eval_meta["fingerprint"])
    else:
        train_ds, eval_ds = split_by_prompt(train_ds, data_cfg.eval_fraction, data_cfg.split_seed)
        info.update(eval=None, eval_fraction=data_cfg.eval_fraction, split_seed=data_cfg.split_seed)
    train, n_gold_train = set_aside_gold(list(iter_records(train_ds)), data_cfg.use_gold)
    held, n_gold_eval = set_aside_gold(list(iter_records(eval_ds)), data_cfg.use_gold)
    info["gold_set_aside"] = {"train": n_gold_train, "eval": n_gold_eval}
    return train, held, info


def demonstrations(records: list[dict]) -> list[dict[str, Any]]:
    """One demonstration per comparison: the response with the best (weighted) mean rank across raters.

    Raw campaigns hold several raters' rankings of the same comparison; taking each rater's rank-1 answer
    would teach the policy the noisy raters' picks too. For an aggregated dataset (one record per
    comparison) this is simply its rank-1 response. Ties at the top keep the first response.
    """
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    weights: dict[str, float] = defaultdict(float)
    first: dict[str, dict] = {}
    order: list[str] = []
    for rec in records:
        key = group_key(rec["prompt"], rec["responses"])
        if key not in first:
            first[key] = rec
            order.append(key)
        w = float(rec.get("weight") or 1.0)
        weights[key] += w
        for text, rank in zip(rec["responses"], rec["ranks"], strict=True):
            sums[key][text] += w * rank
    out = []
    for key in order:
        rec = first[key]
        best = min(rec["responses"], key=lambda text, k=key: sums[k][text] / weights[k])
        out.append({"prompt": rec["prompt"], "response": best, "meta": rec.get("meta") or {}})
    return out


def unique_prompts(records: list[dict]) -> list[dict[str, Any]]:
    """Each distinct prompt once (first occurrence order) with its record's meta (``task`` for simulated data)."""
    seen: set[str] = set()
    out = []
    for rec in records:
        key = prompt_key(rec["prompt"])
        if key not in seen:
            seen.add(key)
            out.append({"prompt": rec["prompt"], "meta": rec.get("meta") or {}})
    return out


def read_prompt_file(path: str) -> list[dict[str, Any]]:
    """Prompts from a JSONL file of ``{"prompt": ..., "meta"?: ...}`` lines (a `sample` batch works too)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{n}: invalid JSON ({err.msg})") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("prompt"), (str, list))
                or not row["prompt"]
            ):
                raise UserError(f"{path}:{n}: field 'prompt' must be a non-empty string or list of messages")
            out.append(
                {"prompt": row["prompt"], "meta": row.get("meta") or {}, "response": row.get("response")}
            )
    return out


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as chat messages (a plain string is one user turn)."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


# ---------------------------------------------------------------- TRL glue
