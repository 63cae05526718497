"""Sharded engines on 2 CPU processes: `train rm` under DeepSpeed ZeRO-3 (configs/accelerate/zero3-cpu.yaml,
gloo, DS_ACCELERATOR=cpu) ends as the 1-process run, and a ZeRO-3 run killed with SIGKILL and resumed from
its sharded checkpoint ends exactly as the uninterrupted ZeRO-3 run. One set of runs serves both tests (the
uninterrupted ZeRO-3 run is the one compared with 1 process), started side by side to keep CI time down.

Tolerances as in test_distributed.py (the same float32 sums in another order): metrics within 1e-5, the
saved model's outputs within 1e-5 (measured 2026-12-07: max metric difference 6e-7, grad norms 3e-7).
The resume comparison is exact: the same layout, one thread per process, bitwise the same run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _policy_setup import DATA, RM_TIMING_KEYS, ROOT, read_jsonl
from test_distributed import ENV, RM_KEYS, assert_metrics_match, max_output_difference

ZERO3_CPU = ROOT / "configs" / "accelerate" / "zero3-cpu.yaml"
# no ACCELERATE_USE_CPU: accelerate would drop DeepSpeed; `--launcher` sets DS_ACCELERATOR=cpu itself
DS_ENV = {k: v for k, v in ENV.items() if k != "ACCELERATE_USE_CPU"}


def rm_args(out: Path, *extra: str) -> list[str]:
    """2 groups x 2 accumulation steps per process under ZeRO-3 (8 per step over 2 processes), eval every 2
    steps (shared over the processes), SWA from step 1 (each process averages its shard; checkpointed per
    process), a sharded checkpoint every step."""
    return ["train", "rm", str(ROOT / "configs/rm/tiny.yaml"), f"data.train={DATA}", f"output_dir={out}",
            "train.max_steps=4", "train.eval_every=2", "averaging.kind=swa", "averaging.start=0.3", *extra]  # fmt: skip


ZERO3_ARGS = ("train.batch_size=2", "train.grad_accum=2", "train.save_every=1")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zero3(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """zero3-cpu.yaml with a port of its own: two launches started side by side would otherwise both take
    accelerate's default 29500 (each checks it is free before either binds it)."""
    config = log.with_suffix(".yaml")
    config.write_text(ZERO3_CPU.read_text() + f"main_process_port: {free_port()}\n")
    cmd = [sys.executable, "-m", "rewardlab.cli", *args, "--launcher", str(config)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a command and every process under it (the CLI, accelerate's launcher, torchrun, both ranks:
    torchrun starts the ranks in sessions of their own, so killing one process group would leave them)."""
    import psutil

    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=60)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def zero3_runs(tmp_path_factory) -> dict:
    """An uninterrupted ZeRO-3 run and, beside it, one SIGKILLed (launcher and both ranks) after a seeded
    random step and resumed from its newest complete sharded checkpoint (as test_fault_tolerance under DDP)."""
    from test_fault_tolerance import env_for, kill_phase, logged_steps

    from rewardlab.runs import latest_checkpoint

    tmp = tmp_path_factory.mktemp("zero3")
    s = int(os.environ.get("REWARDLAB_FAULT_SEED") or random.SystemRandom().randrange(1_000_000))
    kill_step = random.Random(s).randint(2, 3)
    why = f"REWARDLAB_FAULT_SEED={s}: kill after step {kill_step}"
    env = {**env_for(tmp), **{k: v for k, v in DS_ENV.items() if k != "PYTHONPATH"}}
    env.pop("ACCELERATE_USE_CPU", None)
    straight, killed = tmp / "straight", tmp / "killed"
    a = zero3(rm_args(straight, *ZERO3_ARGS), env, tmp / "straight.log")
    b = zero3(rm_args(killed, *ZERO3_ARGS), {**env, "FAULT_TEST_SLEEP_AFTER_LOG": "0.5"}, tmp / "killed.log")
    deadline = time.monotonic() + 400
    while not any(x >= kill_step for x in logged_steps(killed)):
        assert b.poll() is None and time.monotonic() < deadline, (
            why + (tmp / "killed.log").read_text()[-3000:]
        )
        time.sleep(0.05)
    kill_tree(b)
    resume_at = int(latest_checkpoint(killed).name.split("-")[1])
    why += f"; {kill_phase(killed)}; resume from step {resume_at}"
    assert not (killed / "metrics.json").exists(), why
    c = zero3(rm_args(killed, *ZERO3_ARGS, "train.resume=true"), env, tmp / "resume.log")
    assert c.wait(timeout=600) == 0, why + (tmp / "resume.log").read_text()[-3000:]
    assert a.wait(timeout=600) == 0, (tmp / "straight.log").read_text()[-3000:]
    return {"straight": straight, "killed": killed, "why": why, "resume_at": resume_at,
            "straight_log": (tmp / "straight.log").read_text(), "resume_log": (tmp / "resume.log").read_text()}  # fmt: skip


@pytest.fixture(scope="module")
def rm_one_process(tmp_path_factory) -> Path:
    """The reference: 1 process x 8 groups (in-process CLI), the same 4 steps."""
    from conftest import run_cli

    one = tmp_path_factory.mktemp("rm") / "one"
    assert run_cli(*rm_args(one, "train.batch_size=8")).exit_code == 0
    return one


def assert_rm_runs_match(one: Path, two: Path, engine: str) -> None:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert (ma["engine"], mb["engine"]) == ("single", engine)
    assert mb["tie_param_learned"] and mb["tie_param_by_head"]["overall"] != pytest.approx(1.0, abs=1e-3)
    assert_metrics_match(ma, mb, RM_KEYS)
    for head, value in ma["tie_param_by_head"].items():  # trained inside the engine, identically
        assert mb["tie_param_by_head"][head] == pytest.approx(value, abs=1e-5), head
    rows = [
        [r for r in read_jsonl(d / "metrics.jsonl") if "loss" in r or "eval/accuracy" in r]
        for d in (one, two)
    ]
    assert len(rows[1]) == 6  # 4 steps + 2 evaluations (step 2 and the final one)
    for a, b in zip(*rows, strict=True):
        for key in ("loss", "grad_norm", "eval/accuracy", "eval/ece"):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-5), (a["step"], key)
    diff, scale = max_output_difference(one / "model", two / "model", "rm")
    assert diff <= 1e-5 < 0.01 * scale
    ckpt = two / "checkpoints" / "step-00000004"
    assert (ckpt / "engine").is_dir() and not (ckpt / "optimizer.pt").exists()  # the engine's own shards
    assert json.loads((ckpt / "trainer_state.json").read_text())["engine"] == engine


def test_rm_under_zero3_on_two_processes_matches_one_process(zero3_runs, rm_one_process):
    """1 x 8 groups in-process vs ZeRO-3 with 2 processes x 2 groups x 2 accumulation steps (DeepSpeed's
    gradient_accumulation_steps and clipping taken from the run's config: "auto" in the yaml), with the
    learned tie parameters inside the prepared module, mid-run eval shared over the processes and sharded
    checkpoints."""
    assert "batch 2 groups x 2 accum x 2 proc" in zero3_runs["straight_log"]
    assert_rm_runs_match(rm_one_process, zero3_runs["straight"], "zero3")


# accelerate 1.16 turns FSDP on only for GPU-like devices (AcceleratorState leaves a CPU run MULTI_CPU);
# torch's fully_shard itself trains on CPU over gloo. This hook lifts accelerate's device gate alone, in the
# launched processes of the test below, so accelerate's own FSDP2 preparation and save/load_state run.
FSDP_ON_CPU = """
from accelerate import state as _state
from accelerate.utils import DistributedType

_init = _state.AcceleratorState.__init__


def _init_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        _state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


_state.AcceleratorState.__init__ = _init_fsdp_on_cpu
"""


def fsdp2_cpu(tmp: Path) -> tuple[Path, dict]:
    """configs/accelerate/fsdp.yaml with 2 processes and no bf16, and the environment that lifts
    accelerate's device gate (FSDP_ON_CPU) in the launched processes: (config file, env)."""
    hooks = tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(FSDP_ON_CPU)
    config = tmp / "fsdp-cpu.yaml"
    text = (ROOT / "configs" / "accelerate" / "fsdp.yaml").read_text()
    config.write_text(
        text.replace("num_processes: 8", "num_processes: 2").replace(
            "mixed_precision: bf16", "mixed_precision: 'no'"
        )
    )
    return config, {**ENV, "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])}


def fsdp2(args: list, tmp: Path, module: bool = True) -> None:
    """Run one rewardlab command (``module``: ``args`` are the CLI's; else a script and its arguments) under
    FSDP2 on 2 CPU processes."""
    config, env = fsdp2_cpu(tmp)
    target = ["-m", "rewardlab.cli"] if module else []
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *target, *args]
    done = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def fsdp2_runs(tmp_path_factory) -> Path:
    """rm and ppo under FSDP2 on 2 CPU processes in one launch (tests/recipes/_launch_stages.py runs them one
    after the other in the same processes: one process group and one set of imports, less CI time)."""
    tmp = tmp_path_factory.mktemp("fsdp2")
    todo = tmp / "stages.json"
    todo.write_text(json.dumps([[str(a) for a in rm_args(tmp / "rm", *ZERO3_ARGS)],
                                [*ppo_common(), f"output_dir={tmp / 'ppo'}", *PPO_SHARDED]]))  # fmt: skip
    fsdp2([ROOT / "tests" / "recipes" / "_launch_stages.py", todo], tmp, module=False)
    return tmp


def test_rm_under_fsdp2_on_two_processes_matches_one_process(rm_one_process, fsdp2_runs):
    """configs/accelerate/fsdp.yaml (FSDP2 full shard, transformer-layer wrapping, FULL_STATE_DICT) with 2
    CPU processes over gloo and accelerate's device gate lifted (FSDP_ON_CPU): the same run as 1 process,
    with the tie parameters sharded in the root module and sharded checkpoints."""
    two = fsdp2_runs / "rm"
    assert_rm_runs_match(rm_one_process, two, "fsdp2")
    assert (two / "checkpoints" / "step-00000004" / "engine" / "pytorch_model_fsdp.bin").is_file()


def test_kill_9_under_zero3_then_resume_ends_as_the_uninterrupted_run(zero3_runs):
    from test_fault_tolerance import rows_without_time, without

    straight, killed, why = zero3_runs["straight"], zero3_runs["killed"], zero3_runs["why"]
    assert f"at step {zero3_runs['resume_at']}" in zero3_runs["resume_log"], why
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (straight, killed))
    assert mb["resumed_from_step"] == zero3_runs["resume_at"], why
    keys = RM_TIMING_KEYS | {"resumed_from_step"}
    assert without(ma, keys) == without(mb, keys), why  # exact: CPU, one thread per process
    assert rows_without_time(straight, RM_TIMING_KEYS) == rows_without_time(killed, RM_TIMING_KEYS), why
    from safetensors.torch import load_file

    wa, wb = (load_file(str(r / "model" / "model.safetensors")) for r in (straight, killed))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] == wb[key]).all(), f"{why}: {key} differs"


