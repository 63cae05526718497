"""Write docs/configs.md: every key of every stage's config schema with its type, default and meaning.

    python scripts/gen_config_docs.py            # rewrite docs/configs.md
    python scripts/gen_config_docs.py --check    # exit 1 when docs/configs.md is stale (tests do this)

Why generated: a hand-written key reference drifts from the schema the day someone adds a key. The meaning of
a key is read from the schema itself (a pydantic ``description``, or the comment on or just above the field in
src/rewardlab/config.py), so the one place to document a key is where it is declared. A key with no meaning
anywhere is an error, which the test turns into a failure.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from rewardlab import config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "configs.md"

# Meanings of keys whose declaration carries no comment: the shared sections every training stage has.
# Prefer a comment on the field in config.py; this table is only for keys whose line has no room.
MEANING: dict[str, str] = {
    "stage": "which command the file is for; inferred from the folder (configs/<stage>/) when absent",
    "output_dir": "the run folder this stage writes",
    "model.name_or_path": "a hub id, a local model or run folder, or an offline source (offline:<name>)",
    "model.lora": "null for full fine-tuning, or a LoRA section (merged into the saved model)",
    "model.lora.r": "LoRA rank",
    "model.lora.alpha": "LoRA scaling numerator (scale = alpha / r)",
    "model.lora.dropout": "dropout on the LoRA branch",
    "model.lora.target_modules": "module names to adapt, or 'all-linear'",
    "model.dtype": "weights' dtype when loading",
    "data.train": "a dataset folder (data import / simulate) or a file in any known format",
    "data.eval_fraction": "share of prompts held out for evaluation when data.eval is null",
    "data.max_length": "tokens per input; longer prompts are cut from the left",
    "data.format": "the format of a data.train file (auto: detected)",
    "train.lr": "peak learning rate",
    "train.epochs": "passes over the training data",
    "train.max_steps": "caps the run when set",
    "train.batch_size": "examples per process and micro-step (rm: comparison groups)",
    "train.grad_accum": "micro-steps per optimizer step",
    "train.seed": "seed of weights init, data order and sampling",
    "train.eval_every": "evaluate every N steps (null: at the end only)",
    "train.save_every": "write a resumable checkpoint every N steps",
    "train.resume": "continue from the newest complete checkpoint in output_dir",
    "train.warmup_ratio": "share of steps with a linear warmup",
    "train.lr_scheduler": "learning-rate schedule after warmup",
    "train.weight_decay": "AdamW weight decay",
    "train.max_grad_norm": "gradient clipping norm",
    "train.log_every": "log metrics every N steps",
    "tracking.backend": "where metrics go besides metrics.jsonl",
    "tracking.project": "the wandb project (or the dashboard's project)",
    "tracking.entity": "the wandb entity (team or user)",
    "tracking.group": "groups runs in the dashboard (a pipeline sets its name)",
    "tracking.tags": "tags on the run",
    "tracking.run_name": "the run's name in the dashboard (default: the folder name)",
    "model": "the model to train (a section)",
    "data": "training and evaluation data (a section)",
    "train": "optimizer, schedule, steps, checkpoints (a section)",
    "tracking": "where metrics are logged besides metrics.jsonl (a section)",
    # data (import as a pipeline stage)
    "data:inputs": "files or folders to import (any known format)",
    "data:format": "force one input format (auto: detected per file)",
    "data:out": "the dataset folder to write",
    "data:quarantine": "the quarantine file (null: <out>.quarantine.jsonl)",
    "data:strict": "stop with exit 2 and write no dataset when any record is invalid",
    "data:salt_file": "pseudonym salt file (null: REWARDLAB_PSEUDONYM_SALT or ~/.config/rewardlab/pseudonym-salt)",
    # simulate
    "simulate:out": "the dataset folder to write (truth.json beside the records)",
    "simulate:seed": "seed of prompts, answers and raters",
    "simulate:prompts": "number of prompts (items)",
    "simulate:k": "answers per item (when k_mix is null)",
    "simulate:families": "task families to draw prompts from",
    "simulate:raters": "size of the rater pool",
    "simulate:overlap": "distinct raters per item",
    "simulate:gold_rate": "share of items that also get a gold reference record",
    "simulate:mix": "share of each rater profile in the pool",
    "simulate:mix.careful": "share of careful raters (right on clear pairs)",
    "simulate:mix.noisy": "share of noisy raters (about 85% right)",
    "simulate:mix.random": "share of random clickers",
    "simulate:mix.position_biased": "share of raters who put the first-listed answer on top 85% of the time",
    "simulate:mix.adversarial": "share of raters who invert the truth",
    "simulate:mix.too_fast": "share of raters with very short times",
    # raters
    "raters:thresholds": "when a rater is flagged (a section)",
    "raters:thresholds.min_gold_accuracy": "flag below this share right on gold items",
    "raters:thresholds.min_gold_items": "gold items a rater needs before the gold rule applies",
    "raters:thresholds.max_position_bias": "flag above this share of first-listed wins",
    "raters:thresholds.min_items": "judgments a rater needs before rate-based flags apply",
    "raters:exclude": "whose judgments aggregation drops: flagged (+ exclude_list), listed only, or none",
    "raters:exclude_list": "rater ids (or pseudonyms) always excluded",
    "raters:method": "aggregation model",
    "raters:noisy_bt": "options of the noisy-bt method (a section)",
    "raters:noisy_bt.rater_ridge": "prior on rater parameters",
    "raters:noisy_bt.max_iter": "L-BFGS iterations",
    "raters:salt_file": "pseudonym salt file (null: REWARDLAB_PSEUDONYM_SALT or the default salt file)",
    # rm
    "rm:loss": "the reward-model loss (a section)",
    "rm:loss.kind": "pairwise Bradley-Terry over all implied pairs, or the listwise Plackett-Luce likelihood",
    "rm:loss.ties": "the tie model used when a head's training pairs hold ties",
    "rm:loss.use_soft_labels": "train on aggregated soft labels (soft_pairs) instead of hard orders",
    "rm:loss.use_weights": "weight records by their aggregated weight",
    "rm:group_by_length": "batch groups of similar length to cut padding",
    "rm:eval_batch_size": "sequences per forward pass when scoring for evaluation and statistics",
    "rm:keep_checkpoints": "complete checkpoints kept (older ones rotate away)",
    # sft
    "sft:sft": "what to imitate (a section)",
    "sft:sft.demonstrations": "rank1: the best-ranked answer of each group; file: a prompt/response JSONL",
    "sft:sft.completion_only_loss": "loss on the answer tokens only",
    # dpo
    "dpo:dpo": "DPO options passed to TRL's DPOTrainer (a section)",
    "dpo:dpo.beta": "strength of the KL regularisation toward the reference",
    "dpo:dpo.loss_type": "TRL DPO loss types (several are summed with loss_weights)",
    "dpo:dpo.pairs": "all implied pairs of a ranking, or only best vs worst",
    "dpo:dpo.label_smoothing": "cDPO label smoothing",
    "dpo:dpo.soft_labels": "how aggregated soft labels enter: sample weights, label smoothing, or not at all",
    "dpo:dpo.precompute_ref_log_probs": "compute the reference log-probs once before training",
    "dpo:dpo.max_prompt_length": "prompt tokens kept (null: TRL's default)",
    # ppo
    "ppo:ppo": "PPO options (a section)",
    "ppo:ppo.reward_model": "the RM run or model folder that scores rollouts",
    "ppo:ppo.rollout_batch_size": "prompts per process and step",
    "ppo:ppo.mini_batch_size": "rollouts per PPO update",
    "ppo:ppo.ppo_epochs": "passes over each step's rollouts",
    "ppo:ppo.max_new_tokens": "answer length cap during rollouts",
    "ppo:ppo.temperature": "sampling temperature of rollouts",
    "ppo:ppo.top_k": "top-k sampling of rollouts (0: off)",
    "ppo:ppo.top_p": "nucleus sampling of rollouts (1: off)",
    "ppo:ppo.kl_coef": "per-token KL penalty coefficient (initial value when adaptive)",
    "ppo:ppo.kl_estimator": "per-token KL estimate in the reward: k1 (log ratio) or k3",
    "ppo:ppo.adaptive_kl": "adapt kl_coef toward kl_target (Ziegler et al.)",
    "ppo:ppo.kl_target": "the KL the adaptive controller aims at",
    "ppo:ppo.kl_horizon": "the adaptive controller's horizon in episodes",
    "ppo:ppo.gamma": "discount of GAE",
    "ppo:ppo.lam": "lambda of GAE",
    "ppo:ppo.cliprange": "policy ratio clip",
    "ppo:ppo.cliprange_value": "value prediction clip",
    "ppo:ppo.vf_coef": "weight of the value loss",
    "ppo:ppo.missing_eos_penalty": "score given (or added) when an answer does not end with a stop token; null: none",
    "ppo:ppo.value_lr": "learning rate of the value model (null: train.lr)",
    "ppo:ppo.whiten_advantages": "normalise advantages per batch",
    # grpo / rloo
    "online": "GRPO / RLOO options (a section)",
    "online.reward_model": "the RM run or model folder used as the reward function",
    "online.num_generations": "answers per prompt (the group)",
    "online.max_completion_length": "answer length cap",
    "online.beta": "KL coefficient toward the reference",
    "online.temperature": "sampling temperature",
    # sample
    "sample:prompts": "a dataset folder (its unique prompts) or a JSONL of prompts",
    "sample:reward_models": "RM run or model folders that score the answers (two or more: an ensemble)",
    "sample:num_prompts": "prompts used (null: all)",
    "sample:k": "answers per prompt",
    "sample:select": "how items for the raters are chosen",
    "sample:budget": "items in the batch",
    "sample:export": "the rating tool's format",
    "sample:template": "pairwise items or whole K-answer groups",
    "sample:max_new_tokens": "answer length cap",
    "sample:temperature": "sampling temperature",
    "sample:top_p": "nucleus sampling (1: off)",
    "sample:max_prompt_length": "prompt tokens kept (from the right)",
    "sample:seed": "seed of prompt choice, sampling and random selection",
    "sample:tracking": "where metrics are logged besides metrics.jsonl (a section)",
    # pipeline
    "pipeline:name": "the pipeline's folder under output_dir and its tracking group",
    "pipeline:output_dir": "where the pipeline's folder is made",
    "pipeline:stages": "the stages to run, in order",
    "pipeline:simulate": "the simulate stage: a config path, or a mapping (optionally with base: <path>)",
    "pipeline:data": "the data import stage: a config path, or a mapping",
    "pipeline:raters": "the raters stage: a config path, or a mapping",
    "pipeline:rm": "the rm stage: a config path, or a mapping",
    "pipeline:sft": "the sft stage: a config path, or a mapping",
    "pipeline:dpo": "the dpo stage: a config path, or a mapping",
    "pipeline:ppo": "the ppo stage: a config path, or a mapping",
    "pipeline:sample": "the sample stage: a config path, or a mapping",
    "pipeline:eval.prompts": "held-out simulated prompts per policy",
    "pipeline:eval.max_new_tokens": "answer length cap in the eval stage",
    "pipeline:eval.batch_size": "prompts per generation call in the eval stage",
}


@cache
def _comment_map(cls: type) -> dict[str, str]:
    """Field name -> the comment on its declaration (same or continuation lines) or just above it."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    src = textwrap.dedent("".join(lines))
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    src_lines = src.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(src).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        own = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments]
        above: list[str] = []
        n = node.lineno - 1
        while n >= 1 and src_lines[n - 1].strip().startswith("#"):
            above.insert(0, comments.get(n, ""))
            n -= 1
        text = " ".join(own) or " ".join(above)
        if text:
            out[node.target.id] = text
    return out


