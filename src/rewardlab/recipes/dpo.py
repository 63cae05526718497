"""`rewardlab train dpo`: direct preference optimization with TRL's DPOTrainer on the dataset's ranked pairs.

Pairs: every pair a ranking implies (``dpo.pairs: all``) or only best-vs-worst per ranking. Ties carry no
preference for DPO: they are skipped, counted and reported. The reference is the starting policy
(``ref_model: null``) or another model; its log-probs are computed once before training by default
(``dpo.precompute_ref_log_probs``), so the reference never sits in memory during training.

Soft labels and weights from rater aggregation (``dpo.soft_labels``):
- ``weights`` (default): a pair the raters agree on with probability p appears as (chosen, rejected) with
  weight w * p and, when p < 1, swapped with weight w * (1 - p), where w is the record's aggregation weight.
  TRL 1.16's DPOTrainer has no per-example weight, so a weighted sampler draws pairs in proportion to these
  weights (a one-method subclass). In expectation the loss is the per-pair soft-label (cDPO-style) loss
  weighted by w, with TRL's own loss code untouched. With all weights equal, sampling is TRL's default.
- ``label_smoothing``: one flip rate for the whole set, eps = mean(1 - p) (or ``dpo.label_smoothing`` when
  set), passed as TRL's ``label_smoothing``; in TRL 1.16 only the robust, exo_pair, aot and aot_unpaired
  losses read it (sigmoid does not), so other loss types are refused.
- ``none``: hard labels from the ranks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rewardlab import engines, models, runs
from rewardlab.data.dataset import pairs as record_pairs
from rewardlab.errors import UserError
from rewardlab.recipes import policy_common as pc
from rewardlab.tracking import open_tracker

SMOOTHING_LOSSES = {"robust", "exo_pair", "aot", "aot_unpaired"}


def build_pairs(records: list[dict], mode: str, soft_labels: str) -> tuple[list[dict], dict[str, int]]:
    """DPO rows {prompt, chosen, rejected, sample_weight, p} and counts (pairs, ties skipped, swapped rows)."""
    rows: list[dict] = []
    counts = {"pairs": 0, "ties_skipped": 0, "swapped_rows": 0}
    for rec in records:
        candidates = record_pairs(rec)
        if mode == "best-vs-worst":
            ranks = rec["ranks"]
            b, w = ranks.index(min(ranks)), ranks.index(max(ranks))  # b == w: all tied, one tie counted
            candidates = [
                c for c in candidates if {c["chosen_index"], c["rejected_index"]} == {b, w}
            ] or candidates[:1]
        for pair in candidates:
            if pair["tie"]:
                counts["ties_skipped"] += 1
                continue
            counts["pairs"] += 1
            p = float(pair["p"]) if soft_labels != "none" else 1.0
            w = float(pair["weight"] or 1.0) if soft_labels == "weights" else 1.0
            base = {"prompt": pc.as_messages(pair["prompt"]), "p": p}
            chosen = [{"role": "assistant", "content": pair["chosen"]}]
            rejected = [{"role": "assistant", "content": pair["rejected"]}]
            forward_weight = w * p if soft_labels == "weights" else w
            if forward_weight > 0:
                rows.append({**base, "chosen": chosen, "rejected": rejected, "sample_weight": forward_weight})
            if soft_labels == "weights" and p < 1.0:
                rows.append({**base, "chosen": rejected, "rejected": chosen, "sample_weight": w * (1.0 - p)})
                counts["swapped_rows"] += 1
    return rows, counts


def check_options(cfg: Any) -> None:
    """Refuse settings TRL would silently ignore or reject late, before anything heavy is loaded."""
    if cfg.dpo.soft_labels == "label_smoothing" and not SMOOTHING_LOSSES & set(cfg.dpo.loss_type):
        raise UserError(
            f"dpo.soft_labels=label_smoothing needs a loss that reads label_smoothing in TRL 1.16 "
            f"({', '.join(sorted(SMOOTHING_LOSSES))}); dpo.loss_type is {cfg.dpo.loss_type}: "
            "use dpo.soft_labels=weights instead"
        )


def label_smoothing(cfg: Any, rows: list[dict]) -> float:
    """TRL's label_smoothing: the config's value, or the mean disagreement when soft labels ask for it."""
    if cfg.dpo.soft_labels != "label_smoothing" or cfg.dpo.label_smoothing > 0:
        return cfg.dpo.label_smoothing
    eps = sum(1.0 - r["p"] for r in rows) / max(len(rows), 1)
    return min(max(eps, 1e-3), 0.49)  # exo_pair needs eps > 0; robust needs eps < 0.5


def weighted_trainer_class() -> type:
    """DPOTrainer whose sampler draws rows in proportion to their ``sample_weight`` column."""
    import torch
    from trl import DPOTrainer

    class WeightedDPOTrainer(DPOTrainer):
        def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001 - HF signature
            weights = self.train_dataset["sample_weight"]
            generator = torch.Generator().manual_seed(self.args.seed)
            return torch.utils.data.WeightedRandomSampler(
                weights, len(weights), replacement=True, generator=generator
            )

    return WeightedDPOTrainer


def to_dataset(rows: list[dict], folder: Path | None = None) -> Any:
    """Rows as a ``datasets.Dataset``; with ``folder``, one stored on disk that every process reads.

    Under several processes TRL's reference log-prob precompute writes its result next to the dataset's
    own files from the main process and reads it back from all: an in-memory dataset would put that file
    in each process's private temporary folder, which the others cannot open. The main process writes
    ``folder`` first; the others load it after (``main_process_first``).
    """
    from datasets import Dataset

    if folder is None:
        return Dataset.from_list(rows)
    import shutil

    from accelerate import PartialState
    from datasets import load_from_disk

    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            shutil.rmtree(folder, ignore_errors=True)
            Dataset.from_list(rows).save_to_disk(str(folder))
        return load_from_disk(str(folder))


def drop_long_prompts(rows: list[dict], tokenizer: Any, limit: int | None) -> tuple[list[dict], int]:
    """``dpo.max_prompt_length``: TRL 1.16 has no prompt limit, so longer prompts are skipped and counted."""
    if limit is None:
        return rows, 0
    kept = [
        r for r in rows if len(tokenizer(models.format_prompt(tokenizer, r["prompt"]))["input_ids"]) <= limit
    ]
    return kept, len(rows) - len(kept)


def run(cfg: Any) -> dict[str, Any]:
    check_options(cfg)
    resume = pc.resume_from(cfg, Path(cfg.output_dir))
    from trl import DPOConfig, DPOTrainer

    train_records, eval_records, data_info = pc.split_records(cfg.data)
    for source in {cfg.model.name_or_path, cfg.ref_model or cfg.model.name_or_path}:
        models.check_model_source(
            models.resolve(source), source, cfg.model.allow_pickle, cfg.model.trust_remote_code
        )
    tokenizer = models.load_tokenizer(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    train_rows, counts = build_pairs(train_records, cfg.dpo.pairs, cfg.dpo.soft_labels)
    eval_rows, eval_counts = build_pairs(eval_records, cfg.dpo.pairs, "none")
    train_rows, long_prompts = drop_long_prompts(train_rows, tokenizer, cfg.dpo.max_prompt_length)
    if not train_rows:
        raise UserError(
            f"{cfg.data.train}: no untied pairs to train DPO on ({counts['ties_skipped']} ties skipped)"
        )
    print(
        f"dpo: {counts['pairs']} pairs, {counts['ties_skipped']} ties skipped, {counts['swapped_rows']} soft-label "
        f"swapped rows, {long_prompts} long prompts skipped",
    )
    smoothing = label_smoothing(cfg, train_rows)
    reference = cfg.ref_model or cfg.model.name_or_path
    run_dir = Path(cfg.output_dir)
    main = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch` only rank 0 writes the run
    tracker = None
    if main:
        runs.prepare_run(
            cfg,
            {
                "base_model": cfg.model.name_or_path,
                "reference_model": reference,
                "data": data_info,
                "pairs": counts,
            },
        )
        tracker = open_tracker(cfg.tracking, run_dir, cfg.model_dump(mode="json"), resume=cfg.train.resume)

    model = pc.build_policy(cfg)
    # Without LoRA and without precomputed log-probs TRL needs a reference in memory: build it the same way.
    ref_model = None
    if cfg.ref_model or (cfg.model.lora is None and not cfg.dpo.precompute_ref_log_probs):
        ref_model = models.build_reference(
            reference,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            allow_pickle=cfg.model.allow_pickle,
            attn_implementation=cfg.model.attn_implementation,
        )
    weights = [r["sample_weight"] for r in train_rows]
    uniform = max(weights) - min(weights) < 1e-12
    trainer_cls = DPOTrainer if uniform else weighted_trainer_class()
    args = DPOConfig(
        **pc.trainer_kwargs(cfg, run_dir, has_eval=bool(eval_rows)),
        beta=cfg.dpo.beta,
        loss_type=list(cfg.dpo.loss_type),
        loss_weights=list(cfg.dpo.loss_weights) if cfg.dpo.loss_weights else None,
        label_smoothing=smoothing,
        precompute_ref_log_probs=cfg.dpo.precompute_ref_log_probs,
        max_length=cfg.data.max_length,
    )
    shared = run_dir / "cache" if args.world_size > 1 else None  # see to_dataset
    eval_ds = to_dataset(eval_rows, shared and shared / "eval") if eval_rows else None
    trainer = trainer_cls(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=to_dataset(train_rows, shared and shared / "train"),
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[
            pc.tracker_callback(tracker),
            pc.complete_marker_callback(),
            pc.finite_guard_callback("dpo", run_dir),
        ],
    )
    result = trainer.train(resume_from_checkpoint=resume)
    metrics: dict[str, Any] = {
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "pairs": counts["pairs"],
        "ties_skipped": counts["ties_skipped"],
        "soft_label_swapped_rows": counts["swapped_rows"],
        "long_prompts_skipped": long_prompts,
        "label_smoothing": smoothing,
        "weighted_sampling": not uniform,
        "eval_pairs": eval_counts["pairs"],
        "engine": engines.describe(trainer.accelerator),
    }
    if eval_ds is not None:
        scores = trainer.evaluate()
        metrics.update(
            {
                k: v
                for k, v in scores.items()
                if k in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")
            }
        )
    final = pc.full_model(
        trainer.accelerator, trainer.model_wrapped, lambda: pc.build_policy(cfg)
    )  # collective (FSDP/ZeRO-3)
    if not main:
        return metrics
    if shared is not None:
        import shutil

        shutil.rmtree(shared, ignore_errors=True)
    pc.save_policy(
        final,
        tokenizer,
        Path(run_dir) / "model",
        {
            "stage": "dpo",
            "config": cfg,
            "metrics": metrics,
            "base_model": cfg.model.name_or_path,
            "reference": reference,
            "data": cfg.data.train,
            "loss_type": cfg.dpo.loss_type,
            "beta": cfg.dpo.beta,
            "steps": result.global_step,
        },
    )
    runs.write_metrics(run_dir, metrics)
    tracker.summary(metrics)
    tracker.finish()
    return metrics
