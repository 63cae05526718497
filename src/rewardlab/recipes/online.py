"""`rewardlab train grpo|rloo`: TRL's GRPOTrainer / RLOOTrainer with our reward model as the reward.

Critic-free baselines for PPO on the same setup: the same starting policy, the same prompts (the unique
prompts of the training split) and the same RM. The RM enters TRL as a plain Python reward function that
takes the decoded completions and scores them with ``RewardScorer`` (the RM's own tokenizer and chat
format), so, as in our PPO, the RM may use a different tokenizer than the policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab import devices, models, runs
from rewardlab.errors import UserError
from rewardlab.recipes import policy_common as pc
from rewardlab.tracking import open_tracker


class RewardModelFunction:
    """A TRL reward function: (prompts, completions) -> RM score of each completion (head 0, raw scale)."""

    __name__ = "reward_model"

    def __init__(self, scorer: Any, batch_size: int = 32):
        self.scorer = scorer
        self.batch_size = batch_size

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return self.scorer.score(list(prompts), [t.strip() for t in texts], batch_size=self.batch_size)[
            :, 0
        ].tolist()


def trainer_classes(stage: str) -> tuple[type, type]:
    if stage == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOConfig, GRPOTrainer
    from trl import RLOOConfig, RLOOTrainer

    return RLOOConfig, RLOOTrainer


def check_batch(cfg: Any) -> None:
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    if per_step % cfg.online.num_generations:
        raise UserError(
            f"train.batch_size * train.grad_accum ({per_step}) must be a multiple of online.num_generations "
            f"({cfg.online.num_generations}): each prompt's {cfg.online.num_generations} answers share a batch"
        )


def run(cfg: Any) -> dict[str, Any]:
    from datasets import Dataset

    from rewardlab.scoring import RewardScorer

    check_batch(cfg)
    resume = pc.resume_from(cfg, Path(cfg.output_dir))
    train_records, _, data_info = pc.split_records(cfg.data)
    prompts = pc.unique_prompts(train_records)
    if not prompts:
        raise UserError(f"{cfg.data.train}: no training prompts")
    # Under `accelerate launch` only the main process writes the run folder, tracks and saves.
    main = runs.is_main_process()
    run_dir = runs.prepare_run(
        cfg,
        {
            "base_model": cfg.model.name_or_path,
            "reference_model": cfg.model.name_or_path,
            "data": data_info,
            "reward_model": cfg.online.reward_model,
            "train_prompts": len(prompts),
        },
    )
    tracker = open_tracker(
        cfg.tracking, run_dir, cfg.model_dump(mode="json"), resume=cfg.train.resume, main=main
    )
    tokenizer = models.load_tokenizer(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    model = pc.build_policy(cfg)
    # TRL stops on the model's generation_config.eos_token_id (plus the tokenizer's eos): give it every stop
    # token, so a chat model whose turn ends on another token than eos does not run to the length limit
    stops = pc.set_stop_tokens(model, tokenizer)
    # each process scores its own completions on its own device (cuda:<LOCAL_RANK>, what accelerate gives
    # the rank), not all of them on cuda:0
    scorer = RewardScorer.from_path(
        cfg.online.reward_model,
        device=devices.accelerator_device(),
        allow_pickle=cfg.model.allow_pickle,
        trust_remote_code=cfg.model.trust_remote_code,
        attn_implementation=cfg.model.attn_implementation,
    )
    config_cls, trainer_cls = trainer_classes(cfg.stage)
    args = config_cls(
        **pc.trainer_kwargs(cfg, run_dir, has_eval=False),
        num_generations=cfg.online.num_generations,
        max_completion_length=cfg.online.max_completion_length,
        beta=cfg.online.beta,
        temperature=cfg.online.temperature,
        top_k=0,
        top_p=1.0,
    )
    trainer = trainer_cls(
        model=model,
        reward_funcs=[RewardModelFunction(scorer)],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": pc.as_messages(p["prompt"])} for p in prompts]),
        processing_class=tokenizer,
        callbacks=[
            pc.tracker_callback(tracker),
            pc.complete_marker_callback(),
            pc.finite_guard_callback(cfg.stage, run_dir),
        ],
    )
    result = trainer.train(resume_from_checkpoint=resume)
    history = [row for row in trainer.state.log_history if "reward" in row]
    metrics: dict[str, Any] = {
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "stop_token_ids": stops,
    }
    if history:
        k = min(3, len(history))
        metrics["train_rm_score_start"] = sum(r["reward"] for r in history[:k]) / k
        metrics["train_rm_score_end"] = sum(r["reward"] for r in history[-k:]) / k
    final = pc.full_model(trainer.accelerator, trainer.model_wrapped, lambda: pc.build_policy(cfg))
    if not main:
        return metrics
    pc.save_policy(
        final,
        tokenizer,
        Path(run_dir) / "model",
        {
            "stage": cfg.stage,
            "config": cfg,
            "metrics": metrics,
            "base_model": cfg.model.name_or_path,
            "reward_model": cfg.online.reward_model,
            "data": cfg.data.train,
            "steps": result.global_step,
        },
    )
    runs.write_metrics(run_dir, metrics)
    tracker.summary(metrics)
    tracker.finish()
    return metrics
