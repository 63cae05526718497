"""Fault tolerance: kill -9 and resume, half-written checkpoints, non-finite losses, unwritable disks.

The kill tests run the real console entry (`python -m rewardlab.cli train ...`) as subprocesses, because
only a separate process can be SIGKILLed. The killed run gets a few lines of ``sitecustomize`` that sleep
after each metrics row and inside each checkpoint commit (files written, COMPLETE not yet), so the kill
lands while the run is alive, either between steps or in the middle of a checkpoint write; nothing else
about the run changes. The kill step is drawn with ``random.Random(seed)``; the seed is
``REWARDLAB_FAULT_SEED`` when set (to replay a failure), else new each run, and every assertion message
prints it with the step killed at.

Determinism: on CPU with one thread per process the same config gives bitwise identical runs, so a resumed
run must match the uninterrupted one EXACTLY (metrics, metrics.jsonl rows, saved weights, RM scores).
Only wall-clock numbers (time, throughput) are left out of the comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _policy_setup import DATA, RM_TIMING_KEYS, ROOT, read_jsonl, untrained_rm

PPO_TIMING = {"generate_time_share", "episodes_per_s", "tokens_per_s"}

# Injected into killed / 2-process runs only (a PYTHONPATH folder holding sitecustomize.py).
HOOKS = """
import os, time

_sleep = float(os.environ.get("FAULT_TEST_SLEEP_AFTER_LOG", "0"))
if _sleep:  # widen each step so a kill lands while the run is alive
    from rewardlab import tracking

    _log = tracking.Tracker.log

    def _slow_log(self, *args, **kwargs):
        _log(self, *args, **kwargs)
        time.sleep(_sleep)

    tracking.Tracker.log = _slow_log

_commit_sleep = float(os.environ.get("FAULT_TEST_SLEEP_IN_COMMIT", "0"))
if _commit_sleep:  # hold each checkpoint in its written-but-unmarked state, so kills land there too
    from rewardlab import runs

    _commit = runs.commit_checkpoint

    def _slow_commit(tmp, *args, **kwargs):
        time.sleep(_commit_sleep)  # all files are in step-N.tmp; no COMPLETE, no rename yet
        return _commit(tmp, *args, **kwargs)

    runs.commit_checkpoint = _slow_commit

_nan = os.environ.get("FAULT_TEST_NAN_LOSS")  # "RANK:STEP": that process's loss is nan at that step
if _nan:
    _rank, _at = map(int, _nan.split(":"))
    if int(os.environ.get("RANK", "0")) == _rank:
        from rewardlab.recipes import rm

        _batch_loss, _calls = rm.batch_loss, [0]

        def _nan_batch_loss(*args, **kwargs):
            loss, parts = _batch_loss(*args, **kwargs)
            _calls[0] += 1
            return (loss * float("nan") if _calls[0] == _at else loss), parts

        rm.batch_loss = _nan_batch_loss
