"""`rewardlab train grpo|rloo`: TRL's GRPOTrainer / RLOOTrainer with our reward model as the reward.

Critic-free baselines for PPO on the same setup: the same starting policy, the same prompts (the unique
prompts of the training split) and the same RM. The RM enters TRL as a plain Python reward function that
takes the decoded completions and scores them with ``RewardScorer`` (the RM's own tokenizer and chat
format), so, as in our PPO, the RM may use a different tokenizer than the policy.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from rewardlab import devices, engines, models, runs
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


def check_vllm(cfg: Any) -> None:
    """online.use_vllm without vllm installed: refused in one line before any work (TRL would fail only after
    the models loaded, with an ImportError)."""
    if cfg.online.use_vllm and importlib.util.find_spec("vllm") is None:
        raise UserError(
            "online.use_vllm=true: vllm is not installed (pip install vllm, a version TRL supports), "
            "or set online.use_vllm=false"
        )


def vllm_args(cfg: Any, stops: list[int]) -> dict[str, Any]:
    """TRL's vLLM arguments from ``online.*`` ({} without use_vllm). The stop ids also travel as
    ``generation_kwargs`` (vLLM's SamplingParams.stop_token_ids): in server mode the server was started on a
    folder of its own, so the request itself must carry them."""
    o = cfg.online
    if not o.use_vllm:
        return {}
    return {
        "use_vllm": True,
        "vllm_mode": o.vllm_mode,
        "vllm_gpu_memory_utilization": o.vllm_gpu_memory_utilization,
        "vllm_server_host": o.vllm_server_host,
        "vllm_server_port": o.vllm_server_port,
        "generation_kwargs": {"stop_token_ids": list(stops)},
    }


def write_vllm_folder(model: Any, tokenizer: Any, source: str, out: Path) -> Path:
    """The folder vLLM loads the policy from: the source's files linked, with our tokenizer and a
    generation_config.json that holds our stop ids (vLLM adds its eos_token_id to every request's stops).

    Why a folder of our own: TRL's colocated vLLM loads ``model.name_or_path`` from disk and reads its
    generation_config.json, not the in-memory config set_stop_tokens wrote; the source folder (a user's
    model, the HF cache) is never written to. Written once per run; processes racing on it keep the first."""
    src = Path(models.resolve(source))
    if not src.is_dir():  # a hub id with the hub online: the snapshot vLLM would download anyway
        from huggingface_hub import snapshot_download

        src = Path(snapshot_download(str(src)))
    embeddings = model.get_input_embeddings().num_embeddings
    if embeddings != getattr(model.config, "vocab_size", embeddings):
        raise UserError(
            f"online.use_vllm: the policy's embeddings were resized to {embeddings} rows for added tokens, "
            f"but {source} holds {model.config.vocab_size}; save the resized policy and train from that folder"
        )
    if out.is_dir():
        return out
    tmp = out.parent / f".{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    for item in src.iterdir():
        if not (tmp / item.name).exists() and not item.name.startswith("."):
            (tmp / item.name).symlink_to(item.resolve())
    try:
        tmp.rename(out)
    except OSError:  # another process of this launch wrote it first: the same content
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def point_at(model: Any, folder: Path) -> None:
    """Make ``model.name_or_path`` (what TRL hands vLLM) the vLLM folder; peft forwards the read to the base."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.name_or_path = str(folder)
    base.config.name_or_path = str(folder)


def run(cfg: Any) -> dict[str, Any]:
    from datasets import Dataset

    from rewardlab.scoring import RewardScorer

    check_batch(cfg)
    check_vllm(cfg)
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
    if cfg.online.use_vllm:  # vLLM reads the stops from disk (docs/policy.md, "vLLM generation (GRPO/RLOO)")
        point_at(
            model, write_vllm_folder(model, tokenizer, cfg.model.name_or_path, Path(run_dir) / "vllm-policy")
        )
    # each process scores its own completions on its own device (cuda:<LOCAL_RANK>, what accelerate gives
    # the rank), not all of them on cuda:0; whole on each process, never partitioned by a ZeRO-3 config an
    # earlier stage of this process left active (a pipeline)
    with engines.plain_init():
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
        **vllm_args(cfg, stops),
    )
    engines.join_deepspeed_comm(args)
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
        "engine": engines.describe(trainer.accelerator),
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
