"""`rewardlab train sft`: supervised fine-tuning on demonstrations with TRL's SFTTrainer.

Demonstrations are the consensus rank-1 responses of a ranking dataset (``sft.demonstrations: rank1``) or
the prompt/response lines of a JSONL file (``file``). Examples are conversational prompt/completion pairs,
so the tokenizer's chat template formats them exactly as generation will, and the loss covers only the
completion (``sft.completion_only_loss``). The result is the starting policy for DPO, PPO, GRPO and RLOO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab import engines, models, runs
from rewardlab.errors import UserError
from rewardlab.recipes import policy_common as pc
from rewardlab.tracking import open_tracker


def load_demonstrations(cfg: Any) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(train, eval) demonstrations and lineage info, from a dataset or a prompt/response file."""
    if cfg.sft.demonstrations == "file":
        rows = pc.read_prompt_file(cfg.data.train)
        bad = [
            n for n, r in enumerate(rows, 1) if not isinstance(r.get("response"), str) or not r["response"]
        ]
        if bad:
            raise UserError(f"{cfg.data.train}:{bad[0]}: field 'response' must be a non-empty string")
        held = pc.read_prompt_file(cfg.data.eval) if cfg.data.eval else []
        return rows, held, {"train": cfg.data.train, "eval": cfg.data.eval, "demonstrations": "file"}
    train, held, info = pc.split_records(cfg.data)
    info["demonstrations"] = "rank1"
    return pc.demonstrations(train), pc.demonstrations(held), info


def to_conversations(demos: list[dict]) -> Any:
    """TRL's conversational prompt/completion format."""
    from datasets import Dataset

    rows = [
        {
            "prompt": pc.as_messages(d["prompt"]),
            "completion": [{"role": "assistant", "content": d["response"]}],
        }
        for d in demos
    ]
    return Dataset.from_list(rows)


def run(cfg: Any) -> dict[str, Any]:
    """Train, save ``<run>/model``, write metrics.json; returns the final metrics."""
    from trl import SFTConfig, SFTTrainer

    resume = pc.resume_from(cfg, Path(cfg.output_dir))
    train_demos, eval_demos, data_info = load_demonstrations(cfg)
    if not train_demos:
        raise UserError(f"{cfg.data.train}: no demonstrations found for SFT")
    # Under `accelerate launch` only the main process writes the run folder, tracks and saves (the others
    # get a NullTracker); every process trains.
    main = runs.is_main_process()
    run_dir = runs.prepare_run(
        cfg,
        {"base_model": cfg.model.name_or_path, "reference_model": cfg.model.name_or_path, "data": data_info},
    )
    tracker = open_tracker(
        cfg.tracking, run_dir, cfg.model_dump(mode="json"), resume=cfg.train.resume, main=main
    )
    tokenizer = models.load_tokenizer(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    model = pc.build_policy(cfg)
    eval_ds = to_conversations(eval_demos) if eval_demos else None
    args = SFTConfig(
        **pc.trainer_kwargs(cfg, run_dir, has_eval=eval_ds is not None),
        max_length=cfg.data.max_length,
        completion_only_loss=cfg.sft.completion_only_loss,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_conversations(train_demos),
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[
            pc.tracker_callback(tracker),
            pc.complete_marker_callback(),
            pc.finite_guard_callback("sft", run_dir),
        ],
    )
    result = trainer.train(resume_from_checkpoint=resume)
    metrics: dict[str, Any] = {
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "demonstrations": len(train_demos),
        "eval_demonstrations": len(eval_demos),
        "engine": engines.describe(trainer.accelerator),
    }
    if eval_ds is not None:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    # the whole model on the main process (gathered under FSDP / ZeRO-3: a collective, so every process)
    final = pc.full_model(trainer.accelerator, trainer.model_wrapped, lambda: pc.build_policy(cfg))
    if not main:
        return metrics
    pc.save_policy(
        final,
        tokenizer,
        Path(run_dir) / "model",
        {
            "stage": "sft",
            "config": cfg,
            "metrics": metrics,
            "base_model": cfg.model.name_or_path,
            "data": cfg.data.train,
            "steps": result.global_step,
        },
    )
    runs.write_metrics(run_dir, metrics)
    tracker.summary(metrics)
    tracker.finish()
    return metrics
