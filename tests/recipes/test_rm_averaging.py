"""Weight averaging (`averaging.kind: swa|ema`): the formulas by hand, and a resumed run ends with the same
averaged model as an uninterrupted one (the average is part of the checkpoint)."""

from __future__ import annotations

import json
import shutil

import pytest
from _policy_setup import RM_TIMING_KEYS

from rewardlab.recipes.rm import WeightAverage


def test_swa_and_ema_by_hand():
    import torch

    layer = torch.nn.Linear(1, 1, bias=False)
    swa, ema = WeightAverage("swa", 0.9, start=2), WeightAverage("ema", 0.5, start=2)
    for step, w in enumerate([10.0, 1.0, 2.0, 6.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(w)
        swa.update(layer, step)
        ema.update(layer, step)
    assert swa.count == 3 and swa.avg["weight"].item() == pytest.approx((1 + 2 + 6) / 3)  # step 1 skipped
    assert ema.avg["weight"].item() == pytest.approx(0.5 * (0.5 * 1 + 0.5 * 2) + 0.5 * 6)
    swa.copy_to(layer)
    assert layer.weight.item() == pytest.approx(3.0)
    none = WeightAverage("none", 0.9, start=0)
    none.update(layer, 5)
    none.copy_to(layer)
    assert none.count == 0 and layer.weight.item() == pytest.approx(3.0)


def test_resume_keeps_the_average(tmp_path, cli, arithmetic_pairs):
    arithmetic_pairs(tmp_path / "ds", 24)
    args = [
        "train", "rm", "configs/rm/tiny.yaml", f"data.train={tmp_path / 'ds'}", "heads=[overall]",
        "train.batch_size=4", "train.max_steps=6", "train.save_every=2", "averaging.kind=swa",
        "averaging.start=0.3", "data.eval_fraction=0.25",
    ]  # fmt: skip
    straight = tmp_path / "straight"
    assert cli(*args, f"output_dir={straight}").exit_code == 0
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)  # as if killed after step 4: the average then holds steps 2-4
    shutil.rmtree(resumed / "checkpoints" / "step-00000006")
    shutil.rmtree(resumed / "model")
    (resumed / "metrics.json").unlink()
    assert cli(*args, f"output_dir={resumed}", "train.resume=true").exit_code == 0
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    assert b["resumed_from_step"] == 4
    assert {k: v for k, v in a.items() if k not in RM_TIMING_KEYS} == {
        k: v for k, v in b.items() if k not in RM_TIMING_KEYS
    }