"""


def seed() -> int:
    return int(os.environ.get("REWARDLAB_FAULT_SEED") or random.SystemRandom().randrange(1_000_000))


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    hooks = tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(HOOKS)
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "DISABLE_TQDM": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "rewardlab.cli", *map(str, args)], env=env, stdout=fh, stderr=fh, cwd=ROOT
    )


def finish(proc: subprocess.Popen, log: Path) -> str:
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    return log.read_text()


def logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError):  # a row being written
            steps.append(json.loads(line)["step"])
    return steps


def kill_after_step(proc: subprocess.Popen, run: Path, step: int, delay: float, why: str) -> int:
    """SIGKILL ``proc`` ``delay`` seconds after metrics.jsonl shows ``step``; returns the last logged step."""
    deadline = time.monotonic() + 300
    while not any(s >= step for s in logged_steps(run)):
        assert proc.poll() is None, f"{why}: the run ended before the kill"
        assert time.monotonic() < deadline, f"{why}: step {step} never logged"
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, f"{why}: the run ended before the kill"
    return max(logged_steps(run))


def kill_phase(run: Path) -> str:
    tmp = sorted(p.name for p in (run / "checkpoints").glob("*.tmp"))
    return f"inside the write of {tmp[0]}" if tmp else "between checkpoint writes"


def plant_half_written(run: Path, step: int) -> list[str]:
    """What a kill inside a checkpoint write can leave: a ``.tmp`` folder (killed while writing) and a
    final-named folder without COMPLETE (killed while an old one was being deleted). Both are newer than
    every complete checkpoint, so resuming from either would be wrong."""
    root = run / "checkpoints"
    tmp = root / f"step-{step:08d}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "trainable.safetensors").write_bytes(b"half a tensor")
    stale = root / f"step-{step + 1:08d}"
    stale.mkdir(exist_ok=True)
    (stale / "trainer_state.json").write_text('{"step": ')
    return [tmp.name, stale.name]


def without(d: dict, keys: set[str]) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def rows_without_time(run: Path, timing: set[str]) -> list[dict]:
    """metrics.jsonl rows without wall-clock numbers (``time``, ``time/*``, throughput, also as ``eval/*``)."""
    drop = {"time", *timing, *(f"eval/{k}" for k in timing)}
    rows = read_jsonl(run / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k not in drop and not k.startswith("time/")} for r in rows]


def kill_and_resume(tmp_path: Path, args: list[str], steps: int, last_kill: int, sleep_after_log: str):
    """Run ``args`` twice side by side: once straight, once SIGKILLed at a seeded random step (slowed down
    so the kill can land inside a checkpoint write), then resumed over planted half-written checkpoints.
    Returns (straight run, killed run, why, resume step, resume log)."""
    from rewardlab.runs import latest_checkpoint

    s = seed()
    rng = random.Random(s)
    kill_step, delay = rng.randint(2, last_kill), rng.uniform(0.0, 0.55)
    why = f"REWARDLAB_FAULT_SEED={s}: kill after step {kill_step} (+{delay:.3f}s)"
    args = [*args, f"train.max_steps={steps}", "train.save_every=1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    env = env_for(tmp_path)
    a = start([*args, f"output_dir={straight}"], env, tmp_path / "straight.log")
    slow = {"FAULT_TEST_SLEEP_AFTER_LOG": sleep_after_log, "FAULT_TEST_SLEEP_IN_COMMIT": "0.3"}
    b = start([*args, f"output_dir={killed}"], {**env, **slow}, tmp_path / "k.log")
    last_logged = kill_after_step(b, killed, kill_step, delay, why)
    resume_at = int(latest_checkpoint(killed).name.split("-")[1])
    why += f"; killed after step {last_logged} was logged, {kill_phase(killed)}; resume from step {resume_at}"
    print(why)
    assert not (killed / "metrics.json").exists(), why
    planted = plant_half_written(killed, resume_at + 1)
    log = finish(start([*args, f"output_dir={killed}", "train.resume=true"], env, tmp_path / "resume.log"),
                 tmp_path / "resume.log")  # fmt: skip
    finish(a, tmp_path / "straight.log")
    assert not any(p in log for p in planted), why
    return straight, killed, why, resume_at, log


def test_kill_9_during_train_rm_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    args = [
        "train",
        "rm",
        "configs/rm/tiny.yaml",
        f"data.train={DATA}",
        "train.batch_size=4",
        "train.eval_every=3",
    ]
    straight, killed, why, resume_at, log = kill_and_resume(tmp_path, args, 8, 5, "0.25")
    assert f"step-{resume_at:08d} at step {resume_at}" in log, why + log[-2000:]

    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (straight, killed))
    assert mb["resumed_from_step"] == resume_at, why
    assert without(ma, RM_TIMING_KEYS) == without(mb, RM_TIMING_KEYS), (
        why
    )  # exact: CPU, one thread per process
    assert rows_without_time(straight, RM_TIMING_KEYS) == rows_without_time(killed, RM_TIMING_KEYS), why
    assert_same_weights(straight / "model", killed / "model", why)
    from rewardlab.scoring import RewardScorer

    prompts = ["What is 2 + 2?", "Name a colour.", [{"role": "user", "content": "Hi"}]]
    responses = ["2 + 2 = 4.", "I don't know.", "Hello! How can I help?"]
    sa = RewardScorer.from_path(straight).score(prompts, responses)
    sb = RewardScorer.from_path(killed).score(prompts, responses)
    assert (sa == sb).all(), f"{why}: scores {sa.tolist()} vs {sb.tolist()}"


def test_kill_9_during_train_ppo_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    args = ["train", "ppo", "configs/ppo/tiny.yaml", f"data.train={DATA}", "model.name_or_path=offline:tiny-llama",
            f"ppo.reward_model={rm}", "ppo.rollout_batch_size=8", "ppo.mini_batch_size=4", "ppo.ppo_epochs=2",
            "ppo.max_new_tokens=10", "train.seed=5", "ppo.adaptive_kl=true", "ppo.kl_horizon=50"]  # fmt: skip
    straight, killed, why, resume_at, log = kill_and_resume(tmp_path, args, 6, 4, "0.3")
    assert f"resumed from step-{resume_at:08d} (step {resume_at})" in log, why + log[-2000:]

    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (straight, killed))
    assert without(ma, PPO_TIMING) == without(mb, PPO_TIMING), why  # incl. the adaptive KL coefficient
    assert rows_without_time(straight, PPO_TIMING) == rows_without_time(killed, PPO_TIMING), why
    assert_same_weights(straight / "model", killed / "model", why)


def assert_same_weights(a: Path, b: Path, why: str) -> None:
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys(), why
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{why}: {key} differs"


# ---------------------------------------------------------------- non-finite losses and rewards


def error_line(res) -> str:  # noqa: ANN001 - CLIResult
    lines = re.findall(r"error: [^\r\n]*", res.stderr)  # progress bars may share the line
    assert len(lines) == 1, res
    return lines[0]


def test_rm_stops_at_a_nan_loss_from_a_huge_lr_before_the_optimizer_step(cli, tmp_path, monkeypatch):
    """A real trigger: lr=1e30 sends the weights to ~1e30 after step 1, and step 2's loss is nan."""
    import torch

    steps_taken = []
    adamw_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: steps_taken.append(1) or adamw_step(self, *a, **k))  # fmt: skip
    run = tmp_path / "run"
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "train.lr=1e30", "train.max_steps=5", "train.save_every=1", "train.batch_size=4")  # fmt: skip
    assert res.exit_code == 2, res
    last = run / "checkpoints" / "step-00000001"
    assert error_line(res) == f"error: train rm: loss is nan at step 2; stopped; last good checkpoint: {last}"
    assert len(steps_taken) == 1  # step 2's optimizer step was never taken
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    assert not (run / "model").exists() and not (run / "metrics.json").exists()


def test_a_fresh_run_removes_an_earlier_runs_checkpoints(cli, tmp_path):
    """Without this, rotation would keep the old run's higher steps (and delete this run's), and a later
    resume=true would continue the old run."""
    run = tmp_path / "run"
    old = run / "checkpoints" / "step-00000100"
    old.mkdir(parents=True)
    (old / "COMPLETE").write_text("ok\n")
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "train.max_steps=2", "train.save_every=1", "train.batch_size=4")  # fmt: skip
    assert res.exit_code == 0, res
    assert "removed 1 checkpoint folder(s) of an earlier run" in res.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]


def test_ppo_stops_at_a_nan_reward_and_at_a_nan_loss(cli, tmp_path, monkeypatch):
    from rewardlab.scoring import RewardScorer

    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    common = ["train", "ppo", ROOT / "configs/ppo/tiny.yaml", f"data.train={DATA}", "model.name_or_path=offline:tiny-llama",
              f"ppo.reward_model={rm}", "ppo.rollout_batch_size=4", "ppo.mini_batch_size=2", "ppo.ppo_epochs=1",
              "ppo.max_new_tokens=6", "train.max_steps=4", "train.save_every=1"]  # fmt: skip
    # the reward model returns nan for the third rollout (a broken RM): stop before that step's update
    score_tensor, calls = RewardScorer.score_tensor, []

    def nan_on_third(self, *args, **kwargs):
        out = score_tensor(self, *args, **kwargs)
        calls.append(1)
        return out * float("nan") if len(calls) == 3 else out

    monkeypatch.setattr(RewardScorer, "score_tensor", nan_on_third)
    run = tmp_path / "reward"
    res = cli(*common, f"output_dir={run}")
    assert res.exit_code == 2, res
    last = run / "checkpoints" / "step-00000002"
    assert (
        error_line(res) == f"error: train ppo: reward is nan at step 3; stopped; last good checkpoint: {last}"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    assert not (run / "model").exists() and not (run / "metrics.json").exists()
    monkeypatch.undo()

    # a real trigger for the loss: lr=1e30 makes the 2nd minibatch's loss nan inside step 1
    run = tmp_path / "loss"
    res = cli(*common, f"output_dir={run}", "train.lr=1e30")
    assert res.exit_code == 2, res
    assert error_line(res).startswith(
        "error: train ppo: loss is nan at step 1; stopped; last good checkpoint: none"
    )
    assert not (run / "checkpoints").exists() and not (run / "model").exists()


def test_trl_sft_stops_at_a_non_finite_loss_before_the_optimizer_step(cli, tmp_path):
    """The TRL recipes share policy_common.finite_guard_callback; SFT with lr=1e30 is a real trigger."""
    run = tmp_path / "sft"
    res = cli("train", "sft", ROOT / "configs/sft/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "model.name_or_path=offline:tiny-llama", "train.lr=1e30", "train.max_steps=4",
              "train.save_every=1", "train.log_every=1")  # fmt: skip
    assert res.exit_code == 2, res
    found = re.fullmatch(
        r"error: train sft: gradient norm is nan at step (\d+); stopped; last good checkpoint: (.*)",
        error_line(res),
    )
    assert found, res
    step = int(found[1])  # 2 or later: the first steps may run with a warmup lr
    assert step >= 2 and found[2] == str(run / "checkpoints" / f"checkpoint-{step - 1}")
    kept = {int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*")}
    assert max(kept) == step - 1  # nothing saved from the bad step
    assert not (run / "model").exists() and not (run / "metrics.json").exists()


def test_nan_loss_in_one_of_two_processes_stops_both(tmp_path):
    """Real 2-process DDP (gloo): only rank 1's loss is nan at step 3. Both processes must stop with the
    error (the decision uses all-reduced numbers); a process left behind would hang in the next collective,
    which the timeout would catch."""
    run = tmp_path / "ddp"
    env = env_for(tmp_path, ACCELERATE_USE_CPU="true", FAULT_TEST_NAN_LOSS="1:3")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rewardlab.cli"]  # fmt: skip
    args = ["train", "rm", "configs/rm/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
            "train.batch_size=2", "train.max_steps=5", "train.save_every=2"]  # fmt: skip
    done = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode != 0, done.stderr[-3000:]
    last = run / "checkpoints" / "step-00000002"
    expected = f"error: train rm: loss is nan at step 3; stopped; last good checkpoint: {last}"
    assert done.stderr.count(expected) == 2, done.stderr[-3000:]  # one line from each process
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]
    assert not (run / "model").exists()


# ---------------------------------------------------------------- unwritable or full output folder


@pytest.mark.parametrize("stage", ["rm", "ppo", "sft", "dpo"])
def test_output_dir_under_a_regular_file_fails_before_loading_anything(cli, tmp_path, stage):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file\n")
    res = cli("train", stage, ROOT / f"configs/{stage}/tiny.yaml", f"output_dir={blocker / 'run'}",
              f"data.train={DATA}", "model.name_or_path=offline:no-such-model")  # fmt: skip
    assert res.exit_code == 2, res
    assert error_line(res) == f"error: cannot write {blocker / 'run'}: Not a directory"


def test_output_dir_that_is_a_regular_file(cli, tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("a file\n")
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"output_dir={blocker}", f"data.train={DATA}")
    assert res.exit_code == 2, res
    assert error_line(res) == f"error: cannot write {blocker}: Not a directory"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs sysfs")
def test_output_dir_the_kernel_refuses_even_to_root(cli):
    """sysfs takes no new folders, whoever asks (EPERM; EROFS where /sys is mounted read-only)."""
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", "output_dir=/sys/rewardlab-fault-test/run",
              f"data.train={DATA}")  # fmt: skip
    assert res.exit_code == 2, res
    assert error_line(res) in {
        "error: cannot write /sys/rewardlab-fault-test: Operation not permitted",
        "error: cannot write /sys/rewardlab-fault-test: Read-only file system",
        "error: cannot write /sys/rewardlab-fault-test: Permission denied",
    }


def test_disk_full_during_a_checkpoint_is_one_line_and_exit_2(cli, tmp_path, monkeypatch):
    """The checkpoint's weights go to /dev/full: the kernel's real ENOSPC, raised by a write() that names
    no file, so the message names the checkpoint folder being written."""
    import safetensors.torch

    def save_to_full_disk(tensors, filename, metadata=None):  # noqa: ANN001 - safetensors signature
        with open("/dev/full", "wb") as fh:
            fh.write(safetensors.torch.save(tensors, metadata))

    monkeypatch.setattr(safetensors.torch, "save_file", save_to_full_disk)
    run = tmp_path / "run"
    res = cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "train.max_steps=3", "train.save_every=2", "train.batch_size=4")  # fmt: skip
    assert res.exit_code == 2, res
    tmp = run / "checkpoints" / "step-00000002.tmp"
    assert error_line(res) == f"error: cannot write {tmp}: No space left on device"
    from rewardlab.runs import latest_checkpoint

    assert latest_checkpoint(run) is None  # the half-written checkpoint never counts
    assert not (run / "model").exists()
