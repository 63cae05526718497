"""model.attn_implementation (issue 30 item 4): every loader passes it to transformers; auto picks
flash-attention 2 only where it runs (flash-attn importable, CUDA, half weights); an impossible
flash_attention_2 is refused when the config loads, in one line, before any work."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rewardlab import devices, models
from rewardlab.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_every_loader_gets_the_kernel(tmp_path):
    from rewardlab.recipes.ppo import build_value_model
    from rewardlab.scoring import RewardScorer

    assert models.build_policy("offline:tiny-llama").config._attn_implementation == "sdpa"  # auto on CPU
    assert (
        models.build_policy("offline:tiny-llama", attn_implementation="eager").config._attn_implementation
        == "eager"
    )
    ref = models.build_reference("offline:tiny-llama", attn_implementation="eager")
    assert ref.config._attn_implementation == "eager"
    rm = models.build_reward_model("offline:tiny-rm", attn_implementation="eager")
    assert rm.config._attn_implementation == "eager"
    folder = models.save_model(rm, models.load_tokenizer("offline:tiny-rm"), tmp_path / "rm")
    for kind in ("eager", "sdpa"):
        scorer = RewardScorer.from_path(folder, device="cpu", attn_implementation=kind)
        assert scorer.model.config._attn_implementation == kind
    tok = models.load_tokenizer("offline:tiny-llama")
    value, _ = build_value_model(
        "offline:tiny-llama", str(folder), None, tok, [], attn_implementation="eager"
    )
    assert value.inner.config._attn_implementation == "eager"


def test_auto_takes_flash_only_where_it_runs(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "flash_attn" else real(n, *a)
    )
    assert devices.attn_implementation("auto", device="cuda", dtype="bfloat16") == "flash_attention_2"
    assert devices.attn_implementation("auto", device="cuda", dtype="float32") == "sdpa"  # no fp32 kernel
    assert devices.attn_implementation("auto", device="cpu", dtype="bfloat16") == "sdpa"
    assert devices.attn_implementation("flash_attention_2", device="cuda") == "flash_attention_2"
    with pytest.raises(UserError, match="needs a CUDA device"):
        devices.attn_implementation("flash_attention_2", device="cpu")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "flash_attn" else real(n, *a))
    assert devices.attn_implementation("auto", device="cuda", dtype="bfloat16") == "sdpa"
    with pytest.raises(UserError, match="needs the flash-attn package"):
        devices.attn_implementation("flash_attention_2", device="cuda")
    with pytest.raises(UserError, match="must be one of"):
        devices.attn_implementation("flash")


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn installed here")
def test_impossible_flash_attention_is_refused_before_any_work(tmp_path):
    import subprocess

    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", "train", "rm", str(ROOT / "configs/rm/tiny.yaml"),
         f"output_dir={out}", "model.attn_implementation=flash_attention_2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "attn_implementation" in lines[0] and "flash" in lines[0], res.stderr
    assert not out.exists()  # nothing was made


def test_the_stage_passes_its_key_to_the_loader(cli, tmp_path, monkeypatch):
    asked = []
    real = devices.attn_implementation
    monkeypatch.setattr(
        devices, "attn_implementation", lambda r="auto", **kw: asked.append(r) or real(r, **kw)
    )
    res = cli("train", "sft", ROOT / "configs/sft/tiny.yaml", f"data.train={ROOT / 'data/sample'}",
              f"output_dir={tmp_path / 'sft'}", "train.max_steps=1", "model.attn_implementation=eager")  # fmt: skip
    assert res.exit_code == 0, res
    assert asked and set(asked) == {"eager"}
