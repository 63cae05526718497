"""Distributed launch: every shipped accelerate config parses, and RM, DPO and PPO training end the same on
2 CPU processes (gloo, real `accelerate launch`) as on 1 process with the same global batch (1 x 8 vs 2 x 4).

Tolerances, derived from what differs between the layouts: only the order of float32 sums (a batch of 8
vs two of 4 reduced by DDP, padding to a different width) -- ~1e-7 relative per operation, measured
<= 3e-7 on losses and metrics after 3 steps. Adam divides by sqrt(v), so a weight whose gradient is
near zero can move by a different fraction of the learning rate: trained-model outputs drift more than
metrics (measured max abs logit difference: RM 8e-8, PPO 3e-7..1e-6, DPO 2e-6 here and 4e-5 on the whole
bundled campaign; DPO runs at lr 5e-4 and TRL pads each process's batch to its own longest sequence).
Hence: metrics within METRIC_TOL (1e-5), RM and PPO outputs within 1e-5, DPO outputs within 3e-4 -- while
3 training steps move the outputs by 0.1-0.2 and
a different global batch (what 2 x 4 meant before rollouts and batches were made layout independent)
moves held-out accuracy by > 0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _policy_setup import DATA, ROOT, read_jsonl, untrained_rm

ACCELERATE = ROOT / "configs" / "accelerate"
METRIC_TOL = 1e-5
ENV = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "DISABLE_TQDM": "1"}  # fmt: skip
# The docs/design.md command: real 2-process DDP on CPU (`--cpu --num_processes 2` would start one process).
LAUNCH_2 = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def launch(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in cmd], env=env or ENV, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def assert_metrics_match(one: dict, two: dict, keys: list[str], tol: float = METRIC_TOL) -> None:
    for key in keys:
        assert one[key] is not None, key
        assert two[key] == pytest.approx(one[key], abs=tol), key
    print("max |metric difference|:", max(abs(two[k] - one[k]) for k in keys))  # shown with -s


def max_output_difference(a: Path, b: Path, kind: str) -> tuple[float, float]:
    """Max |logit difference| of two saved models on fixed texts, and the logits' max magnitude."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    cls = AutoModelForSequenceClassification if kind == "rm" else AutoModelForCausalLM
    texts = ["What is 2 + 3? The answer is 5.", "How do I reset my router? Unplug it for 30 seconds."]
    outs = []
    for path in (a, b):
        tok = AutoTokenizer.from_pretrained(path)
        model = cls.from_pretrained(path).eval()
        with torch.no_grad():
            outs.append(model(**tok(texts, return_tensors="pt", padding=True)).logits)
    diff = float((outs[0] - outs[1]).abs().max())
    print(f"max |logit difference| {kind}: {diff:.2e}")  # shown with -s
    return diff, float(outs[0].abs().max())


# ---------------------------------------------------------------- configs

EXPECTED = {  # file -> (distributed_type, num_processes, num_machines)
    "cpu-2proc.yaml": ("MULTI_GPU", 2, 1),
    "gpu-1.yaml": ("NO", 1, 1),
    "ddp.yaml": ("MULTI_GPU", 8, 1),
    "fsdp.yaml": ("FSDP", 8, 1),
    "zero2.yaml": ("DEEPSPEED", 8, 1),
    "zero3.yaml": ("DEEPSPEED", 8, 1),
    "zero3-cpu.yaml": ("DEEPSPEED", 2, 1),
    "multinode.yaml": ("MULTI_GPU", 16, 2),
}


