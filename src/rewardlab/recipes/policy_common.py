"""What the policy recipes (sft, dpo, ppo, grpo/rloo) and `eval policy` share.

Data views (demonstrations, unique prompts, the train/eval split by prompt), the TRL glue (CPU-safe
arguments, a callback that forwards TRL's logs to our Tracker, checkpoints marked complete only after the
trainer finished writing them), batched generation with the KV cache, and saving a policy as a plain
safetensors folder. Kept apart so every recipe file reads top to bottom without these details.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.data.policy_data import (  # noqa: F401  (the recipes call them as pc.<name>)
    Prompt,
    as_messages,
    demonstrations,
    read_dataset,
    read_prompt_file,
    read_records,
    split_records,
    unique_prompts,
)
from rewardlab.errors import UserError
from rewardlab.generation import (  # noqa: F401
    decode_responses,
    encode_prompts,
    end_of_turn_id,
    generate,
    generation_config,
    seeded_sampling,
    set_stop_tokens,
    stop_token_ids,
)


def device_name() -> str:
    """This process's device type by the one device rule (rewardlab/devices.py): cuda, mps or cpu."""
    from rewardlab import devices

    return devices.accelerator_device().type


def mixed_precision(cfg: Any) -> str:
    """``train.bf16`` -> "bf16", else accelerate's own setting (``accelerate launch --mixed_precision``).

    accelerate keeps one state per process, so an earlier run in this process (tests, a pipeline) with
    another precision is reset here rather than silently reused."""
    import os

    from accelerate.state import AcceleratorState

    wanted = (
        "bf16" if getattr(cfg.train, "bf16", False) else os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    )
    if AcceleratorState._shared_state and str(AcceleratorState().mixed_precision) != wanted:
        AcceleratorState._reset_state()
    return wanted


