"""Quantized loading (model.quantization, QLoRA): refused in one line before any work where it cannot train
(no LoRA, no CUDA GPU, no bitsandbytes), and the from_pretrained kwargs the builders pass when it can. The
k-bit path itself needs a CUDA GPU with bitsandbytes (docs/scaling.md, "Quantized loading (QLoRA)")."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rewardlab import devices, models
from rewardlab.errors import UserError

LORA = "model.lora={r: 4, alpha: 8}"
STAGES = {"rm": "configs/rm/tiny.yaml", "sft": "configs/sft/tiny.yaml", "dpo": "configs/dpo/tiny.yaml",
          "ppo": "configs/ppo/tiny.yaml"}  # fmt: skip


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load fails the test: the refusals must come first."""
    import transformers

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    for cls in ("AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        monkeypatch.setattr(getattr(transformers, cls), "from_pretrained", boom)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_quantization_without_lora_is_refused_when_the_config_loads(cli, tmp_path, stage, no_model_loads):
    out = tmp_path / "run"
    res = cli("train", stage, STAGES[stage], f"output_dir={out}", "model.quantization=4bit")
    assert res.exit_code == 2, res
    assert "needs model.lora" in _one_line(res.stderr)
    assert not out.exists()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_quantization_on_the_cpu_is_refused_before_any_work(cli, tmp_path, stage, no_model_loads):
    out = tmp_path / "run"
    res = cli("train", stage, STAGES[stage], f"output_dir={out}", "model.quantization=8bit", LORA)
    assert res.exit_code == 2, res
    assert "needs a CUDA GPU" in _one_line(res.stderr) and "runs on cpu" in res.stderr
    assert not out.exists()


def test_quantization_without_bitsandbytes_is_refused(cli, tmp_path, monkeypatch, no_model_loads):
    """On a CUDA machine (faked here) without the package: one line naming the install."""
    real = importlib.util.find_spec
    monkeypatch.setattr(devices, "accelerator_device", lambda: torch.device("cuda", 0))
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    out = tmp_path / "run"
    res = cli("train", "rm", STAGES["rm"], f"output_dir={out}", "model.quantization=4bit", LORA)
    assert res.exit_code == 2, res
    assert "bitsandbytes is not installed" in _one_line(res.stderr)
    assert not out.exists()


def test_check_quantization_rules():
    models.check_quantization(None, None)  # full precision: nothing to check
    with pytest.raises(UserError, match="needs model.lora"):
        models.check_quantization("4bit", None, device="cuda")
    with pytest.raises(UserError, match="runs on mps"):
        models.check_quantization("4bit", {"r": 4}, device=torch.device("mps"))
    with pytest.raises(UserError, match="null, 4bit or 8bit"):
        models.check_quantization("2bit", {"r": 4}, device="cuda")


def test_quantization_kwargs_are_qlora_on_this_processes_gpu():
    assert models.quantization_kwargs(None) == {}
    four = models.quantization_kwargs("4bit", "float32", device="cuda:1")
    assert four["device_map"] == {"": "cuda:1"}
    q = four["quantization_config"]
    assert q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16  # float32 weights: matmuls in bf16, not float32
    assert q.llm_int8_skip_modules is None  # transformers' default: the LM head stays unquantized
    fp16 = models.quantization_kwargs("4bit", "float16", device="cuda:0")["quantization_config"]
    assert fp16.bnb_4bit_compute_dtype == torch.float16
    eight = models.quantization_kwargs("8bit", keep=["score"], device="cuda:0")["quantization_config"]
    assert eight.load_in_8bit and not eight.load_in_4bit and eight.llm_int8_skip_modules == ["score"]


class _Loaded(Exception):
    pass


@pytest.mark.parametrize("builder", ["policy", "reward_model"])
def test_builders_pass_the_quantization_kwargs(monkeypatch, builder):
    """What each builder hands from_pretrained: the BitsAndBytesConfig and device map (the RM keeps its head
    in float so it trains)."""
    import transformers

    seen: dict = {}

    def capture(path, **kwargs):
        seen.update(kwargs)
        raise _Loaded

    monkeypatch.setattr(models, "check_quantization", lambda *a, **k: None)  # no GPU here
    monkeypatch.setattr(devices, "accelerator_device", lambda: torch.device("cuda", 0))
    cls = "AutoModelForCausalLM" if builder == "policy" else "AutoModelForSequenceClassification"
    monkeypatch.setattr(getattr(transformers, cls), "from_pretrained", capture)
    build = models.build_policy if builder == "policy" else models.build_reward_model
    with pytest.raises(_Loaded):
        build("offline:tiny-llama", lora={"r": 4}, quantization="4bit", dtype="bfloat16")
    q = seen["quantization_config"]
    assert q.load_in_4bit and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert seen["device_map"] == {"": "cuda:0"} and seen["dtype"] == torch.bfloat16
    assert q.llm_int8_skip_modules == (None if builder == "policy" else ["score", "classifier"])


def test_prepare_quantized_is_a_no_op_at_full_precision():
    model = torch.nn.Linear(2, 2)
    assert models.prepare_quantized(model, None) is model
