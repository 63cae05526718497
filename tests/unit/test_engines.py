"""DeepSpeed's plugin takes accumulation and clipping from the run's config (rewardlab.engines): "auto" in
configs/accelerate/zero*.yaml is filled from train.grad_accum / train.max_grad_norm; a number that differs
is refused before any work (the 2-process ZeRO-3 runs with train.grad_accum=2: tests/recipes/test_sharded.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def launched_env(monkeypatch, gas: str, clip: str) -> None:
    """The environment `accelerate launch --config_file zero*.yaml` gives each process."""
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", gas)
    monkeypatch.setenv("ACCELERATE_GRADIENT_CLIPPING", clip)


def test_auto_takes_the_runs_accumulation_and_clipping(monkeypatch):
    from rewardlab import config as cfglib
    from rewardlab import engines

    launched_env(monkeypatch, "auto", "auto")
    cfg = cfglib.load(ROOT / "configs/rm/tiny.yaml", ["train.grad_accum=4", "train.max_grad_norm=0.5"])
    ds = engines.deepspeed_plugin(cfg).deepspeed_config
    assert ds["gradient_accumulation_steps"] == 4 and ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # the final save


def test_a_fixed_value_that_differs_from_the_run_is_refused(monkeypatch):
    from rewardlab import config as cfglib
    from rewardlab import engines
    from rewardlab.errors import UserError

    launched_env(monkeypatch, "1", "auto")  # what zero*.yaml hard-coded before
    cfg = cfglib.load(ROOT / "configs/rm/tiny.yaml", ["train.grad_accum=2"])
    with pytest.raises(UserError, match="gradient_accumulation_steps: 1 but train.grad_accum is 2"):
        engines.deepspeed_plugin(cfg)
    launched_env(monkeypatch, "2", "1.0")  # equal values are fine
    assert engines.deepspeed_plugin(cfg).deepspeed_config["gradient_accumulation_steps"] == 2