def ppo_common() -> list[str]:
    from _policy_setup import untrained_rm

    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    return ["train", "ppo", str(ROOT / "configs/ppo/tiny.yaml"), f"data.train={DATA}", "model.name_or_path=offline:tiny-llama",
            f"ppo.reward_model={rm}", "ppo.ppo_epochs=1", "ppo.max_new_tokens=8", "train.log_every=1",
            "train.max_steps=2"]  # fmt: skip


# 2 x 4 rollouts, 2 micro-batches of 2 per process (the engine's accumulation), a checkpoint every step
PPO_SHARDED = (
    "ppo.rollout_batch_size=4",
    "ppo.mini_batch_size=4",
    "train.grad_accum=2",
    "train.save_every=1",
)


@pytest.fixture(scope="module")
def ppo_one_process(tmp_path_factory) -> Path:
    """PPO on one process, 1 x 8 rollouts: what the sharded 2-process runs must end as."""
    from conftest import run_cli

    one = tmp_path_factory.mktemp("ppo") / "one"
    res = run_cli(*ppo_common(), f"output_dir={one}", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=8")
    assert res.exit_code == 0, res
    return one


def assert_ppo_runs_match(one: Path, two: Path) -> None:
    from test_distributed import PPO_KEYS

    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert_metrics_match(ma, mb, PPO_KEYS)
    diff, scale = max_output_difference(one / "model", two / "model", "policy")
    assert diff <= 1e-5 < 0.01 * scale


def test_ppo_under_zero3_on_two_processes_matches_one_process(ppo_one_process, tmp_path):
    """Policy and value as one DeepSpeed engine (engines.Bundle): 2 x 4 rollouts under ZeRO-3 (generation
    with synced processes, DeepSpeed's accumulation: 2 micro-batches of 2) end as 1 x 8 on one process."""
    two = tmp_path / "two"
    proc = zero3([*ppo_common(), f"output_dir={two}", *PPO_SHARDED], DS_ENV, tmp_path / "ppo.log")
    assert proc.wait(timeout=600) == 0, (tmp_path / "ppo.log").read_text()[-4000:]
    assert_ppo_runs_match(ppo_one_process, two)


def test_ppo_under_fsdp2_on_two_processes_matches_one_process(ppo_one_process, fsdp2_runs):
    """Policy and value as one FSDP2 module (engines.Bundle; generation and rollout scoring with the root's
    own weights gathered, engines.parts_callable): 2 x 4 rollouts end as 1 x 8 on one process (measured
    2026-12-07: metrics 1.5e-7, logits 2.4e-7), with FSDP2's sharded checkpoint every step. Resuming from
    step 1 gave bitwise the same weights and metrics (by hand, docs/scaling.md)."""
    two = fsdp2_runs / "ppo"
    assert_ppo_runs_match(ppo_one_process, two)
    engine = two / "checkpoints" / "step-00000002" / "engine"
    assert (engine / "pytorch_model_fsdp.bin").is_file() and (engine / "optimizer.bin").is_file()
    state = json.loads((two / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert state["engine"] == "fsdp2"