def test_every_accelerate_config_is_covered():
    assert sorted(p.name for p in ACCELERATE.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_config_parses_with_accelerates_own_loader(name):
    from accelerate.commands.config.config_args import ClusterConfig

    path = ACCELERATE / name
    cfg = ClusterConfig.from_yaml_file(path)  # refuses unknown keys
    kind, processes, machines = EXPECTED[name]
    assert (str(cfg.distributed_type).split(".")[-1], cfg.num_processes, cfg.num_machines) == (
        kind,
        processes,
        machines,
    )
    first = path.read_text().splitlines()[0]
    assert f"accelerate launch --config_file configs/accelerate/{name}" in first
    assert "-m rewardlab.cli train" in first
    if name == "fsdp.yaml":
        assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name.startswith("zero"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[4])
        # DeepSpeed owns accumulation and clipping: "auto" takes train.grad_accum and train.max_grad_norm
        assert cfg.deepspeed_config["gradient_accumulation_steps"] == "auto"
        assert cfg.deepspeed_config["gradient_clipping"] == "auto"
    if name.startswith("zero3"):  # accelerator.get_state_dict needs it to gather the saved model
        assert cfg.deepspeed_config["zero3_save_16bit_model"] is True
    if name == "multinode.yaml":
        assert cfg.main_process_ip and cfg.main_process_port and cfg.machine_rank == 0


# ---------------------------------------------------------------- reward model


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """The first 96 records of the bundled campaign (a third of it): the same mechanics, less CPU."""
    from rewardlab.data.dataset import iter_records, load_dataset, write_dataset

    out = tmp_path_factory.mktemp("data") / "small"
    write_dataset(list(iter_records(load_dataset(DATA)))[:96], out)
    return out


RM_KEYS = [
    "accuracy",
    "ece",
    "train_loss",
    "reward_mean",
    "reward_std",
    "tie_threshold",
    "accuracy_with_ties",
]


def rm_args(data: Path, out: Path, batch_size: int, *extra: str) -> list[str]:
    return ["train", "rm", str(ROOT / "configs/rm/tiny.yaml"), f"data.train={data}", f"output_dir={out}",
            "train.max_steps=3", f"train.batch_size={batch_size}", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def rm_one_process(tmp_path_factory, small_data):
    """1 process x 8 groups (in-process CLI): the reference run."""
    from conftest import run_cli

    out = tmp_path_factory.mktemp("rm") / "one"
    res = run_cli(*rm_args(small_data, out, 8))
    assert res.exit_code == 0, res
    return out


def test_rm_two_processes_match_one(rm_one_process, small_data, tmp_path, cli):
    """2 x 4 through `rewardlab train rm ... --launcher configs/accelerate/cpu-2proc.yaml` (which sets
    ACCELERATE_USE_CPU itself on a machine without GPU), and 1 x 4 x 2 accumulation steps: the same global
    batches, so the same metrics and model (length-grouped batches, soft labels, ties, 4 heads)."""
    one = json.loads((rm_one_process / "metrics.json").read_text())
    two_dir = tmp_path / "two"
    cmd = [sys.executable, "-m", "rewardlab.cli", *rm_args(small_data, two_dir, 4, "train.save_every=2"),
           "--launcher", ACCELERATE / "cpu-2proc.yaml", "--json"]  # fmt: skip
    done = launch(cmd, env={k: v for k, v in ENV.items() if k != "ACCELERATE_USE_CPU"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 3, done.stdout
    assert "batch 4 groups x 1 accum x 2 proc" in done.stderr
    two = json.loads((two_dir / "metrics.json").read_text())
    assert_metrics_match(one, two, RM_KEYS)
    diff, scale = max_output_difference(rm_one_process / "model", two_dir / "model", "rm")
    assert diff <= 1e-5 < 0.01 * scale
    # each process saved its own RNG state into the shared checkpoint
    ckpt = two_dir / "checkpoints" / "step-00000002"
    assert sorted(p.name for p in ckpt.glob("rng_state_*")) == ["rng_state_0.pt", "rng_state_1.pt"]
    assert [r["step"] for r in read_jsonl(two_dir / "metrics.jsonl") if "loss" in r] == [1, 2, 3]

    accum = tmp_path / "accum"
    assert cli(*rm_args(small_data, accum, 4, "train.grad_accum=2")).exit_code == 0
    assert_metrics_match(one, json.loads((accum / "metrics.json").read_text()), RM_KEYS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rm_on_two_machines_matches_one_process(rm_one_process, small_data, tmp_path):
    """Two `accelerate launch` commands as two "machines" (machine_rank 0 and 1, one process each) through
    the shipped configs/accelerate/multinode.yaml, rendezvous on 127.0.0.1."""
    out = tmp_path / "nodes"
    port = free_port()
    base = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", ACCELERATE / "multinode.yaml",
            "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--mixed_precision", "no"]  # fmt: skip
    args = ["-m", "rewardlab.cli", *rm_args(small_data, out, 4)]
    procs = [
        subprocess.Popen(
            [str(c) for c in [*base, "--machine_rank", str(rank), *args]],
            env=ENV,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-4000:]
    assert "x 2 proc" in results[0][1]
    one = json.loads((rm_one_process / "metrics.json").read_text())
    assert_metrics_match(one, json.loads((out / "metrics.json").read_text()), RM_KEYS)


# ---------------------------------------------------------------- DPO


@pytest.fixture(scope="module")
def dpo_eval_set(tmp_path_factory) -> Path:
    """Held-out records whose untied pairs are a multiple of 8: TRL pads a short last eval batch on one
    process with repeated rows and averages its eval metrics with them, which no layout change can undo."""
    from rewardlab.data.dataset import iter_records, load_dataset, split_by_prompt, write_dataset
    from rewardlab.recipes.dpo import build_pairs

    _, held = split_by_prompt(load_dataset(DATA), 0.1, 0)
    chosen: list[dict] = []
    for rec in iter_records(held):
        if rec.get("gold"):  # the recipes set gold records aside (data.use_gold): they would not count
            continue
        chosen.append(rec)
        n = build_pairs(chosen, "all", "none")[1]["pairs"]
        if n >= 24 and n % 8 == 0:
            break
    assert n % 8 == 0
    out = tmp_path_factory.mktemp("dpo-eval") / "eval"
    write_dataset(chosen, out)
    return out


def dpo_common(small_data: Path, dpo_eval_set: Path) -> list[str]:
    # plain sigmoid DPO, not the config's RPO: TRL's NLL term is a token mean within each process's batch, so two
    # shards of 4 weight tokens differently from one batch of 8 (train_loss 8.3097 vs 8.3127), by design
    return ["train", "dpo", str(ROOT / "configs/dpo/tiny.yaml"), f"data.train={small_data}", f"data.eval={dpo_eval_set}",
            "model.name_or_path=offline:tiny-llama", "train.max_steps=3", "train.log_every=1",
            "dpo.loss_type=[sigmoid]", "dpo.loss_weights=null"]  # fmt: skip


@pytest.fixture(scope="module")
def two_process_policies(small_data, dpo_eval_set, tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """DPO and PPO at 2 x 4 in one `accelerate launch` (tests/recipes/_launch_stages.py runs them one after
    the other in the same two processes: one process group and one set of imports, less CI time).
    Returns the runs' parent folder and each stage's --json report (the main process's only)."""
    out = tmp_path_factory.mktemp("two-policies")
    todo = out / "stages.json"
    todo.write_text(json.dumps([
        [*dpo_common(small_data, dpo_eval_set), f"output_dir={out / 'dpo'}", "train.batch_size=4", "--json"],
        [*ppo_common(), f"output_dir={out / 'ppo'}", "ppo.rollout_batch_size=4", "ppo.mini_batch_size=4", "--json"],
    ]))  # fmt: skip
    done = launch([*LAUNCH_2, ROOT / "tests" / "recipes" / "_launch_stages.py", todo])
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2, done.stdout  # one report per stage: only the main process reports
    return out, dict(zip(("dpo", "ppo"), reports, strict=True))


def test_dpo_two_processes_match_one(small_data, dpo_eval_set, two_process_policies, tmp_path, cli):
    common = dpo_common(small_data, dpo_eval_set)
    one_dir, two_dir = tmp_path / "one", two_process_policies[0] / "dpo"
    res = cli(*common, f"output_dir={one_dir}", "train.batch_size=8")
    assert res.exit_code == 0, res
    one = json.loads((one_dir / "metrics.json").read_text())
    two = json.loads((two_dir / "metrics.json").read_text())
    assert_metrics_match(
        one, two, ["train_loss", "eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"]
    )
    losses = [[r["loss"] for r in read_jsonl(d / "metrics.jsonl") if "loss" in r] for d in (one_dir, two_dir)]
    assert len(losses[1]) == 3 and losses[1] == pytest.approx(losses[0], abs=METRIC_TOL)
    diff, scale = max_output_difference(one_dir / "model", two_dir / "model", "policy")
    assert diff <= 3e-4 < 0.01 * scale
    assert not (two_dir / "cache").exists()  # the shared pairs folder is removed at the end


# ---------------------------------------------------------------- PPO

PPO_KEYS = ["train_rm_score_start", "train_rm_score_end", "train_kl_end", "kl_coef", "response_length_end",
            "eos_rate_end"]  # fmt: skip


def ppo_common() -> list[str]:
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    return ["train", "ppo", str(ROOT / "configs/ppo/tiny.yaml"), f"data.train={DATA}", "model.name_or_path=offline:tiny-llama",
            f"ppo.reward_model={rm}", "ppo.ppo_epochs=2", "ppo.max_new_tokens=10", "ppo.adaptive_kl=true",
            "ppo.kl_horizon=100", "train.log_every=1", "train.max_steps=3"]  # fmt: skip


def test_ppo_two_processes_match_one(two_process_policies, tmp_path, cli):
    """Rollouts are seeded per prompt from its place in the prompt stream and advantages are whitened over
    all processes, so 2 x 4 rollouts sample the same answers and take the same updates as 1 x 8."""
    common = ppo_common()
    one_dir, two_dir = tmp_path / "one", two_process_policies[0] / "ppo"
    res = cli(*common, f"output_dir={one_dir}", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=8")
    assert res.exit_code == 0, res
    assert two_process_policies[1]["ppo"]["steps"] == 3
    rows = read_jsonl(two_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["episodes"] == 3 * 4 * 2  # steps x per-process rollout batch x processes
    one = json.loads((one_dir / "metrics.json").read_text())
    two = json.loads((two_dir / "metrics.json").read_text())
    assert_metrics_match(one, two, PPO_KEYS)
    assert one["kl_coef"] != pytest.approx(0.05, abs=1e-9)  # the adaptive controller moved, identically
    for a, b in zip(read_jsonl(one_dir / "metrics.jsonl"), rows, strict=True):
        for key in ("reward/rm_score_mean", "objective/kl", "response_length"):
            assert b[key] == pytest.approx(a[key], abs=METRIC_TOL), (a["step"], key)
    diff, scale = max_output_difference(one_dir / "model", two_dir / "model", "policy")
    assert diff <= 1e-5 < 0.01 * scale


# ---------------------------------------------------------------- guards and the gathered save path


def test_processes_that_did_not_join_one_group_are_refused(monkeypatch):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from rewardlab.errors import UserError
    from rewardlab.recipes.policy_common import check_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    alone = SimpleNamespace(num_processes=1, distributed_type=DistributedType.NO, is_main_process=True)
    with pytest.raises(
        UserError, match="started 2 processes but they run as 1: on CPU set ACCELERATE_USE_CPU"
    ):
        check_launch(alone)


def test_sharded_models_are_saved_from_the_gathered_state_dict():
    """Under FSDP / ZeRO-3 the main process rebuilds the model and loads the gathered full state dict; the
    other processes still take part in the gather (get_state_dict is called on every process)."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from rewardlab import models
    from rewardlab.recipes.policy_common import full_model

    trained = models.build_policy("offline:tiny-llama")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    calls = []

    def gather(model):
        calls.append(model)
        return trained.state_dict()

    for main in (True, False):
        acc = SimpleNamespace(distributed_type=DistributedType.FSDP, get_state_dict=gather,
                              is_main_process=main, device=torch.device("cpu"))  # fmt: skip
        got = full_model(acc, "wrapped", lambda: models.build_policy("offline:tiny-llama"))
        if main:
            for (name, a), b in zip(trained.state_dict().items(), got.state_dict().values(), strict=True):
                assert torch.equal(a, b), name
        else:
            assert got is None
    assert calls == ["wrapped", "wrapped"]


def test_launcher_refuses_a_missing_or_foreign_config(cli, tmp_path):
    rm_cfg = str(ROOT / "configs/rm/tiny.yaml")
    res = cli("train", "rm", rm_cfg, "--launcher", tmp_path / "nope.yaml")
    assert res.exit_code == 2 and "--launcher" in res.stderr and "no such file" in res.stderr
    res = cli("train", "dpo", str(ROOT / "configs/dpo/tiny.yaml"), "--launcher", rm_cfg)  # not accelerate's
    assert res.exit_code == 2 and "not an accelerate config" in res.stderr


def test_own_loops_refuse_only_what_they_cannot_do_sharded():
    """PPO refuses checkpoints under FSDP1 (and pure bf16 full fine-tuning); every other engine, FSDP2
    included, runs rm and ppo with checkpoints (tests/recipes/test_sharded.py)."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from rewardlab import config as cfglib
    from rewardlab.errors import UserError
    from rewardlab.recipes import ppo, rm

    saving = cfglib.load(ROOT / "configs/ppo/tiny.yaml", ["train.save_every=2"])
    fsdp1 = SimpleNamespace(
        distributed_type=DistributedType.FSDP,
        state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=1)),
    )
    fsdp2 = SimpleNamespace(
        distributed_type=DistributedType.FSDP,
        state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=2)),
    )
    with pytest.raises(UserError, match="train.save_every: not supported under FSDP"):
        ppo.check_distributed(fsdp1, saving)
    ppo.check_distributed(fsdp2, saving)  # one module under FSDP2 (test_sharded.py), checkpoints included
    with pytest.raises(UserError, match="model.dtype: bfloat16 without model.lora"):
        ppo.check_distributed(fsdp2, cfglib.load(ROOT / "configs/ppo/tiny.yaml", ["model.dtype=bfloat16"]))
    ppo.check_distributed(fsdp1, cfglib.load(ROOT / "configs/ppo/tiny.yaml", []))
    rm_saving = cfglib.load(ROOT / "configs/rm/tiny.yaml", ["train.save_every=2", "train.eval_every=2"])
    for kind in (DistributedType.DEEPSPEED, DistributedType.MULTI_GPU):
        ppo.check_distributed(SimpleNamespace(distributed_type=kind), saving)
    for kind in (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.MULTI_GPU):
        rm.check_distributed(SimpleNamespace(distributed_type=kind), rm_saving)
