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


def wandb_history(run_dir):
    """History rows of an offline .wandb file (LevelDB-log records of wandb_internal_pb2.Record protos).

    wandb's writer (a separate process) may still be flushing when ``finish`` returns: read until the run's
    exit record is there.
    """
    import struct
    import time

    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("wandb/offline-run-*/*.wandb")
    for _ in range(120):
        data = path.read_bytes()
        pos, block, payload, rows, kinds = 7, 32768, b"", [], set()  # 7-byte header, 32 KiB blocks
        while pos + 7 <= len(data):
            if block - pos % block < 7:  # a block tail too short for a record header is padding
                pos += block - pos % block
                continue
            _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if pos + 7 + length > len(data):
                break
            payload += data[pos + 7 : pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # FULL or LAST: one whole record
                rec = pb.Record()
                rec.ParseFromString(payload)
                payload = b""
                kinds.add(rec.WhichOneof("record_type"))
                if rec.WhichOneof("record_type") == "history":
                    items = rec.history.item
                    rows.append(
                        {it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in items}
                    )
        if "exit" in kinds:
            return rows
        time.sleep(0.25)
    raise AssertionError(f"{path}: no exit record (kinds: {sorted(kinds)})")


def test_wandb_keeps_step_0_after_a_table_and_sets_job_type(tmp_path, monkeypatch):
    """`sample` logs its table first and its scalars at step 0: wandb dropped them ("step 0 < 1")."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    tr = open_tracker(TrackingConfig(backend="wandb"), tmp_path / "run", {"stage": "sample"})
    assert tr.wandb_run.job_type == "sample"
    tr.log_table("samples", [{"prompt": "p", "response": "r"}])
    tr.log({"selected": 7, "mean_uncertainty": 0.25}, step=0)
    tr.finish()
    rows = wandb_history(tmp_path / "run")
    logged = [r for r in rows if "selected" in r]
    assert logged and logged[0]["selected"] == 7 and logged[0]["step"] == 0


def test_trackio_logs_offline_and_reads_back(tmp_path, monkeypatch):
    import trackio.sqlite_storage as store

    monkeypatch.setattr(store, "TRACKIO_DIR", tmp_path / "trackio")
    (tmp_path / "trackio").mkdir()
    cfg = TrackingConfig(backend="trackio", project="rl-test", group="pipeline-a")
    tr = open_tracker(cfg, tmp_path / "run", {"stage": "rm", "train": {"lr": 0.1}})
    tr.log({"loss": 0.7, "lr": 0.1}, step=1)
    tr.log({"loss": 0.5, "eval/accuracy": 0.8, "note": "text is skipped"}, step=2)
    tr.finish()
    from trackio import context_vars

    assert context_vars.current_run.get() is None  # else trackio's atexit prints on stdout after --json
    logs = store.SQLiteStorage.get_logs("rl-test", "run")
    assert [(r["step"], r["loss"]) for r in logs] == [(1, 0.7), (2, 0.5)]
    assert logs[1]["eval/accuracy"] == 0.8
    config = store.SQLiteStorage.get_run_config("rl-test", "run")
    assert config["_Group"] == "pipeline-a" and config["job_type"] == "rm" and config["train"] == {"lr": 0.1}


def test_tensorboard_scalars_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr = open_tracker(TrackingConfig(backend="tensorboard"), tmp_path / "run", {"stage": "dpo"})
    tr.log({"loss": 0.9}, step=1)
    tr.log({"loss": 0.4, "eval/loss": 0.6}, step=3)
    tr.log_table("samples", [{"prompt": "p", "response": "r"}])
    tr.finish()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("loss")] == [(1, 0.9), (3, 0.4)]
    assert [e.step for e in acc.Scalars("eval/loss")] == [3]
    assert (tmp_path / "run" / "metrics.jsonl").exists()
