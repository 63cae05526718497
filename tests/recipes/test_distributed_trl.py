"""The TRL stages (sft, grpo, rloo) and rejection sampling (rs) under real `accelerate launch` on 2 CPU
processes (gloo; the docs/design.md command): one run folder written by the main process, one tracker run
(each logged step once in metrics.jsonl; the other processes get a NullTracker, so no second wandb run either:
tests/unit/test_runs_multiprocess.py), one --json report, one saved model. DPO's
2-process test is in test_distributed.py.

Equivalence with 1 process at the same global batch (1 x 8 vs 2 x 4), 2 steps each:
- sft: the trained model within SFT_TOL of the 1-process one. TRL averages the loss over the tokens of all
  processes, so the gradient is the same; what differs is float summation order and each process padding
  to its own longest row, amplified by Adam at lr 3e-3 (the reasoning of test_distributed.py's DPO bound).
- rs: each generation batch is sampled by one process with the same prompts and seeds as on one process
  (recipes/rs.py, process_share), so the answers, the kept best ones and the probes' RM scores are the
  same; the SFT pass is TRL's, as for sft.
- grpo, rloo: TRL samples completions from each process's torch RNG stream, so 2 processes draw other
  completions than 1 and the runs are not comparable step by step; TRL has no per-prompt seeding to plug
  in. Checked instead: the run's structure above and that both processes trained one model (it moved from
  the start and the main process saved it once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _policy_setup import DATA, ROOT, read_jsonl, untrained_rm

# As in test_distributed.py (kept here too, so either file can change alone).
METRIC_TOL = 1e-5
ENV = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "DISABLE_TQDM": "1"}  # fmt: skip
# The docs/design.md command: real 2-process DDP on CPU (`--cpu --num_processes 2` would start one process).
LAUNCH_2 = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def launch(cmd: list, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def max_output_difference(a: Path, b: Path) -> float:
    """Max |logit difference| of two saved policies on fixed texts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = ["What is 2 + 3? The answer is 5.", "How do I reset my router? Unplug it for 30 seconds."]
    outs = []
    for path in (a, b):
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        with torch.no_grad():
            outs.append(model(**tok(texts, return_tensors="pt", padding=True)).logits)
    diff = float((outs[0] - outs[1]).abs().max())
    print(f"max |logit difference|: {diff:.2e}")  # shown with -s
    return diff


SFT_TOL = 1e-5  # measured 2.7e-7 (sft), 2.1e-7..2.4e-7 (rs), while training moves the outputs by 0.30-0.41


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """The first 96 records of the bundled campaign: an SFT epoch of more than 2 full global batches (a short
    last batch is padded with repeated rows on one process, which no layout change can undo)."""
    from rewardlab.data.dataset import iter_records, load_dataset, write_dataset

    out = tmp_path_factory.mktemp("data") / "tiny"
    write_dataset(list(iter_records(load_dataset(DATA)))[:96], out)
    return out


def stage_args(stage: str, data: Path) -> list[str]:
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    common = [f"data.train={data}", "model.name_or_path=offline:tiny-llama", "train.log_every=1"]
    if stage == "sft":
        return ["train", "sft", ROOT / "configs/sft/tiny.yaml", *common, "train.max_steps=2",
                "train.eval_every=null", "data.max_length=96"]  # fmt: skip
    if stage == "rs":
        return ["train", "rs", ROOT / "configs/rs/tiny.yaml", *common, f"rs.reward_model={rm}", "rs.rounds=1",
                "rs.num_samples=2", "rs.prompts_per_round=8", "rs.max_new_tokens=8", "rs.generation_batch_size=4",
                "rs.probe_prompts=4", "train.epochs=2", "data.max_length=64"]  # fmt: skip
    return ["train", stage, ROOT / f"configs/{stage}/tiny.yaml", *common, f"online.reward_model={rm}",
            "train.max_steps=2", "online.max_completion_length=8", "online.num_generations=4",
            "data.max_length=64"]  # fmt: skip


COMPARED = {  # stage -> metrics that must match the 1-process run
    "sft": ["train_loss", "eval_loss"],
    "rs": ["train_rm_score_start", "train_rm_score_end", "stop_rate_start", "stop_rate_end"],
}


