"""What the policy recipes (sft, dpo, ppo, grpo/rloo) and `eval policy` share.

Data views (demonstrations, unique prompts, the train/eval split by prompt), the TRL glue (CPU-safe
arguments, a callback that forwards TRL's logs to our Tracker, checkpoints marked complete only after the
trainer finished writing them), batched generation with the KV cache, and saving a policy as a plain
safetensors folder. Kept apart so every recipe file reads top to bottom without these details.
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


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    """TrainingArguments shared by the TRL recipes, safe on CPU (no checkpointing, no pinning; bf16 autocast
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
        "gradient_checkpointing": False,
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
    )


# ---------------------------------------------------------------- generation


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template writes right after an assistant message, if any.

    Instruct models often end a turn on another token than ``eos_token`` (Llama 3 ``<|eot_id|>``, Gemma
    ``<end_of_turn>``, Phi-3 ``<|end|>``): a sampler that stops only on eos runs on to the length limit.
    Found by rendering a one-turn conversation and reading the first token after the answer.
    """
    from rewardlab import models

    marker = "Sure thing"
    try:
        text = models.format_conversation(tokenizer, "Hi", marker)
    except Exception:  # noqa: BLE001 - a template that cannot render a plain chat has no usable marker
        return None
    at = text.rfind(marker)
    if at < 0:
        return None
    suffix = text[at + len(marker) :].lstrip(" ")
    if not suffix:
        return None
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {
        int(i) for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if tok.special
    }
    return int(ids[0]) if ids and ids[0] in special else None


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Every token that ends an answer: the tokenizer's eos, the model's generation-config eos (an int or a
    list) and the chat template's end-of-turn token. Sampling, masking and decoding all use this list."""
    ids: list[int] = []

    def add(value: Any) -> None:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))

    add(tokenizer.eos_token_id)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        add(gen.eos_token_id)
    add(end_of_turn_id(tokenizer))
    if not ids:
        raise UserError(f"tokenizer of {tokenizer.name_or_path}: no eos or end-of-turn token to stop on")
    return ids


def set_stop_tokens(model: Any, tokenizer: Any) -> list[int]:
    """Write the stop ids into the model's generation config (what TRL's GRPO/RLOO stop on); returns them."""
    ids = stop_token_ids(tokenizer, model)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = ids
    return ids


def generation_config(
    tokenizer: Any,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_ids: list[int] | None = None,
) -> Any:
    """A fresh GenerationConfig so no model default (top_k=50, repetition penalty) changes the sampler.

    ``stop_ids`` (``stop_token_ids``; default: the tokenizer's eos and the template's end-of-turn token)
    end generation. PPO computes its log-probs from softmax(logits / temperature), so it refuses
    top-k/top-p: sampling uses exactly the distribution it scores.
    """
    from transformers import GenerationConfig

    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "eos_token_id": list(stop_ids or stop_token_ids(tokenizer)),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "use_cache": True,
        # transformers fills every field left unset here from the model's own generation_config.json (a hub
        # model's repetition_penalty 1.1 would tilt the sampler away from the distribution we score): pin them
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_new_tokens": 0,
    }
    if do_sample:
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    return GenerationConfig(**kwargs)


def encode_prompts(tokenizer: Any, prompts: list[Prompt], max_length: int) -> tuple[Any, Any]:
    """Chat-formatted prompts as left-padded (input_ids, attention_mask); long prompts keep their end."""
    import torch

    from rewardlab import models

    texts = [models.format_prompt(tokenizer, p) for p in prompts]
    add_special = not (tokenizer.bos_token and texts and texts[0].startswith(tokenizer.bos_token))
    ids = [tokenizer(t, add_special_tokens=add_special)["input_ids"][-max_length:] for t in texts]
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return input_ids, mask


def generate(
    model: Any, tokenizer: Any, input_ids: Any, attention_mask: Any, gen_config: Any, **kwargs: Any
) -> Any:
    """Response token ids [batch, new_tokens] (KV cache on; everything after the first EOS is padding).
    ``kwargs`` go to ``model.generate`` (``logits_processor``, ``synced_gpus``)."""
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_config, **kwargs
        )
    return out[:, input_ids.shape[1] :]


def seeded_sampling(seeds: list[int], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Any:
    """A logits processor that samples each row from its own generator (Gumbel-max), for greedy ``generate``.

    ``generate(do_sample=True)`` draws every row's token from one global RNG, so a prompt's answer depends on
    which other prompts share its batch and process. Here row i adds Gumbel noise from a generator seeded
    with ``seeds[i]`` to its warped logits (temperature, then top-k, top-p: the same distribution as
    sampling), and greedy decoding takes the argmax: an exact sample that depends only on the prompt and its
    seed. Seeded from the prompt's global position, rollouts are the same on 1 process or N.
    """
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))

    class PerRowGumbel(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(int(s) % 2**63) for s in seeds]

        def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204 - HF signature
            scores = scores.float()
            for warp in warpers:
                scores = warp(input_ids, scores)
            u = torch.stack([torch.rand(scores.shape[1], generator=g) for g in self.generators])
            gumbel = -torch.log(-torch.log(u.clamp(min=1e-20)))
            return scores + gumbel.to(scores.device)

    return LogitsProcessorList([PerRowGumbel()])


def decode_responses(tokenizer: Any, response_ids: Any, stop_ids: int | list[int]) -> list[str]:
    """Text of each response up to (not including) its first stop token."""
    stops = {stop_ids} if isinstance(stop_ids, int) else set(stop_ids)
    texts = []
    for row in response_ids.tolist():
        cut = next((i for i, tok in enumerate(row) if tok in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts


# ---------------------------------------------------------------- saving


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


def full_model(accelerator: Any, model: Any, rebuild: Any) -> Any:
    """The whole trained model as a plain module on the main process (None elsewhere). Call on EVERY process.

    DDP and one process: the unwrapped model itself. FSDP / ZeRO-3: ``accelerator.get_state_dict`` gathers
    the full weights (a collective), and the main process loads them into a fresh copy from ``rebuild()``
    (the same builder call as at the start), so saving, LoRA merging and evaluation see ordinary tensors.
    """
    if not is_sharded(accelerator):
        return accelerator.unwrap_model(model) if accelerator.is_main_process else None
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    plain = rebuild()
    missing, unexpected = plain.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"gathered state dict does not fit the model: {unexpected[:3]} {missing[:3]}")
    if missing and hasattr(plain, "tie_weights"):
        plain.tie_weights()
    return plain.to(accelerator.device)


def refuse_unsupported_sharding(accelerator: Any, cfg: Any, loop: str, fsdp_keys: tuple[str, ...]) -> None:
    """For our own training loops (rm, ppo): refuse what they cannot do correctly. DeepSpeed would take over
    the accumulation and optimizer step the loop does itself; under FSDP their checkpoints would hold the
    main process's optimizer shard only (and rm's mid-run eval runs the model on the main process alone),
    so the ``train.<key>`` options in ``fsdp_keys`` are refused there."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise UserError(
            f"DeepSpeed: the {loop} loop is written for DDP and FSDP (DeepSpeed would own its accumulation and "
            "optimizer step); use configs/accelerate/ddp.yaml or fsdp.yaml (sft, dpo, grpo, rloo run under it)"
        )
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
