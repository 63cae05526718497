"""scripts/gpu_check.py on the CPU: its smoke mode passes on a reduced subset, and it fails when a stage
runs its model on the CPU while the check expects a GPU (CUDA reported absent, so the device rule gives
the CPU: exactly what a stage that ignores the GPU would do)."""

from __future__ import annotations

import importlib.util
import json

import torch
from _policy_setup import ROOT


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_subset_passes_on_cpu(tmp_path, capsys):
    from rewardlab import models

    build = models.build_reward_model
    assert gpu_check().main(["--allow-cpu", "--only", "eval-rm,score", "--out", str(tmp_path)]) == 0
    assert models.build_reward_model is build  # the hooks are removed afterwards
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] and report["expect_device"] == "cpu"
    assert [s["stage"] for s in report["stages"]] == ["eval-rm", "score"]
    for stage in report["stages"]:
        assert [(m["kind"], m["device"], m["input_device"]) for m in stage["models"]] == [
            ("reward_scorer", "cpu", "cpu")
        ]
        assert stage["wall_s"] > 0
    assert "eval-rm      yes" in capsys.readouterr().out


def test_fails_when_a_stage_runs_on_the_cpu_while_a_gpu_is_expected(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check().main(["--expect-device", "cuda", "--only", "score", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    (stage,) = report["stages"]
    assert not report["ok"] and not stage["ok"]
    assert "reward_scorer device cpu, expected cuda" in stage["problems"]
    assert "score        NO" in capsys.readouterr().out


def test_dependencies_are_added_and_unknown_stages_refused():
    module = gpu_check()
    assert module.selected("eval-policy") == ["sft", "eval-policy"]
    assert module.selected("ppo-resume") == ["ppo-lora", "ppo-resume"]
    try:
        module.selected("nope")
    except SystemExit as err:
        assert "unknown stage(s) nope" in str(err)
    else:
        raise AssertionError("an unknown stage was accepted")


def test_8b_stages_run_at_toy_size_on_cpu(tmp_path):
    """ppo-8b and rm-8b (issue 30, item 9) at --big-shape tiny: the same build, save and runs as at 8B on a
    GPU (bf16 base, LoRA, value adapter, bf16 RM, packing, checkpointing), with their throughput reported."""
    assert gpu_check().main(["--allow-cpu", "--only", "ppo-8b,rm-8b", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["big_model"]["shape"] == "tiny"
    ppo, rm = report["stages"]
    assert ppo["run_metrics"]["steps"] == 2 and ppo["run_metrics"]["episodes_per_s"] > 0
    assert rm["run_metrics"]["steps"] == 3 and rm["run_metrics"]["tokens_per_s"] > 0
    assert {(m["kind"], m["dtype"]) for m in ppo["models"] if m["device"]} == {
        ("policy", "bfloat16"),
        ("reward_scorer", "bfloat16"),
    }
    assert "packing: true" in (tmp_path / "rm-8b" / "config.yaml").read_text()
