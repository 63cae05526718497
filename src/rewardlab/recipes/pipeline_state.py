"""What the pipeline's stages share: the stage names, each stage's output, the run context, and how a stage's
settings and tracking section are read from the pipeline config.

Why a module of its own: both the pipeline runner (pipeline.py) and its eval stage (pipeline_eval.py) need
these, and neither may import the other (no import cycles in rewardlab).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab import config as cfglib

STAGES = ("simulate", "data", "raters", "rm", "sft", "dpo", "ppo", "rs", "eval", "sample", "rate", "report")
TRAIN_STAGES = ("rm", "sft", "dpo", "ppo", "rs")
POLICY_STAGES = ("sft", "dpo", "ppo", "rs")
# Interrupted train stages that continue from their newest checkpoint; rs restarts (its rounds are short and
# `train rs` refuses train.resume).
RESUMABLE = ("rm", "sft", "dpo", "ppo")
DATA_STAGES = ("simulate", "data", "raters", "rate")
MARKER = "STAGE_COMPLETE"
STARTED = "STAGE_STARTED"


# ---------------------------------------------------------------- state shared between stages


@dataclass
class Output:
    """What a finished stage hands to the stages after it."""

    stage: str
    run_dir: Path
    fingerprint: str
    data: Path | None = None  # a dataset folder (simulate, data, raters, rate)
    model: Path | None = None  # a model folder (rm, sft, dpo, ppo, rs)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    cfg: Any  # PipelineConfig
    root: Path
    outputs: dict[str, Output] = field(default_factory=dict)

    def last(self, *stages: str) -> Output | None:
        """The output of the latest stage run so far among ``stages`` (pipeline order)."""
        done = [s for s in self.cfg.stages if s in stages and s in self.outputs]
        return self.outputs[done[-1]] if done else None

    @property
    def source(self) -> Output | None:
        """The campaign: raw judgments with their prompts (and meta.task for simulated ones)."""
        return self.last("simulate", "data")

    @property
    def labels(self) -> Output | None:
        """The dataset to train on: aggregated by the raters stage when it ran, else the campaign."""
        return self.last("raters") or self.source


def stage_raw(cfg: Any, stage: str) -> dict[str, Any]:
    """A stage's own settings from the pipeline config: a YAML path, or a mapping with optional ``base``."""
    spec = getattr(cfg, stage, None)
    if spec is None and stage == "rate":
        spec = cfg.simulate
    if spec is None:
        return {}
    if isinstance(spec, str):
        return cfglib.read_yaml(spec)
    spec = dict(spec)
    base = spec.pop("base", None)
    return cfglib.deep_merge(cfglib.read_yaml(base), spec) if base else spec


def tracking_for(ctx: Context, stage: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's tracking section with group = pipeline name, tags + stage name, run name."""
    base = ctx.cfg.tracking.model_dump(mode="json")
    own = raw.get("tracking") or {}
    tags = list(dict.fromkeys([*base.get("tags", []), *own.get("tags", []), ctx.cfg.name, stage]))
    return {
        **base,
        "group": ctx.cfg.tracking.group or ctx.cfg.name,
        "tags": tags,
        "run_name": f"{ctx.cfg.name}-{stage}",
    }
