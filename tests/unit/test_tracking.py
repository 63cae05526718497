"""Tracking writes metrics.jsonl always, and a wandb offline run without network or key."""

from __future__ import annotations

import json

from rewardlab.config import TrackingConfig
from rewardlab.runs import begin_checkpoint, commit_checkpoint, latest_checkpoint, prepare_run
from rewardlab.tracking import open_tracker


def test_jsonl_writes_metrics(tmp_path):
    tr = open_tracker(TrackingConfig(backend="jsonl"), tmp_path, {"a": 1})
    tr.log({"loss": 1.5}, step=1)
    tr.log({"loss": float("nan")}, step=2)
    tr.finish()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 1 and rows[0]["loss"] == 1.5
    assert rows[1]["loss"] is None  # NaN is not valid JSON


def test_none_backend_still_writes_jsonl(tmp_path):
    tr = open_tracker(TrackingConfig(backend="none"), tmp_path)
    tr.log({"x": 2}, step=0)
    tr.finish()
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["x"] == 2


def test_wandb_offline_run_without_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = TrackingConfig(backend="wandb", group="pipe-1", tags=["t1"])
    tr = open_tracker(cfg, tmp_path / "run", {"train": {"lr": 0.1}})
    tr.log({"loss": 0.5}, step=1)
    tr.log_table("samples", [{"prompt": "p", "response": "r"}])
    tr.finish()
    offline_runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert offline_runs, "wandb wrote no offline run"
    assert any(p.suffix == ".wandb" for p in offline_runs[0].iterdir())
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert (tmp_path / "run" / "samples.jsonl").exists()


def test_run_folder_manifest_and_atomic_checkpoints(tmp_path):
    from rewardlab.config import RMConfig

    cfg = RMConfig(output_dir=str(tmp_path / "r"))
    run = prepare_run(cfg, {"dataset_fingerprint": "abc"})
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config_fingerprint"] and manifest["packages"]["torch"]
    assert manifest["dataset_fingerprint"] == "abc"
    assert (run / "config.yaml").read_text().startswith("stage: rm")
    tmp = begin_checkpoint(run, 5)
    (tmp / "state.pt").write_text("x")
    assert latest_checkpoint(run) is None  # an unfinished checkpoint never counts
    commit_checkpoint(tmp)
    assert latest_checkpoint(run).name == "step-00000005"
    begin_checkpoint(run, 9)  # killed mid-write
    assert latest_checkpoint(run).name == "step-00000005"