STAGES = ("sft", "rs", "grpo", "rloo")


@pytest.fixture(scope="module")
def two_process_runs(tiny_data, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The four stages at 2 x 4 in one `accelerate launch` (tests/recipes/_launch_stages.py runs them one
    after another in the same two processes, as test_sharded_trl.py does): one process group and one set of
    imports for all four keeps CI time down. Returns the runs' parent folder and the --json reports."""
    tmp = tmp_path_factory.mktemp("ddp")
    out = tmp / "launch"
    todo = tmp / "stages.json"
    cmds = [[*map(str, stage_args(stage, tiny_data)), f"output_dir={out / stage}", "train.batch_size=4", "--json"]
            for stage in STAGES]  # fmt: skip
    todo.write_text(json.dumps(cmds))
    done = launch([*LAUNCH_2, ROOT / "tests" / "recipes" / "_launch_stages.py", todo], env=ENV)
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(STAGES), done.stdout  # one report per stage, from the main process only
    return out, reports


@pytest.mark.parametrize("stage", STAGES)
def test_stage_on_two_processes(stage, two_process_runs, tiny_data, tmp_path, cli):
    out, reports = two_process_runs
    args = stage_args(stage, tiny_data)
    report = reports[STAGES.index(stage)]
    two_dir = out / stage
    assert sorted(p.name for p in out.iterdir()) == sorted(STAGES)  # one run folder per stage
    for name in ("config.yaml", "manifest.json", "metrics.json", "metrics.jsonl", "model/config.json"):
        assert (two_dir / name).is_file(), name
    assert not list(two_dir.rglob("*.tmp")), "a temporary file was left behind"
    rows = read_jsonl(two_dir / "metrics.jsonl")
    # each step's training row once (2 processes each writing would give 1, 1, 2, 2 or a truncated file)
    key = "round" if stage == "rs" else "loss"
    assert [r["step"] for r in rows if key in r] == ([1] if stage == "rs" else [1, 2]), rows
    if stage == "rs":
        assert report["kept_per_round"] == [8]
    else:
        assert report["steps"] == 2

    if (
        stage not in COMPARED
    ):  # grpo / rloo: the model trained (see the module doc for why no 1-process match)
        moved = max_output_difference(two_dir / "model", start_model(tmp_path))
        assert moved > 1e-4
        return
    one_dir = tmp_path / "one"
    res = cli(*args, f"output_dir={one_dir}", "train.batch_size=8")
    assert res.exit_code == 0, res
    one = json.loads((one_dir / "metrics.json").read_text())
    two = json.loads((two_dir / "metrics.json").read_text())
    for key in COMPARED[stage]:
        assert two[key] == pytest.approx(one[key], abs=METRIC_TOL), key
    if stage == "rs":
        assert two["kept_per_round"] == one["kept_per_round"]
    diff = max_output_difference(one_dir / "model", two_dir / "model")
    moved = max_output_difference(one_dir / "model", start_model(tmp_path))
    assert diff <= SFT_TOL < 0.1 * moved, (diff, moved)


def start_model(tmp_path: Path) -> Path:
    """offline:tiny-llama as a folder (the policy every run here starts from)."""
    from rewardlab import models

    out = tmp_path / "start"
    if not (out / "config.json").is_file():
        models.save_model(
            models.build_policy("offline:tiny-llama"), models.load_tokenizer("offline:tiny-llama"), out
        )
    return out


@pytest.mark.parametrize("var,value,engine", [("ACCELERATE_USE_FSDP", "true", "FSDP"),
                                              ("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3", "DeepSpeed ZeRO-3")])  # fmt: skip
def test_rs_refuses_sharded_engines_before_any_work(var, value, engine, cli, monkeypatch, tmp_path):
    """accelerate's launcher sets these for fsdp.yaml / zero3.yaml; RS samples with the whole policy."""
    monkeypatch.setenv(var, value)
    res = cli("train", "rs", ROOT / "configs/rs/tiny.yaml", f"output_dir={tmp_path / 'rs'}")
    assert res.exit_code == 2 and f"train rs: not supported under {engine}" in res.stderr, res
    assert not (tmp_path / "rs").exists()
