"""Precision rules of our own loops (rewardlab.engines): fp16 overflow steps are skipped by the GradScaler,
counted and reported, not stopped; pure-bf16 full fine-tuning is refused with what to set instead.

accelerate builds no GradScaler on a CPU (it runs "fp16" there as float32, without autocast), so the fp16
test gives the run the GradScaler accelerate builds on a GPU (``torch.amp.GradScaler`` on the CPU device,
with fp16 autocast) and makes one step's scaled gradients overflow: the GPU path, run on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_fp16_overflow_step_is_skipped_counted_and_reported_not_stopped(cli, tmp_path, monkeypatch):
    import torch

    from rewardlab import engines
    from rewardlab.recipes import rm

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    make = engines.make_accelerator

    def with_scaler(*args, **kwargs):  # what accelerate does on a GPU under mixed_precision=fp16
        accelerator = make(*args, **kwargs)
        assert str(accelerator.mixed_precision) == "fp16"
        accelerator.scaler, accelerator.native_amp = torch.amp.GradScaler("cpu", init_scale=2.0**16), True
        return accelerator

    monkeypatch.setattr(engines, "make_accelerator", with_scaler)
    batch_loss, calls = rm.batch_loss, [0]

    def overflow_at_step_2(*args, **kwargs):  # finite loss; x 2^16 scaling overflows float32 in backward
        loss, parts = batch_loss(*args, **kwargs)
        calls[0] += 1
        return (loss * 1e35 if calls[0] == 2 else loss), parts

    monkeypatch.setattr(rm, "batch_loss", overflow_at_step_2)
    out = tmp_path / "fp16"
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"output_dir={out}", "train.max_steps=4",
              "train.batch_size=4", "train.log_every=1")  # fmt: skip
    assert res.exit_code == 0, res
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skipped_steps"] == 1 and metrics["steps"] == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1]
    assert rows[1]["lr"] == rows[0]["lr"]  # the skipped update left the schedule where it was
    assert rows[2]["lr"] < rows[1]["lr"]


def test_fp16_skip_is_not_taken_for_a_non_finite_norm_without_a_scaler():
    """Without a loss scaler (fp32, bf16) a non-finite gradient norm stops the run before the step."""
    from types import SimpleNamespace

    import torch
    from accelerate.utils import DistributedType

    from rewardlab import engines

    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([float("inf"), 1.0])
    model = torch.nn.Module()
    model.register_parameter("p", p)
    stepped = []
    opt = SimpleNamespace(step=lambda: stepped.append(1), zero_grad=lambda set_to_none: None)
    acc = SimpleNamespace(scaler=None, distributed_type=DistributedType.NO, num_processes=1,
                          clip_grad_norm_=lambda params, n: torch.nn.utils.clip_grad_norm_(params, n))  # fmt: skip
    seen = []

    def stop(norm: float) -> None:
        seen.append(norm)
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        engines.clip_and_step(acc, model, opt, 1.0, stop)
    assert seen and not stepped  # stopped before the optimizer step


@pytest.mark.parametrize("stage", ["rm", "ppo"])
def test_pure_bf16_full_fine_tuning_is_refused_with_what_to_set(stage):
    from rewardlab import config as cfglib
    from rewardlab import engines
    from rewardlab.errors import UserError

    path = ROOT / f"configs/{stage}/tiny.yaml"
    with pytest.raises(UserError, match="model.dtype: float32 with train.bf16: true"):
        engines.refuse_pure_bf16(cfglib.load(path, ["model.dtype=bfloat16"]), stage)
    engines.refuse_pure_bf16(cfglib.load(path, ["model.dtype=bfloat16", "model.lora={r: 4}"]), stage)
    engines.refuse_pure_bf16(cfglib.load(path, ["train.bf16=true"]), stage)  # autocast, float32 master


def test_train_rm_refuses_pure_bf16_before_any_work(cli, tmp_path):
    out = tmp_path / "bf16"
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"output_dir={out}", "model.dtype=bfloat16")
    assert res.exit_code == 2 and "model.dtype: bfloat16 without model.lora" in res.stderr
    assert not (out / "manifest.json").exists()
