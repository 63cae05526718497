"""GRPO/RLOO with vLLM generation (online.use_vllm): the arguments TRL receives, the generation_config.json
vLLM reads our stop ids from, and the one-line refusal without vllm. vLLM itself needs a GPU and is not
installed here, so TRL's trainer is replaced by one that records what it was given and stops."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from _policy_setup import DATA, ROOT, untrained_rm

from rewardlab import config as cfglib
from rewardlab import generation, models
from rewardlab.recipes import online


class _Started(Exception):
    pass


def _cfg(stage: str, run: Path, *extra: str):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    return cfglib.load(ROOT / f"configs/{stage}/tiny.yaml", [f"data.train={DATA}", f"output_dir={run}",
                       "model.name_or_path=offline:tiny-llama", f"online.reward_model={rm}", "train.max_steps=1",
                       "train.batch_size=8", "online.num_generations=4", *extra], stage=stage)  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix != ".safetensors"}


@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_trl_gets_the_vllm_options_and_vllm_reads_our_stops(tmp_path, monkeypatch, stage):
    seen: dict = {}
    config_cls, _ = online.trainer_classes(stage)

    def trainer(model, args, **kwargs):
        seen.update(model=model, args=args)
        raise _Started

    monkeypatch.setattr(online, "check_vllm", lambda cfg: None)  # vllm is not installed here
    # a chat model whose turn ends on another token than eos (Llama 3's <|eot_id|>): the source folder's
    # generation_config.json does not hold that stop, so only the file we write can give it to vLLM
    monkeypatch.setattr(generation, "end_of_turn_id", lambda tokenizer: 7)
    monkeypatch.setattr(online, "trainer_classes", lambda s: (config_cls, trainer))
    run = tmp_path / "run"
    before = _snapshot(Path(models.resolve("offline:tiny-llama")))
    cfg = _cfg(stage, run, "online.use_vllm=true", "online.vllm_mode=server",
               "online.vllm_gpu_memory_utilization=0.55", "online.vllm_server_host=10.0.0.7",
               "online.vllm_server_port=8123", "model.lora={r: 4, alpha: 8}")  # fmt: skip
    with pytest.raises(_Started):
        online.run(cfg)
    args, model = seen["args"], seen["model"]
    assert isinstance(args, config_cls)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == (True, "server", 0.55)
    assert (args.vllm_server_host, args.vllm_server_port) == ("10.0.0.7", 8123)
    stops = list(model.generation_config.eos_token_id)
    tokenizer = models.load_tokenizer("offline:tiny-llama")
    assert stops == [tokenizer.eos_token_id, 7]
    assert args.generation_kwargs == {"stop_token_ids": stops}  # server mode: each request carries them

    folder = run / "vllm-policy"
    assert model.name_or_path == str(folder)  # what TRL's colocated vLLM loads (peft forwards to the base)
    written = json.loads((folder / "generation_config.json").read_text())
    eos = written["eos_token_id"]
    assert eos == stops and not (folder / "generation_config.json").is_symlink()
    assert json.loads(before["generation_config.json"])["eos_token_id"] != stops  # the source lacks the stop
    source = Path(models.resolve("offline:tiny-llama"))
    weights = folder / "model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (source / "model.safetensors").resolve()
    assert not (folder / "tokenizer.json").is_symlink()  # our tokenizer, written, not the source's linked
    assert _snapshot(source) == before  # the source folder is never written to


def test_without_use_vllm_trl_gets_no_vllm_arguments(tmp_path):
    cfg = _cfg("grpo", tmp_path / "run")
    assert online.vllm_args(cfg, [2]) == {}


def test_use_vllm_without_vllm_is_refused_in_one_line(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    run = tmp_path / "run"
    res = cli("train", "grpo", ROOT / "configs/grpo/tiny.yaml", f"output_dir={run}", "online.use_vllm=true")
    assert res.exit_code == 2, res
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "vllm is not installed" in lines[0]
    assert not run.exists()