@cache
def _annotation_map(cls: type) -> dict[str, str]:
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    tree = ast.parse(textwrap.dedent("".join(lines)))
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in tree.body[0].body  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _declared(schema: type[BaseModel], name: str) -> tuple[str | None, str]:
    """(comment, annotation source) of a field, from the first class in the MRO that declares it."""
    for cls in schema.__mro__:
        ann = _annotation_map(cls)
        if name in ann:
            return _comment_map(cls).get(name), ann[name]
    return None, "?"


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The nested schema of a field typed ``Section`` or ``Section | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _own_doc(cls: type) -> str:
    """The first line of a class's own docstring (not one inherited from pydantic's BaseModel)."""
    doc = cls.__dict__.get("__doc__") or ""
    return inspect.cleandoc(doc).split("\n")[0] if doc else ""


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if not isinstance(value, str) else value
    text = text.replace("|", "\\|")
    return f"`{text}`" if text else '`""`'


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows(
    schema: type[BaseModel], stage: str, prefix: str = "", default_obj: Any = None
) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, meaning) for every key of a schema, sections first-class and recursed."""
    out = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}{name}"
        comment, ann = _declared(schema, name)
        sub = _section_model(field.annotation)
        section_doc = _own_doc(sub) if sub is not None else ""
        meaning = (
            field.description
            or comment
            or MEANING.get(f"{stage}:{key}")
            or MEANING.get(key)
            or section_doc
            or None
        )
        if meaning is None:
            raise SystemExit(f"config key {schema.__name__}.{key} has no meaning: add a comment in config.py")
        value = getattr(default_obj, name) if default_obj is not None else field.default
        if value is PydanticUndefined and field.default_factory is not None:
            value = field.default_factory()
        out.append((key, f"`{_cell(ann)}`", _default(value), _cell(meaning)))
        if sub is not None:
            sub_default = value if isinstance(value, BaseModel) else sub()
            out.extend(rows(sub, stage, f"{key}.", sub_default))
    return out


def render() -> str:
    parts = [
        "# Config reference",
        "",
        "Generated by `python scripts/gen_config_docs.py` from the schemas in `src/rewardlab/config.py`; a test",
        "fails when this page is stale. Values resolve as code defaults < YAML file < `key=value` overrides, and",
        "an unknown key or a bad value stops with exit 2 naming the dotted key (see [basics](basics.md)).",
        "To document a new key, put a comment on its line in config.py.",
        "",
        "Stages: " + ", ".join(f"[{s}](#{s})" for s in config.SCHEMAS),
    ]
    for stage, schema in config.SCHEMAS.items():
        doc = _own_doc(schema)
        parts += ["", f"## {stage}", ""]
        if doc:
            parts += [doc, ""]
        parts += ["| key | type | default | meaning |", "|---|---|---|---|"]
        parts += [f"| `{k}` | {t} | {d} | {m} |" for k, t, d, m in rows(schema, stage, default_obj=schema())]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/configs.md is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
