"""One device rule for every stage and command: where models run, in which dtype, with which matmul precision.

Why one place: inference commands, evaluation inside the pipeline, the reward model of GRPO/RLOO/RS and the
reference models used to pick their own device (often the CPU, in float32), so a 7B evaluation on a GPU
machine ran for hours on the CPU. The rule, in order:

1. an explicit ``--device`` / ``device:`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``); a device that is not
   there is refused in one line (exit 2), never silently replaced by the CPU;
2. ``auto``: the CPU when ``ACCELERATE_USE_CPU=true`` (the 2-process CPU launch), else CUDA -- under
   ``accelerate launch`` the rank's own card ``cuda:<LOCAL_RANK>``, the device accelerate gives that process,
   found without starting the process group -- else Apple's MPS, else the CPU.

float32 work on CUDA uses TF32 matmuls (``torch.set_float32_matmul_precision("high")``): on Ampere and newer
cards that is several times faster than full-precision float32 at ~1e-3 relative error per matmul, the
setting PyTorch itself recommends for training and inference. ``REWARDLAB_TF32=0`` turns it off (bitwise
comparisons against the CPU). Low layer: imports only ``errors``.
"""

from __future__ import annotations

import os
from typing import Any

from rewardlab.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")
DEVICE_HELP = (
    "auto (CUDA, else MPS, else CPU; the rank's own GPU under accelerate launch), cpu, cuda, cuda:N or mps."
)
DTYPE_HELP = "Model weights' dtype for inference: float32 (TF32 matmuls on CUDA), bfloat16 or float16."


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def accelerator_device() -> Any:
    """This process's accelerator as a ``torch.device`` (rule 2 above)."""
    import torch

    if _flag("ACCELERATE_USE_CPU"):
        return torch.device("cpu")
    if torch.cuda.is_available():
        local = os.environ.get("LOCAL_RANK")
        index = int(local) if local not in (None, "", "-1") else torch.cuda.current_device()
        return torch.device("cuda", index % torch.cuda.device_count())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(name: Any = "auto", where: str = "--device") -> Any:
    """``auto``/None -> ``accelerator_device()``; an explicit name -> that device, refused when absent.

    ``where`` names the flag or config key in the refusal (``--device``, ``sample.device``)."""
    import torch

    if isinstance(name, torch.device):
        return use_tf32(name)
    text = "auto" if name is None else str(name).strip().lower()
    if text == "auto":
        return use_tf32(accelerator_device())
    kind, _, index = text.partition(":")
    if kind not in DEVICES or kind == "auto" or (index and not index.isdigit()):  # cpu:0 is torch's too
        raise UserError(f"{where} {name}: not a device (auto, cpu, cuda, cuda:N, mps)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"{where} {name}: CUDA is not available here (torch {torch.__version__}, "
                f"{'built without CUDA' if torch.version.cuda is None else 'no visible GPU'}); "
                "use --device auto or cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(f"{where} {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError(f"{where} {name}: MPS is not available here; use --device auto or cpu")
    return use_tf32(torch.device(text))


def parse_dtype(name: Any = "float32", where: str = "--dtype") -> Any:
    """A dtype name (float32, bfloat16, float16; also a ``torch.dtype``) -> ``torch.dtype``."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    text = str(name or "float32").strip().lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    text = aliases.get(text, text)
    if text not in DTYPES:
        raise UserError(f"{where} {name}: must be one of {', '.join(DTYPES)}")
    return getattr(torch, text)


def use_tf32(device: Any = None) -> Any:
    """Allow TF32 matmuls for float32 work when ``device`` (default: this process's) is CUDA; returns it.

    Idempotent and process-wide (PyTorch's setting is global). ``REWARDLAB_TF32=0`` opts out."""
    import torch

    device = accelerator_device() if device is None else device
    if torch.device(device).type == "cuda" and os.environ.get("REWARDLAB_TF32", "1") != "0":
        torch.set_float32_matmul_precision("high")
    return device


def place(model: Any, device: Any = "auto", dtype: Any = None, where: str = "--device") -> Any:
    """Move ``model`` to the resolved device (and cast to ``dtype`` when given); returns the model."""
    target = resolve_device(device, where)
    if dtype is not None:
        return model.to(device=target, dtype=parse_dtype(dtype))
    return model.to(target)


def model_device(model: Any) -> Any:
    """Where a model's first parameter lives (``torch.device``); the CPU for a model without parameters."""
    import torch

    for param in model.parameters():
        return param.device
    return torch.device("cpu")


ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2")


def attn_implementation(
    requested: str = "auto", device: Any = None, dtype: Any = None, where: str = "model.attn_implementation"
) -> str:
    """The attention kernel a loader passes to ``from_pretrained(attn_implementation=...)``.

    ``auto``: flash-attention 2 when the ``flash_attn`` package is importable, the device (``None``: this
    process's, by the device rule) is CUDA and the weights are bf16/fp16 (flash-attn has no float32 kernel),
    else PyTorch's SDPA. ``flash_attention_2`` asked for where it cannot run is refused in one line rather
    than failing inside the first forward (or, without CUDA, never)."""
    import importlib.util

    if requested not in ATTN_IMPLEMENTATIONS:
        raise UserError(f"{where} must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got '{requested}'")
    if requested in ("sdpa", "eager"):
        return requested
    import torch

    kind = (accelerator_device() if device in (None, "auto") else torch.device(device)).type
    has_flash = importlib.util.find_spec("flash_attn") is not None
    if requested == "flash_attention_2":
        if not has_flash:
            raise UserError(
                f"{where}=flash_attention_2 needs the flash-attn package (pip install flash-attn "
                "--no-build-isolation); use auto or sdpa"
            )
        if kind != "cuda":
            raise UserError(
                f"{where}=flash_attention_2 needs a CUDA device, this process has {kind}; use auto"
            )
        return requested
    half = dtype is not None and str(dtype).replace("torch.", "") in ("bfloat16", "float16")
    return "flash_attention_2" if has_flash and kind == "cuda" and half else "sdpa"
