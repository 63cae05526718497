"""The one checkpoint protocol of rm and ppo (runs.save_checkpoint / runs.load_checkpoint), tested once:
layout, exact RNG round trip (torch, Python, NumPy), the process-count rule, rotation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rewardlab import runs
from rewardlab.errors import UserError


def accelerator(world: int = 1, rank: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        num_processes=world, process_index=rank, is_main_process=rank == 0, wait_for_everyone=lambda: None
    )


def trainer() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def draws() -> tuple[float, float, float]:
    return torch.rand(1).item(), random.random(), float(np.random.rand())


def save(run_dir: Path, step: int, acc: SimpleNamespace, keep: int = 2) -> Path:
    model, opt, sched = trainer()
    return runs.save_checkpoint(
        run_dir,
        step,
        acc,
        optimizer=opt,
        scheduler=sched,
        write_weights=lambda folder: torch.save(model.state_dict(), folder / "weights.pt"),
        state={"totals": {"pairs": 7}},
        config_fingerprint="abc",
        keep=keep,
    )


def test_layout_state_and_exact_rng_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    ckpt = save(tmp_path, 3, accelerator())
    after_save = draws()
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == [
        "COMPLETE",
        "optimizer.pt",
        "rng_state_0.pt",
        "scheduler.pt",
        "trainer_state.json",
        "weights.pt",
    ]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state == {"step": 3, "world_size": 1, "config_fingerprint": "abc", "totals": {"pairs": 7}}
    draws()  # move every generator on
    _, opt, sched = trainer()
    got = runs.load_checkpoint(ckpt, accelerator(), optimizer=opt, scheduler=sched, config_fingerprint="abc")
    assert got["step"] == 3 and got["totals"] == {"pairs": 7}
    assert draws() == after_save  # torch, Python and NumPy continue exactly where the checkpoint was taken
    assert sched.last_epoch == 1 and opt.state_dict()["state"][0]["step"].item() == 1


@pytest.mark.parametrize("world", [1, 4])
def test_a_changed_process_count_is_refused_either_way(tmp_path: Path, world: int) -> None:
    """Fewer processes than wrote it, or more: both refused (ppo used to accept fewer silently)."""
    ckpt = save(tmp_path, 1, accelerator(world=2))
    _, opt, sched = trainer()
    with pytest.raises(UserError, match=f"written by 2 process\\(es\\), resumed with {world}"):
        runs.load_checkpoint(
            ckpt, accelerator(world=world), optimizer=opt, scheduler=sched, config_fingerprint="abc"
        )


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        save(tmp_path, step, accelerator(), keep=2)
    assert [p.name for p in runs.complete_checkpoints(tmp_path / "checkpoints")] == [
        "step-00000003",
        "step-00000004",
    ]
    assert runs.latest_checkpoint(tmp_path).name == "step-00000004"


def test_an_older_layout_is_refused_with_a_reason(tmp_path: Path) -> None:
    old = tmp_path / "step-00000001"
    old.mkdir()
    (old / "state.json").write_text('{"step": 1}')
    _, opt, sched = trainer()
    with pytest.raises(UserError, match="no trainer_state.json"):
        runs.load_checkpoint(old, accelerator(), optimizer=opt, scheduler=sched, config_fingerprint="abc")
