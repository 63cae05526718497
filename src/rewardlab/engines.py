"""The training engines our own loops (rm, ppo) run under: one process, DDP, DeepSpeed ZeRO-2/3, FSDP2.

Everything that differs between them lives here, behind a small interface, so a recipe's step reads the
same for all of them:

    accelerator = make_accelerator(cfg)                  # plugin settings from the run's config
    model, optimizer = prepare(accelerator, Bundle(...), optimizer, micro_batch)
    with micro_step(accelerator, model, last): ... backward(accelerator, model, loss)
    result = clip_and_step(accelerator, model, optimizer, max_norm)   # grad norm, skipped (fp16)
    save_state / load_state                              # sharded checkpoints (accelerate save_state)
    full_state_dict(accelerator, model)                  # the whole weights on the main process

Why each piece:

- **One module per loop** (``Bundle``): accelerate 1.16 prepares one model under FSDP2 and DeepSpeed makes
  one engine per model, and parameters outside the prepared module (the RM's learned tie parameters) are
  neither sharded, reduced nor saved by them. A Bundle holds the loop's models and extra parameters and
  returns the extra parameters from its forward, where every engine has them whole.
- **Accumulation and clipping where the engine wants them**: DDP skips the all-reduce on all but the last
  micro-batch (``no_sync``) and we clip; DeepSpeed owns both (its config's ``gradient_accumulation_steps``
  and ``gradient_clipping``, set here from ``train.grad_accum`` and ``train.max_grad_norm``, and a fixed
  value in the accelerate config that disagrees is refused before any work). The loop divides each
  micro-batch's loss by the accumulation count itself, for every engine.
- **Finite checks**: the loop checks its reduced loss before the step under every engine. The gradient
  norm is ours (after clipping, before the step) except under DeepSpeed, which computes it inside its step:
  it is checked right after (the run stops there and nothing of that step is saved). Under fp16 a
  GradScaler step that found inf/nan gradients is skipped and counted, not stopped.
- **DeepSpeed on a CPU**: accelerate sets up DeepSpeed only when ``cpu=False`` and then finds no
  distributed backend for a CPU (every process would be rank 0 of 1); asking for gloo ourselves and
  ``DS_ACCELERATOR=cpu`` makes ZeRO-2/3 run on 2 CPU processes (configs/accelerate/zero3-cpu.yaml).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.errors import UserError

ENGINE_DIR = "engine"  # a sharded checkpoint's accelerate save_state folder


def deepspeed_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def make_accelerator(cfg: Any, mixed_precision: str, gradient_accumulation_steps: int = 1) -> Any:
    """The Accelerator of one of our loops. Under DeepSpeed (``accelerate launch`` with a DeepSpeed config)
    the plugin's accumulation, clipping and ZeRO-3 gathering come from the run's config; on a machine
    without GPU the processes join over gloo with DeepSpeed's CPU accelerator."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and str(AcceleratorState().mixed_precision) != mixed_precision:
        AcceleratorState._reset_state()
    if not deepspeed_requested():
        return Accelerator(
            cpu=_no_gpu(),
            mixed_precision=mixed_precision,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )
    from accelerate.utils import InitProcessGroupKwargs

    kwargs: dict[str, Any] = {}
    if _no_gpu():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # read when deepspeed is first imported
        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
    plugin = deepspeed_plugin(cfg)
    # accelerate's own accumulation counter reads this too, and "auto" is no number to it
    os.environ["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = str(plugin.gradient_accumulation_steps)
    return Accelerator(cpu=False, mixed_precision=mixed_precision, deepspeed_plugin=plugin, **kwargs)


def join_deepspeed_comm(args: Any) -> None:
    """Before a TRL trainer is built under DeepSpeed on a machine without GPU: make DeepSpeed's own
    communication layer use the process group the TrainingArguments start (gloo). On GPUs accelerate does
    this; on CPU (``use_cpu``) it starts a plain torch group, so ``deepspeed.zero.Init`` (which TRL's GRPO
    and RLOO run to load their reference model) would see a world of one process and refuse the batch
    size. ``args``: the stage's TrainingArguments."""
    if not deepspeed_requested() or not _no_gpu():
        return
    _ = args.device  # starts the process group of this launch
    from deepspeed import comm

    if not comm.is_initialized():
        comm.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)


