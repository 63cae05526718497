"""runs.py fault-tolerance pieces: complete checkpoints only, disk errors as one line, non-finite stops."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import typer

from rewardlab import runs
from rewardlab.commands.apps import handle_errors
from rewardlab.errors import UserError
from rewardlab.recipes import policy_common as pc


def ckpt(root: Path, name: str, complete: bool) -> Path:
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    (folder / "state.json").write_text("{}")
    if complete:
        (folder / "COMPLETE").write_text("ok\n")
    return folder


def test_half_written_checkpoints_are_never_picked(tmp_path):
    ckpt(tmp_path, "step-00000003", True)
    ckpt(tmp_path, "step-00000004.tmp", True)  # killed before the rename (COMPLETE written, not renamed)
    ckpt(tmp_path, "step-00000005", False)  # killed while an old folder of that name was being deleted
    ckpt(tmp_path, "step-00000006.old", True)  # killed between the two renames of a replacement
    assert runs.latest_checkpoint(tmp_path).name == "step-00000003"
    assert [p.name for p in runs.complete_checkpoints(tmp_path / "checkpoints")] == ["step-00000003"]


def test_commit_replaces_a_stale_folder_and_keeps_the_newest_two(tmp_path):
    ckpt(tmp_path, "step-00000002", False)  # stale, from a killed run
    for step in (1, 2, 3):
        tmp = runs.begin_checkpoint(tmp_path, step)
        (tmp / "state.json").write_text(json.dumps({"step": step}))
        runs.commit_checkpoint(tmp, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000003"]  # no .tmp, no .old left behind
    assert json.loads((tmp_path / "checkpoints" / "step-00000002" / "state.json").read_text()) == {"step": 2}


def test_trim_metrics_log_drops_rows_after_the_checkpoint_and_a_torn_row(tmp_path):
    rows = [{"step": s, "loss": s / 10} for s in (1, 2, 3, 4)] + [{"note": "no step"}]
    torn = '{"step": 5, "loss": 0.'  # the kill landed inside a write
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + torn)
    runs.trim_metrics_log(tmp_path, 2)
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("step") for r in kept] == [1, 2, None]


def test_trl_resume_takes_the_newest_complete_checkpoint(tmp_path):
    ckpt(tmp_path, "checkpoint-9", True)
    ckpt(tmp_path, "checkpoint-10", True)  # numeric order, not text order
    ckpt(tmp_path, "checkpoint-12", False)  # HF was still writing it when the run was killed
    assert pc.latest_trainer_checkpoint(tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-10")
    rows = "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 13))
    (tmp_path / "metrics.jsonl").write_text(rows)  # steps 11 and 12 were logged before the kill
    cfg = SimpleNamespace(train=SimpleNamespace(resume=True))
    assert pc.resume_from(cfg, tmp_path) == str(tmp_path / "checkpoints" / "checkpoint-10")
    logged = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 11))
    assert pc.resume_from(SimpleNamespace(train=SimpleNamespace(resume=False)), tmp_path) is None
    with pytest.raises(UserError, match="holds no complete checkpoint"):
        pc.resume_from(cfg, tmp_path / "fresh")


def test_check_writable_makes_the_folder_and_leaves_no_probe(tmp_path):
    out = runs.check_writable(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(runs.WriteError, match=f"^cannot write {blocker}/run: Not a directory$"):
        runs.check_writable(blocker / "run")
    with pytest.raises(runs.WriteError, match=f"^cannot write {blocker}: Not a directory$"):
        runs.check_writable(blocker)


def test_writing_names_the_path_when_the_os_names_none(tmp_path):
    full = pytest.raises(runs.WriteError, match=f"^cannot write {tmp_path}/ckpt: No space left on device$")
    with full, runs.writing(tmp_path / "ckpt"), open("/dev/full", "wb") as fh:  # the kernel's real ENOSPC
        fh.write(b"x" * 100)
    read_only = pytest.raises(runs.WriteError, match="^cannot write /x/y: Read-only file system$")
    with read_only, runs.writing(tmp_path):
        raise OSError(errno.EROFS, "Read-only file system", "/x/y")
    with pytest.raises(FileNotFoundError), runs.writing(tmp_path):  # not a disk problem: left alone
        (tmp_path / "missing" / "f").open()


def test_stop_on_nonfinite_names_step_and_checkpoint():
    runs.stop_on_nonfinite("rm", "loss", 1.5, 3, None)  # finite: nothing happens
    with pytest.raises(runs.NonFiniteError) as err:
        runs.stop_on_nonfinite("rm", "loss", math.nan, 7, Path("runs/x/checkpoints/step-00000006"))
    assert str(err.value) == (
        "train rm: loss is nan at step 7; stopped; last good checkpoint: runs/x/checkpoints/step-00000006"
    )
    with pytest.raises(
        runs.NonFiniteError, match="reward is inf at step 1; stopped; last good checkpoint: none"
    ):
        runs.stop_on_nonfinite("ppo", "reward", math.inf, 1, None)


def test_first_nonfinite_weight():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    assert runs.first_nonfinite_weight(model.named_parameters()) is None
    with torch.no_grad():
        model[1].bias.fill_(math.inf)
    assert runs.first_nonfinite_weight(model.named_parameters()) == "1.bias"


def test_finite_guard_stops_before_the_optimizer_step(tmp_path):
    ckpt(tmp_path, "checkpoint-4", True)
    guard = pc.finite_guard_callback("dpo", tmp_path)
    model = torch.nn.Linear(3, 1)
    model(torch.ones(1, 3)).sum().backward()
    args, state = SimpleNamespace(fp16=False), SimpleNamespace(global_step=4)
    guard.on_pre_optimizer_step(args, state, None, model=model)  # finite gradients: go on
    model.weight.grad[0, 0] = math.nan
    with pytest.raises(runs.NonFiniteError) as err:
        guard.on_pre_optimizer_step(args, state, None, model=model)
    last = tmp_path / "checkpoints" / "checkpoint-4"
    assert (
        str(err.value) == f"train dpo: gradient norm is nan at step 5; stopped; last good checkpoint: {last}"
    )
    guard.on_pre_optimizer_step(SimpleNamespace(fp16=True), state, None, model=model)  # the scaler's job
    with pytest.raises(runs.NonFiniteError, match="loss is inf at step 4"):
        guard.on_log(args, state, None, logs={"loss": math.inf, "learning_rate": 1e-5})


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device"),
            2,
            "error: cannot write {run}: No space left on device",
        ),
        (
            OSError(errno.EDQUOT, "Disk quota exceeded", "/q/f"),
            2,
            "error: cannot write /q/f: Disk quota exceeded",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/p"),
            2,
            "error: cannot access /p: Permission denied",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file", "/n"),
            1,
            "error: internal error: FileNotFoundError",
        ),
    ],
)
def test_handle_errors_maps_disk_errors_to_exit_2(tmp_path, capsys, exc, code, message):
    run = runs.check_writable(tmp_path / "run")  # the folder named when the OS names no file

    @handle_errors
    def command() -> None:
        raise exc

    with pytest.raises(typer.Exit) as done:
        command()
    assert done.value.exit_code == code
    assert capsys.readouterr().err.startswith(message.format(run=run))
