"""Optimizer parameter groups with per-depth learning rates: a faster reward head, slower lower layers.

Why: a reward model is a pretrained backbone plus a freshly initialised head. On a few thousand human
pairs the new head needs to move far while the pretrained layers should move little (layer-wise lr decay,
as in ELECTRA / "Revisiting few-sample BERT fine-tuning"; a head lr multiplier, the linear-probe-then-
fine-tune idea in one stage). Depth is read from parameter names, which every transformers backbone spells
with a numbered layer list (`encoder.layer.3.`, `model.layers.3.`, `transformer.h.3.`).
"""

from __future__ import annotations

import re
from typing import Any

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def depth_of(name: str, head: str, num_layers: int) -> int | None:
    """None for the reward head; i + 1 for layer i; 0 for embeddings; num_layers + 1 for the rest (final
    norm, pooler: they sit above the last layer)."""
    if name.startswith(head + ".") or f".{head}." in name:
        return None
    found = _LAYER.search("." + name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embed" in name else num_layers + 1


def layerwise_param_groups(
    model: Any, lr: float, head: str, head_lr_scale: float = 1.0, layer_lr_decay: float = 1.0
) -> list[dict[str, Any]]:
    """Trainable parameters grouped by lr: the head at lr * head_lr_scale; the top layer (and what sits
    above it: final norm, pooler) at lr; each layer below at decay times the one above it, embeddings
    lowest. With both knobs at 1 this is a single group at lr, the plain recipe."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head_lr_scale == 1.0 and layer_lr_decay == 1.0:
        return [{"params": [p for _, p in named]}]
    indices = [int(m.group(1)) for n, _ in named if (m := _LAYER.search("." + n))]
    num_layers = max(indices) + 1 if indices else 0
    by_lr: dict[float, list[Any]] = {}
    for name, param in named:
        depth = depth_of(name, head, num_layers)
        scale = head_lr_scale if depth is None else layer_lr_decay ** max(0, num_layers - depth)
        by_lr.setdefault(lr * scale, []).append(param)
    return [{"params": params, "lr": group_lr} for group_lr, params in sorted(by_lr.items())]