def deepspeed_plugin(cfg: Any) -> Any:
    """accelerate's DeepSpeedPlugin (from the launcher's environment) with the run's accumulation and
    clipping: "auto" takes ``train.grad_accum`` / ``train.max_grad_norm``; a number that differs is refused
    (DeepSpeed would train with another effective batch or clip quietly)."""
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin()
    ds = plugin.deepspeed_config
    wanted = {
        "gradient_accumulation_steps": int(cfg.train.grad_accum),
        "gradient_clipping": float(cfg.train.max_grad_norm or 0.0),
    }
    key_of = {"gradient_accumulation_steps": "train.grad_accum", "gradient_clipping": "train.max_grad_norm"}
    for key, value in wanted.items():
        have = ds.get(key, "auto")
        if have not in (None, "auto") and float(have) != float(value):
            raise UserError(
                f"DeepSpeed config {key}: {have} but {key_of[key]} is {value}; set it to auto in the accelerate "
                "config (configs/accelerate/zero*.yaml) or make them equal"
            )
        ds[key] = value
    plugin.gradient_accumulation_steps = wanted["gradient_accumulation_steps"]
    plugin.gradient_clipping = wanted["gradient_clipping"]
    if plugin.zero_stage == 3:  # the final save gathers the full weights (accelerator.get_state_dict)
        ds.setdefault("zero_optimization", {})["stage3_gather_16bit_weights_on_model_save"] = True
        plugin.zero3_save_16bit_model = True
    return plugin


def kind(accelerator: Any) -> str:
    """ "deepspeed", "fsdp", "ddp" or "single": which code path a step takes."""
    from accelerate.utils import DistributedType

    t = accelerator.distributed_type
    if t == DistributedType.DEEPSPEED:
        return "deepspeed"
    if t == DistributedType.FSDP:
        return "fsdp"
    return "ddp" if getattr(accelerator, "num_processes", 1) > 1 else "single"


SHARDED_STATE = ("zero2", "zero3", "fsdp1", "fsdp2")  # engines whose optimizer state is split over processes


def sharded_state(accelerator: Any) -> bool:
    """DeepSpeed (any ZeRO stage partitions the optimizer) or FSDP: a checkpoint is the engine's own,
    written by every process (``save_state``), not one process's optimizer.state_dict()."""
    return kind(accelerator) in ("deepspeed", "fsdp")


def is_sharded(accelerator: Any) -> bool:
    """FSDP or ZeRO-3: no process holds every parameter whole, so reading or saving weights is collective."""
    if kind(accelerator) == "fsdp":
        return True
    return kind(accelerator) == "deepspeed" and accelerator.state.deepspeed_plugin.zero_stage == 3


def refuse_pure_bf16(cfg: Any, stage: str) -> None:
    """``model.dtype: bfloat16`` with every weight trained would keep the weights and AdamW's state in bf16
    (updates below bf16's 8-bit mantissa are lost); with LoRA the adapters stay float32 and only the frozen
    base is bf16, which is fine. DeepSpeed keeps float32 master weights itself, so it is allowed there."""
    if cfg.model.dtype == "bfloat16" and cfg.model.lora is None and not deepspeed_requested():
        raise UserError(
            f"model.dtype: bfloat16 without model.lora would train {stage} weights and optimizer state in pure "
            "bf16; set model.dtype: float32 with train.bf16: true (bf16 autocast, float32 weights and AdamW "
            "state), or add model.lora"
        )


# ---------------------------------------------------------------- one module per loop