def trainer_kwargs(cfg: Any, run_dir: Path, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments shared by the TRL recipes, safe on CPU (checkpointing only when asked, no pinning; bf16 autocast
    only when ``train.bf16`` asks for it: CPUs run it too, so tests cover the path GPU users take)."""
    t = cfg.train
    bf16 = mixed_precision(cfg) == "bf16"
    kwargs: dict[str, Any] = {
        "output_dir": str(run_dir / "checkpoints"),
        "learning_rate": t.lr,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "seed": t.seed,
        "data_seed": t.seed,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "logging_steps": t.log_every,
        "save_strategy": "steps" if t.save_every else "no",
        "save_total_limit": 2,
        "report_to": "none",
        "bf16": bf16,
        "fp16": False,
        **checkpointing_args(t.gradient_checkpointing),
        "dataloader_pin_memory": False,
        "use_cpu": device_name() == "cpu",
        "disable_tqdm": False,
        "logging_nan_inf_filter": False,  # a nan loss must reach the logs (and FiniteGuard), not be averaged away
    }
    if t.save_every:
        kwargs["save_steps"] = t.save_every
    if t.eval_every and has_eval:
        kwargs.update(eval_strategy="steps", eval_steps=t.eval_every)
    return kwargs


def checkpointing_args(on: bool) -> dict[str, Any]:
    """``train.gradient_checkpointing`` as TrainingArguments keys: transformers 5 names them
    ``activation_checkpointing*`` (the ``gradient_checkpointing*`` names are deprecated aliases, and TRL's
    configs default the old one to True, so the key is always set explicitly), non-reentrant when on."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: on, **({f"{key}_kwargs": {"use_reentrant": False}} if on else {})}


def tracker_callback(tracker: Any) -> Any:
    """A TrainerCallback that forwards TRL's logged numbers to our Tracker (metrics.jsonl, wandb).

    When stderr is not a terminal it also prints plain progress lines (rewardlab.progress): the Trainer's
    tqdm bar redraws one line with carriage returns, which CI logs and nohup files do not show as progress.
    """
    from transformers import TrainerCallback

    from rewardlab import progress

    class TrackerCallback(TrainerCallback):
        plain: Any = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - HF signature
            if state.is_world_process_zero and not progress.interactive():
                self.plain = progress.bar(state.max_steps, "train", unit="steps", initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF signature
            if self.plain is not None:
                self.plain.update(state.global_step - self.plain.n)

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001 - HF signature
            if self.plain is not None:
                self.plain.close()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - HF signature
            if state.is_world_process_zero and logs:
                numbers = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
                tracker.log(numbers, step=state.global_step)
                if self.plain is not None and "loss" in numbers:
                    self.plain.set_postfix(loss=f"{numbers['loss']:.4f}")

    return TrackerCallback()


def complete_marker_callback() -> Any:
    """Marks a HF checkpoint folder COMPLETE after the trainer wrote all of it (HF writes in place)."""
    from transformers import TrainerCallback

    class CompleteMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001 - HF signature
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / "COMPLETE").write_text("ok\n")

    return CompleteMarker()


def finite_guard_callback(stage: str, run_dir: Path) -> Any:
    """A TrainerCallback that stops a TRL run at the first non-finite loss, before its optimizer step.

    A nan/inf loss makes the gradients nan/inf; they are checked after clipping, just before
    ``optimizer.step()`` (``on_pre_optimizer_step``), so the bad update is never applied and no checkpoint
    or model is saved from it. Under DDP the gradients are already all-reduced there, so every process
    sees the same norm and all of them stop (no process is left waiting). ``on_log`` checks the logged
    loss as a second line (e.g. under DeepSpeed, where gradients are not on the parameters). fp16 runs skip
    the gradient check: their loss scaler routinely sees inf gradients and skips those steps itself.
    """
    import os

    from transformers import TrainerCallback

    from rewardlab import runs

    def last_checkpoint() -> str | None:  # looked up only when a check fails
        return latest_trainer_checkpoint(run_dir)

    class FiniteGuard(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            if model is None or args.fp16 or os.environ.get("ACCELERATE_MIXED_PRECISION") == "fp16":
                return
            import torch

            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if grads:
                norm = float(torch.nn.utils.get_total_norm(grads))
                step = state.global_step + 1  # global_step counts finished optimizer steps
                runs.stop_on_nonfinite(stage, "gradient norm", norm, step, last_checkpoint)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - HF signature
            loss = (logs or {}).get("loss")
            if isinstance(loss, (int, float)):
                runs.stop_on_nonfinite(stage, "loss", float(loss), state.global_step, last_checkpoint)

    return FiniteGuard()


def latest_trainer_checkpoint(run_dir: Path) -> str | None:
    """The newest ``checkpoints/checkpoint-N`` marked COMPLETE (a killed save is never resumed from)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = [
        p for p in root.glob("checkpoint-*") if (p / "COMPLETE").exists() and p.name.split("-")[-1].isdigit()
    ]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def resume_from(cfg: Any, run_dir: Path) -> str | None:
    """``train.resume=true``: the checkpoint to continue from (an error when there is none); the rows
    metrics.jsonl got after it (logged before the kill) are dropped, as the resumed run logs them again.

    Called first by every TRL recipe, so it also probes that the run folder is writable: a full or
    read-only disk fails here in a second, before data or models load, not at the first checkpoint.
    """
    import os

    from rewardlab import runs

    runs.check_writable(run_dir)
    main = int(os.environ.get("RANK", "0")) == 0  # before accelerate starts: the launcher's global rank
    if not cfg.train.resume:
        if main:
            runs.clear_stale_checkpoints(run_dir)
        return None
    ckpt = latest_trainer_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"train.resume=true but {run_dir}/checkpoints holds no complete checkpoint")
    if main:
        runs.trim_metrics_log(run_dir, int(ckpt.rsplit("-", 1)[1]))
    return ckpt


def lora_dict(cfg: Any) -> dict | None:
    return cfg.model.lora.model_dump() if cfg.model.lora is not None else None


def build_policy(cfg: Any) -> Any:
    """The trainable policy of a stage config (LoRA when set); also the rebuild ``full_model`` needs for
    gathering a sharded model, so every stage builds it the same way."""
    from rewardlab import models

    return models.build_policy(
        cfg.model.name_or_path,
        dtype=cfg.model.dtype,
        lora=lora_dict(cfg),
        trust_remote_code=cfg.model.trust_remote_code,
        allow_pickle=cfg.model.allow_pickle,
        attn_implementation=cfg.model.attn_implementation,
        quantization=cfg.model.quantization,
    )


# ---------------------------------------------------------------- generation


def save_policy(model: Any, tokenizer: Any, out_dir: Path, card: dict[str, Any]) -> Path:
    """Save a policy as a plain HF folder (LoRA merged in, safetensors only) with a README model card.

    ``card`` holds ``stage``, ``config`` (the stage config), ``metrics`` and facts for the card's text
    (reference, reward model, steps); cards.py builds the card with Hub metadata from them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    from rewardlab import cards

    facts = {k: v for k, v in card.items() if k not in ("stage", "config", "metrics", "base_model", "data")}
    cfg = card.get("config") or {
        "model": {"name_or_path": card.get("base_model")},
        "data": {"train": card.get("data")},
    }
    cards.write_card(out_dir, card.get("stage", "policy"), cfg, card.get("metrics"), extra=facts)
    return out_dir


# ---------------------------------------------------------------- distributed


def is_sharded(accelerator: Any) -> bool:
    """FSDP or DeepSpeed ZeRO-3: no process holds the whole model, so reading or saving it is collective."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


def full_model(accelerator: Any, model: Any, rebuild: Any, part: str | None = None) -> Any:
    """The whole trained model as a plain module on the main process (None elsewhere). Call on EVERY process.

    DDP and one process: the unwrapped model itself. FSDP / ZeRO-3: ``accelerator.get_state_dict`` gathers
    the full weights (a collective), and the main process loads them into a fresh copy from ``rebuild()``
    (the same builder call as at the start), so saving, LoRA merging and evaluation see ordinary tensors.
    ``part``: ``model`` is a prepared rewardlab.engines.Bundle and this part of it is wanted.
    """
    from rewardlab import engines

    if not is_sharded(accelerator):
        if not accelerator.is_main_process:
            return None
        plain = accelerator.unwrap_model(model)
        return getattr(plain, part) if part else plain
    state = engines.full_state_dict(accelerator, model, part)
    if not accelerator.is_main_process:
        return None
    with engines.plain_init():  # not partitioned again by transformers under ZeRO-3
        plain = rebuild()
    missing, unexpected = plain.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"gathered state dict does not fit the model: {unexpected[:3]} {missing[:3]}")
    if missing and hasattr(plain, "tie_weights"):
        plain.tie_weights()
    return plain.to(accelerator.device)


def refuse_unsupported_sharding(accelerator: Any, cfg: Any, loop: str, fsdp_keys: tuple[str, ...]) -> None:
    """For our own training loops: refuse what they cannot do correctly. Under FSDP ppo's checkpoints would
    hold the main process's optimizer shard only, so the ``train.<key>`` options in ``fsdp_keys`` are
    refused there (DeepSpeed runs through rewardlab.engines)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return
    for key in fsdp_keys:
        if getattr(cfg.train, key):
            raise UserError(
                f"train.{key}: not supported under {accelerator.distributed_type.value} yet ({loop} checkpoints "
                "and mid-run eval assume DDP); run it under DDP (configs/accelerate/ddp.yaml) or unset it"
            )


def check_launch(accelerator: Any) -> None:
    """Catch launches that silently run something else than asked.

    - ``accelerate launch`` started N processes (WORLD_SIZE) but they did not form one group: each would
      train alone and all would write the same run folder.
    - An FSDP config on CPU: accelerate 1.x runs FSDP only on GPU-like devices and falls back to DDP there.
    """
    import os
    import sys

    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise UserError(
            f"accelerate launch started {launched} processes but they run as {accelerator.num_processes}: "
            "on CPU set ACCELERATE_USE_CPU=true (see docs/scaling.md)"
        )
    fsdp_asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if fsdp_asked and accelerator.distributed_type != DistributedType.FSDP and accelerator.is_main_process:
        print(
            f"warning: FSDP was requested but accelerate runs {accelerator.distributed_type.value} on "
            f"{accelerator.device.type} (FSDP needs GPUs): every process holds the whole model",
            file=sys.stderr,
        )
