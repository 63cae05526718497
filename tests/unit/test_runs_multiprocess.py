"""The run folder under several processes: only the main one writes (config, manifest, metrics, tracker),
JSON files go through a temporary name unique to each writer, and checkpoints load onto each process's own
device (``map_location``), not onto the device that saved them."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import torch

from rewardlab import config as cfglib
from rewardlab import runs
from rewardlab.tracking import NullTracker, Tracker, open_tracker


def test_concurrent_atomic_writes_never_collide(tmp_path):
    target = tmp_path / "metrics.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                runs.write_json_atomic(target, {"writer": n, "i": i, "pad": "x" * 2000})
        except BaseException as err:  # noqa: BLE001 - collected for the assert
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []  # a shared ".tmp" name made one writer's rename find the file gone
    assert json.loads(target.read_text())["i"] == 39
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_only_the_main_process_writes_the_run_folder(tmp_path, monkeypatch):
    cfg = cfglib.load(None, [f"output_dir={tmp_path / 'run'}"], stage="sft")
    monkeypatch.setenv("RANK", "1")
    assert runs.prepare_run(cfg) == tmp_path / "run"
    runs.write_metrics(tmp_path / "run", {"loss": 1.0})
    tracker = open_tracker(cfg.tracking, tmp_path / "run", {})
    assert isinstance(tracker, NullTracker)
    tracker.log({"loss": 1.0}, step=1)
    tracker.finish()
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("RANK", "0")
    runs.prepare_run(cfg)
    runs.write_metrics(tmp_path / "run", {"loss": 1.0})
    assert isinstance(open_tracker(cfg.tracking, tmp_path / "run", {}), Tracker)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.yaml", "manifest.json", "metrics.json", "metrics.jsonl"
    ]  # fmt: skip


def test_checkpoints_load_onto_this_process_device(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    acc = SimpleNamespace(process_index=0, num_processes=1, is_main_process=True, device=torch.device("cpu"),
                          wait_for_everyone=lambda: None)  # fmt: skip
    ckpt = runs.save_checkpoint(tmp_path, 1, acc, optimizer=opt, scheduler=sched, write_weights=lambda _: None,
                                state={}, config_fingerprint="f")  # fmt: skip
    seen = []
    load = torch.load

    def recording(path, **kwargs):  # noqa: ANN001 - records where it was asked to load, loads on the CPU
        seen.append((path.name, kwargs.get("map_location")))
        return load(path, **{**kwargs, "map_location": "cpu"})

    monkeypatch.setattr(torch, "load", recording)
    for device, expected in (
        (torch.device("cuda", 1), torch.device("cuda", 1)),
        (torch.device("cpu", 0), "cpu"),
    ):
        seen.clear()
        acc.device = (
            device  # this rank's own device (MULTI_CPU names the CPU cpu:0, which torch.load refuses)
        )
        runs.load_checkpoint(ckpt, acc, optimizer=opt, scheduler=sched, config_fingerprint="f")
        assert seen == [("optimizer.pt", expected), ("scheduler.pt", "cpu"), ("rng_state_0.pt", "cpu")]