def _bundle_class() -> type:
    import torch

    class Bundle(torch.nn.Module):
        """A loop's models and extra parameters as ONE module, so every engine wraps, shards, reduces and
        saves all of them. ``bundle(part, *args, **kw)`` runs ``part`` and returns ``(its output, extras)``,
        ``extras`` the extra parameters as computed tensors: inside the forward FSDP2 and ZeRO-3 hold them
        whole, and the loss built from them reaches their gradients through every engine."""

        def __init__(self, models: dict[str, Any], extras: dict[str, Any] | None = None):
            super().__init__()
            for name, module in models.items():
                self.add_module(name, module)
            self.extra_names = []
            for name, value in (extras or {}).items():
                self.register_parameter(name, torch.nn.Parameter(value))
                self.extra_names.append(name)

        def forward(self, part: str, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
            out = getattr(self, part)(*args, **kwargs)
            return out, {name: getattr(self, name) * 1.0 for name in self.extra_names}

    return Bundle


def Bundle(models: dict[str, Any], extras: dict[str, Any] | None = None) -> Any:  # noqa: N802 - a class
    return _bundle_class()(models, extras)


def inner(accelerator: Any, model: Any, part: str) -> Any:
    """A part of the prepared Bundle as a plain module (its parameters are shards under FSDP/ZeRO-3)."""
    return getattr(accelerator.unwrap_model(model), part)


def prepare(accelerator: Any, model: Any, optimizer: Any, micro_batch: int) -> tuple[Any, Any]:
    """Wrap model and optimizer together (FSDP re-creates the parameters it shards and points the optimizer
    at them; DeepSpeed builds its engine from both). The scheduler stays out: a prepared one steps once per
    process, and under DeepSpeed ours keeps setting the learning rate of the optimizer DeepSpeed wraps."""
    if kind(accelerator) == "deepspeed":
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            ds["train_micro_batch_size_per_gpu"] = int(micro_batch)
        ds["train_batch_size"] = (
            int(micro_batch) * ds["gradient_accumulation_steps"] * accelerator.num_processes
        )
    return accelerator.prepare(model, optimizer)


# ---------------------------------------------------------------- backward, accumulation, step


def micro_step(accelerator: Any, model: Any, last: bool) -> Any:
    """The context of one micro-batch's forward and backward: DDP syncs gradients on the last one only;
    DeepSpeed is told whether this is its accumulation boundary (it reduces there)."""
    k = kind(accelerator)
    if k == "deepspeed":
        model.set_gradient_accumulation_boundary(last)
        return contextlib.nullcontext()
    if k == "ddp" and not last:
        return accelerator.no_sync(model)
    return contextlib.nullcontext()  # one process; FSDP2 reduce-scatters every micro-batch


def backward(accelerator: Any, model: Any, loss: Any) -> None:
    """``loss`` already carries the loop's 1/accumulation factor, under every engine."""
    if kind(accelerator) == "deepspeed":
        model.backward(loss, scale_wrt_gas=False)  # the engine's own (ZeRO reductions, fp16 scaling)
    else:
        accelerator.backward(loss)  # gradient_accumulation_steps is 1 for our loops: no second division


@dataclass
class StepResult:
    grad_norm: float | None  # after clipping's measurement (the norm before clipping), None when not clipped
    skipped: bool  # fp16: the GradScaler found inf/nan gradients and skipped this update


def clip_and_step(
    accelerator: Any, model: Any, optimizer: Any, max_norm: float | None, check_grad_norm: Any = None
) -> StepResult:
    """Clip and take the optimizer step. ``check_grad_norm(norm)`` (the loop's stop on a non-finite norm)
    runs before the step, except where the norm cannot be known before it (DeepSpeed: after) and under fp16,
    where an overflow is the GradScaler's to skip: the step is then skipped and reported, not stopped."""
    import math

    fp16 = getattr(accelerator, "scaler", None) is not None or _ds_fp16(accelerator)  # a loss scaler at work
    if kind(accelerator) == "deepspeed":
        model.set_gradient_accumulation_boundary(True)
        model.step()  # clipping (gradient_clipping), the update, zero_grad
        norm = model.get_global_grad_norm()
        norm = None if norm is None else float(norm)
        skipped = bool(getattr(optimizer, "step_was_skipped", False))
        if check_grad_norm is not None and norm is not None and not (fp16 and skipped):
            check_grad_norm(norm)
        return StepResult(norm, skipped)
    params = [p for p in model.parameters() if p.requires_grad]
    norm = None
    if max_norm:
        norm = float(accelerator.clip_grad_norm_(params, max_norm))  # unscales first under fp16
    overflow = fp16 and norm is not None and not math.isfinite(norm)
    if check_grad_norm is not None and norm is not None and not overflow:
        check_grad_norm(norm)
    optimizer.step()  # under fp16 the GradScaler skips a step with inf/nan gradients
    skipped = bool(getattr(optimizer, "step_was_skipped", False))
    optimizer.zero_grad(set_to_none=True)
    return StepResult(norm, skipped)


def _ds_fp16(accelerator: Any) -> bool:
    if kind(accelerator) != "deepspeed":
        return False
    return bool(accelerator.state.deepspeed_plugin.deepspeed_config.get("fp16", {}).get("enabled", False))


# ---------------------------------------------------------------- weights: shards, checks, gathering


def local_tensor(p: Any) -> Any:
    """The part of a parameter this process holds: the ZeRO-3 partition, the FSDP2 local shard, else all.
    (ZeRO-3 also keeps small "persistent" parameters whole in ``p.data``, all-gathered from their
    partitions after each step: after writing partitions, call ``after_shard_writes``.)"""
    if hasattr(p, "ds_tensor"):
        return p.ds_tensor
    if hasattr(p, "to_local"):
        return p.to_local()
    return p


def after_shard_writes(accelerator: Any, model: Any) -> None:
    """After writing parameters through ``local_tensor`` (e.g. the weight average): under ZeRO-3 re-gather
    the persistent parameters from their partitions, as DeepSpeed does around a checkpoint, so the next
    forward and the gathered state dict agree. A collective: call on every process."""
    if kind(accelerator) == "deepspeed" and is_sharded(accelerator):
        opt = model.optimizer
        opt.checkpoint_event_prologue()
        opt.checkpoint_event_epilogue()


def nonfinite_weight(accelerator: Any, named_parameters: Any) -> str | None:
    """The first parameter with a nan/inf in this process's part of it, decided over all processes (so all
    stop together under sharding, where each process sees only its shard). Call on every process."""
    import torch

    bad = None
    for name, p in named_parameters:
        if not bool(torch.isfinite(local_tensor(p).detach()).all()):
            bad = name
            break
    if accelerator.num_processes == 1 or not is_sharded(accelerator):
        return bad
    flag = accelerator.reduce(torch.tensor([0.0 if bad is None else 1.0], device=accelerator.device), "sum")
    return (bad or "a parameter sharded on another process") if float(flag.item()) else None


def full_state_dict(accelerator: Any, model: Any, part: str | None = None) -> dict[str, Any] | None:
    """The whole weights of the prepared model (or of one Bundle part, its prefix removed) on the main
    process, None elsewhere. A collective under FSDP / ZeRO-3: call it on EVERY process."""
    if is_sharded(accelerator):
        state = accelerator.get_state_dict(model)
    else:
        state = accelerator.unwrap_model(model).state_dict() if accelerator.is_main_process else None
    if not accelerator.is_main_process or state is None:
        return None
    if part is None:
        return state
    prefix = part + "."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def full_values(accelerator: Any, params: list[Any]) -> list[Any]:
    """Whole copies of a few (small) parameters on every process: gathered under ZeRO-3 / FSDP2."""
    import torch

    k = kind(accelerator)
    if k == "deepspeed" and any(hasattr(p, "ds_tensor") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            return [p.detach().clone() for p in params]
    if k == "fsdp":
        return [p.full_tensor().detach() if hasattr(p, "full_tensor") else p.detach().clone() for p in params]
    return [torch.as_tensor(p).detach().clone() for p in params]


# ---------------------------------------------------------------- sharded checkpoints


def save_state(accelerator: Any, folder: Path) -> None:
    """Model and optimizer shards into ``folder/engine`` (accelerate save_state: DeepSpeed's own checkpoint,
    FSDP's sharded or full state per its config). Every process writes its part: call on all of them."""
    accelerator.save_state(str(Path(folder) / ENGINE_DIR))


def load_state(accelerator: Any, folder: Path) -> None:
    engine = Path(folder) / ENGINE_DIR
    if not engine.is_dir():
        raise UserError(
            f"{folder}: no {ENGINE_DIR}/ (written under another engine?); resume under the engine that wrote "
            "it, or start afresh (train.resume=false)"
        )
    accelerator.load_state(str(engine))


def inner_param(accelerator: Any, model: Any, name: str) -> Any:
    """An extra parameter of the prepared Bundle (a shard under FSDP2; read it with ``full_values``)."""
    return getattr(accelerator.unwrap_model(model), name)


def describe(accelerator: Any) -> str:
    """The engine a run trained under, for metrics.json: "single", "ddp", "zero2", "zero3" or "fsdp2"."""
    k = kind(accelerator)
    if k == "deepspeed":
        return f"zero{accelerator.state.deepspeed_plugin.zero_stage}"
    if k == "fsdp":
        return f"fsdp{getattr(accelerator.state.fsdp_plugin, 'fsdp_version', 1)}"
    return k


@contextlib.contextmanager
def plain_init() -> Any:
    """Build a model as a plain module even while a ZeRO-3 config is active: transformers' from_pretrained
    would otherwise partition it through ``deepspeed.zero.Init`` (a collective: the main process alone,
    rebuilding the model to load gathered weights into, would wait forever for the others)."""
    try:
        from transformers.integrations import deepspeed as hf_ds
    except ImportError:  # pragma: no cover - transformers always has it
        yield
        return
    ref = hf_ds._hf_deepspeed_config_weak_ref
    active = ref() if ref is not None else None
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if active is not None:
            hf_ds.set_hf_deepspeed_config(active)


@contextlib.contextmanager
def parts_callable(accelerator: Any, model: Any) -> Any:
    """Calls to a part of a prepared Bundle outside the Bundle's own forward (generation, rollout scoring):
    under FSDP2 the root's own parameters (embeddings, norms, heads: those in no wrapped layer) are made
    whole for the duration, since only the wrapped layers gather themselves in their own forward. Every
    process must make the same calls (generate with ``synced_gpus``). ZeRO-3 gathers per submodule and the
    other engines hold whole weights: nothing to do. ``model``: the prepared Bundle, or None."""
    if model is None or kind(accelerator) != "fsdp":
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def bundled(accelerator: Any) -> bool:
    """Engines a loop runs as one prepared Bundle (its models and extras together): DeepSpeed (one engine
    per optimizer) and FSDP2 (accelerate 1.16 prepares one model there)."""
    return kind(accelerator) == "deepspeed" or describe(accelerator) == "fsdp2"


class Part:
    """One part of a prepared Bundle as a callable model: ``Part(engine, "policy")(**kw)`` runs the part
    through the prepared module's own forward (DeepSpeed's engine, the FSDP2 root), output only."""

    def __init__(self, model: Any, part: str):
        self.model, self.part = model, part

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(self.part, *args, **kwargs)[0]
