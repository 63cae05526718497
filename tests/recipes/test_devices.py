"""The one device rule (rewardlab/devices.py) and the --device / --dtype flags reaching the models.

Devices other than the CPU are faked: ``devices.accelerator_device`` is what every ``auto`` asks, so a test
that makes it answer ``meta`` sees where each command puts its models without running them there (the
scoring itself is replaced by a recorder), and CUDA is reported absent so ``--device cuda`` is refused the
same way on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rewardlab import devices
from rewardlab.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    from rewardlab import models

    out = tmp_path_factory.mktemp("rm") / "model"
    models.save_model(
        models.build_reward_model("offline:tiny-rm"), models.load_tokenizer("offline:tiny-rm"), out
    )
    return out


@pytest.fixture
def score_input(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "What is 2 + 3?", "responses": ["5", "six"]}) + "\n")
    return path


@pytest.fixture
def seen(monkeypatch):
    """Records (device, dtype) of every reward model asked to score; returns zeros instead of scoring."""
    from rewardlab.scoring import RewardScorer

    calls: list[tuple[torch.device, torch.dtype]] = []

    def record(self, prompts, responses, batch_size=32, progress=False):  # noqa: ANN001
        param = next(self.model.parameters())
        calls.append((param.device, param.dtype))
        return torch.zeros((len(responses), len(self.heads)))

    monkeypatch.setattr(RewardScorer, "score_tensor", record)
    return calls


def test_the_rule_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.accelerator_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.accelerator_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv(
        "LOCAL_RANK", "3"
    )  # under accelerate launch: the rank's own card, as accelerate gives it
    assert devices.accelerator_device() == torch.device("cuda", 3)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # the 2-process CPU launch
    assert devices.accelerator_device() == torch.device("cpu")


def test_device_and_dtype_names_are_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match=r"^--device cuda: CUDA is not available here"):
        devices.resolve_device("cuda")
    with pytest.raises(UserError, match="sample.device tpu: not a device"):
        devices.resolve_device("tpu", "sample.device")
    assert devices.parse_dtype("bf16") is torch.bfloat16
    with pytest.raises(UserError, match="--dtype int8: must be one of float32, bfloat16, float16"):
        devices.parse_dtype("int8")


@pytest.mark.parametrize("command", ["score", "eval-rm", "eval-policy", "sample"])
def test_device_cuda_without_cuda_is_a_one_line_exit_2(
    command, cli, monkeypatch, rm_dir, score_input, tmp_path
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = {
        "score": ["score", rm_dir, "--input", score_input, "--output", tmp_path / "out.jsonl"],
        "eval-rm": ["eval", "rm", rm_dir, "--data", tmp_path / "nothing-read-before-the-device-check"],
        "eval-policy": ["eval", "policy", tmp_path / "nothing-read-before-the-device-check"],
        "sample": [
            "sample",
            ROOT / "configs/sample/tiny.yaml",
            f"prompts={tmp_path / 'nothing'}",
            f"output_dir={tmp_path / 's'}",
        ],  # fmt: skip
    }[command]
    res = cli(*args, "--device", "cuda")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    where = "sample.device" if command == "sample" else "--device"
    assert len(lines) == 1 and f"{where} cuda: CUDA is not available here" in lines[0], res.stderr
    assert not (tmp_path / "s").exists()  # refused before any work


def test_float32_matmuls_use_tf32_on_cuda_only(monkeypatch):
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        devices.use_tf32(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        monkeypatch.setenv("REWARDLAB_TF32", "0")
        devices.use_tf32(torch.device("cuda", 0))
        assert torch.get_float32_matmul_precision() == "highest"
        monkeypatch.delenv("REWARDLAB_TF32")
        devices.use_tf32(torch.device("cuda", 0))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_score_device_and_dtype_reach_the_model(cli, rm_dir, score_input, tmp_path, seen, monkeypatch):
    res = cli("score", rm_dir, "--input", score_input, "--output", tmp_path / "a.jsonl", "--device", "cpu",
              "--dtype", "bfloat16")  # fmt: skip
    assert res.exit_code == 0, res
    assert seen == [(torch.device("cpu"), torch.bfloat16)]
    # auto follows the device rule: a (faked) accelerator gets the model
    monkeypatch.setattr(devices, "accelerator_device", lambda: torch.device("meta"))
    res = cli("score", rm_dir, "--input", score_input, "--output", tmp_path / "b.jsonl")
    assert res.exit_code == 0, res
    assert seen[-1] == (torch.device("meta"), torch.float32)


def test_eval_rm_device_reaches_the_model(cli, rm_dir, seen, monkeypatch):
    from _policy_setup import DATA

    monkeypatch.setattr(devices, "accelerator_device", lambda: torch.device("meta"))
    res = cli("eval", "rm", rm_dir, "--data", DATA, "--dtype", "float16", "--json")
    assert res.exit_code == 0, res
    assert seen and all(s == (torch.device("meta"), torch.float16) for s in seen)


def test_sample_puts_policy_and_rm_on_the_device(cli, rm_dir, seen, monkeypatch, tmp_path):
    """`sample --device cpu --dtype bfloat16`: the policy generates from bf16 weights with its inputs on the
    device, and the RM scores in bf16 too."""
    from _policy_setup import DATA

    from rewardlab.recipes import policy_common as pc

    generated = []
    original = pc.generate

    def record(model, tokenizer, ids, mask, gen, **kw):  # noqa: ANN001
        generated.append((next(model.parameters()).dtype, ids.device, next(model.parameters()).device))
        return original(model, tokenizer, ids, mask, gen, **kw)

    monkeypatch.setattr(pc, "generate", record)
    res = cli("sample", ROOT / "configs/sample/tiny.yaml", f"prompts={DATA}", f"reward_models=[{rm_dir}]",
              f"output_dir={tmp_path / 's'}", "num_prompts=4", "max_new_tokens=4", "select=random",
              "--device", "cpu", "--dtype", "bfloat16", "--batch-size", "8")  # fmt: skip
    assert res.exit_code == 0, res
    assert generated and all(
        g == (torch.bfloat16, torch.device("cpu"), torch.device("cpu")) for g in generated
    )
    assert len(generated) == 2  # 4 prompts x k=4 at 8 answers per call
    assert seen and all(s == (torch.device("cpu"), torch.bfloat16) for s in seen)
    cfg = (tmp_path / "s" / "config.yaml").read_text()
    assert "device: cpu" in cfg and "dtype: bfloat16" in cfg


def test_eval_policy_runs_policy_reference_and_rm_on_the_device(cli, rm_dir, seen, monkeypatch, tmp_path):
    """`eval policy --device cpu --dtype bfloat16`: both sampled models in bf16 with their inputs on the
    device, the RM too; the metrics say where it ran."""
    from rewardlab import generation, models

    run = tmp_path / "run"
    models.save_model(models.build_policy("offline:tiny-llama"), models.load_tokenizer("offline:tiny-llama"),
                      run / "model")  # fmt: skip
    (run / "manifest.json").write_text(json.dumps({"reference_model": "offline:tiny-llama"}))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Hi!", "What is 2 + 3?")))
    sampled = []
    for name in ("generate", "generate_with_logits"):
        original = getattr(generation, name)

        def record(model, tokenizer, ids, *args, _original=original, **kw):  # noqa: ANN001
            sampled.append((next(model.parameters()).dtype, ids.device))
            return _original(model, tokenizer, ids, *args, **kw)

        monkeypatch.setattr(generation, name, record)
    res = cli("eval", "policy", run, "--prompts", prompts, "--reward-model", rm_dir, "--max-new-tokens", "4",
              "--device", "cpu", "--dtype", "bfloat16", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    assert sampled == [(torch.bfloat16, torch.device("cpu"))] * 2  # the policy, then the reference
    assert seen and all(s == (torch.device("cpu"), torch.bfloat16) for s in seen)
    metrics = json.loads(res.stdout)
    assert (metrics["eval_device"], metrics["eval_dtype"]) == ("cpu", "bfloat16")
