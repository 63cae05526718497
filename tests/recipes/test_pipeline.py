"""`rewardlab pipeline` end to end on tiny models: run, rerun (all skipped), change one stage (it and the
stages that read it rerun), resume an interrupted train stage; rejection sampling (rs) evaluated beside DPO
and PPO; wandb offline runs share the pipeline group."""

from __future__ import annotations

import glob
import json
import shutil
import struct
from pathlib import Path

import pytest
import yaml

from rewardlab.recipes.pipeline import headline

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["simulate", "raters", "rm", "sft", "dpo", "ppo", "rs", "eval", "sample", "rate", "report"]


def write_pipeline(tmp: Path, **extra) -> Path:
    cfg = {
        "stage": "pipeline",
        "name": "tiny",
        "output_dir": str(tmp / "runs"),
        "stages": STAGES,
        "simulate": {"base": str(ROOT / "configs/simulate/default.yaml"), "prompts": 24, "raters": 6},
        "raters": {"method": "noisy-bt"},
        "rm": {"base": str(ROOT / "configs/rm/tiny.yaml"), "train": {"max_steps": 3, "save_every": 1}},
        "sft": {"base": str(ROOT / "configs/sft/tiny.yaml"), "train": {"max_steps": 2, "epochs": 1}},
        "dpo": {
            "base": str(ROOT / "configs/dpo/tiny.yaml"),
            "train": {"max_steps": 1, "epochs": 1, "batch_size": 4},
        },
        "ppo": {
            "base": str(ROOT / "configs/ppo/tiny.yaml"),
            "train": {"max_steps": 1},
            "ppo": {"rollout_batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 1, "max_new_tokens": 6},
        },
        "rs": {
            "base": str(ROOT / "configs/rs/tiny.yaml"),
            "train": {"max_steps": 1, "epochs": 1, "batch_size": 4},
            # the tiny random policy rarely stops within 6 tokens: keep cut answers so a round has data
            "rs": {
                "rounds": 1,
                "num_samples": 2,
                "prompts_per_round": 4,
                "max_new_tokens": 6,
                "require_stop": False,
                "probe_prompts": 0,  # no start/end probe: the metrics say so with nulls
            },
        },
        "eval": {"prompts": 4, "max_new_tokens": 6},
        "sample": {
            "base": str(ROOT / "configs/sample/tiny.yaml"),
            "num_prompts": 5,
            "k": 3,
            "budget": 4,
            "max_new_tokens": 6,
            "policy": "@dpo",
        },
        "tracking": {"backend": "jsonl", "tags": ["ci"]},
        **extra,
    }
    path = tmp / "pipeline.yaml"
    path.write_text(
        "# rewardlab pipeline pipeline.yaml   (override: rm.train.max_steps=2)\n" + yaml.safe_dump(cfg)
    )
    return path


def statuses(result) -> dict[str, str]:
    assert result.exit_code == 0, result
    return {row["stage"]: row["status"] for row in result.json()["stages"]}


def test_pipeline_runs_skips_reruns_downstream_and_resumes(cli, tmp_path):
    config = write_pipeline(tmp_path)
    root = tmp_path / "runs" / "tiny"

    first = cli("pipeline", config, "--json")
    assert statuses(first) == {s: "run" for s in STAGES}
    for stage in STAGES:
        marker = json.loads((root / stage / "STAGE_COMPLETE").read_text())
        assert marker["stage"] == stage and marker["output_fingerprint"]
    # wiring: each stage read the previous stages' outputs
    rm_cfg = yaml.safe_load((root / "rm" / "config.yaml").read_text())
    assert rm_cfg["data"]["train"] == str(root / "raters" / "data")
    assert rm_cfg["tracking"]["group"] == "tiny" and {"ci", "rm"} <= set(rm_cfg["tracking"]["tags"])
    for stage in ("ppo", "rs"):  # both start from the SFT policy and are scored by the pipeline's RM
        stage_cfg = yaml.safe_load((root / stage / "config.yaml").read_text())
        assert stage_cfg[stage]["reward_model"] == str(root / "rm" / "model")
        assert stage_cfg["model"]["name_or_path"] == str(root / "sft" / "model")
        assert stage_cfg["data"]["train"] == str(root / "raters" / "data")
    batch = [json.loads(line) for line in (root / "sample" / "batch.jsonl").read_text().splitlines()]
    assert 1 <= len(batch) <= 4
    assert all(b["meta"]["policy"] == str(root / "dpo" / "model") for b in batch)  # "@dpo" beats the wiring
    assert all(b["meta"]["reward_model"] == str(root / "rm" / "model") and "task" in b["meta"] for b in batch)
    assert (root / "sample" / "label_studio_tasks.json").is_file()
    assert (root / "rate" / "data" / "rewardlab.json").is_file()  # the next round, rated by the simulator
    assert (root / "raters" / "rater_stats.jsonl").is_file()  # rater stats table
    evals = json.loads((root / "eval" / "metrics.json").read_text())
    assert 0.0 <= evals["rm_truth_accuracy"] <= 1.0 and "dpo.win_rate_vs_ref" in evals
    for policy in ("dpo", "ppo", "rs"):  # same held-out prompts, truth and RM score, win rate vs the start
        assert evals[f"{policy}.truth_score_mean"] is not None
        assert 0.0 <= evals[f"{policy}.win_rate_vs_ref"] <= 1.0
        assert evals[f"{policy}.ref_truth_score_mean"] == evals["dpo.ref_truth_score_mean"]  # same start
    # PPO's RM gain on the held-out prompts is paired with its start and carries its SE; the eval line shows it
    assert evals["ppo.rm_gain"] == pytest.approx(evals["ppo.rm_score_mean"] - evals["ppo.ref_rm_score_mean"])
    assert evals["ppo.rm_gain_se"] >= 0 and "ppo.rm_gain=" in headline("eval", evals)
    rs_row = next(r for r in first.json()["stages"] if r["stage"] == "rs")
    assert rs_row["metrics"]["rounds"] == 1 and rs_row["metrics"]["steps"] == 1
    assert rs_row["metrics"]["train_rm_score_end"] is None and rs_row["metrics"]["stop_rate_start"] is None
    summary = json.loads((root / "summary.json").read_text())
    assert [r["stage"] for r in summary["stages"]] == STAGES
    html = (root / "report" / "report.html").read_text()
    assert 'data-kind="histogram"' in html and 'data-kind="line"' in html and "Policy samples" in html
    assert (
        '<td class="">rs</td><td class="">rs</td>' in html and "<h3>rs</h3>" in html
    )  # its row, its samples
    assert first.json()["report"] == str(root / "report" / "report.html")
    assert (root / "rm" / "metrics.jsonl").stat().st_size > 0

    rs_weights = sorted((root / "rs" / "model").glob("*.safetensors"))
    rs_mtimes = [p.stat().st_mtime_ns for p in rs_weights]
    second = cli("pipeline", config)
    assert second.exit_code == 0, second
    assert rs_weights and [p.stat().st_mtime_ns for p in rs_weights] == rs_mtimes  # the complete rs reused
    assert second.stdout.count(" skip ") == len(STAGES)
    assert "11 skipped" in second.stdout

    # one stage changes: it and the stages that read it rerun, the others are skipped
    changed = statuses(cli("pipeline", config, "rm.train.lr=5e-4", "--json"))
    assert changed == {
        "simulate": "skip", "raters": "skip", "rm": "run", "sft": "skip", "dpo": "skip",
        "ppo": "run", "rs": "run", "eval": "run", "sample": "run", "rate": "run", "report": "run",
    }  # fmt: skip

    # an interrupted train stage resumes from its newest checkpoint (same config)
    (root / "rm" / "STAGE_COMPLETE").unlink()
    shutil.rmtree(root / "rm" / "model")
    resumed = cli("pipeline", config, "rm.train.lr=5e-4", "--json")
    assert statuses(resumed)["rm"] == "resume"
    assert statuses(resumed)["simulate"] == "skip"
    rm_metrics = json.loads((root / "rm" / "metrics.json").read_text())
    assert rm_metrics["resumed_from_step"] == 3

    # an interrupted rs stage starts again (`train rs` has no resume), then everything is reused
    (root / "rs" / "STAGE_COMPLETE").unlink()
    restarted = statuses(cli("pipeline", config, "rm.train.lr=5e-4", "--json"))
    assert restarted["rs"] == "run" and restarted["rm"] == "skip" and restarted["ppo"] == "skip"


def test_pipeline_bad_config_is_a_one_line_error(cli, tmp_path):
    config = write_pipeline(tmp_path, stages=["simulate", "rm", "bogus"])
    res = cli("pipeline", config)
    assert res.exit_code == 2 and "unknown stage 'bogus'" in res.stderr
    config = write_pipeline(tmp_path, stages=["rm"])
    res = cli("pipeline", config)
    assert res.exit_code == 2 and "needs a dataset" in res.stderr
    config = write_pipeline(tmp_path)
    res = cli("pipeline", config, "rm.train.lrr=1")
    assert res.exit_code == 2 and "unknown key 'train.lrr'" in res.stderr


def test_pipeline_rs_without_a_reward_model_is_a_one_line_error(cli, tmp_path):
    """rs (and ppo) take the pipeline's rm or the reward model their own section names, never the schema's
    default path; the plan fails before any stage runs (no folder is made)."""
    rs_own = {"train": {"max_steps": 1}, "rs": {"rounds": 1}}  # no base file: no reward model named
    config = write_pipeline(tmp_path, stages=["simulate", "sft", "rs"], rs=rs_own)
    res = cli("pipeline", config)
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "stage 'rs' needs a reward model (rm)" in res.stderr and "'rs.rs.reward_model'" in res.stderr
    assert not (tmp_path / "runs" / "tiny" / "simulate").exists()
    config = write_pipeline(tmp_path, stages=["simulate", "sft", "ppo"], ppo={"train": {"max_steps": 1}})
    res = cli("pipeline", config)
    assert res.exit_code == 2 and "stage 'ppo' needs a reward model (rm)" in res.stderr
    # a reward model named in the section must be one (checked before sft spends its minutes)
    res = cli("pipeline", config, f"ppo.ppo.reward_model={tmp_path / 'no-rm'}")
    assert res.exit_code == 2 and "pipeline stage 'ppo': ppo.reward_model: " in res.stderr
    assert "not a reward model folder" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    # a reward model folder named in the section, or the rm stage before it, satisfies the need
    from rewardlab.commands.loop import load_pipeline
    from rewardlab.recipes.pipeline import validate_plan

    (tmp_path / "my-rm").mkdir()
    (tmp_path / "my-rm" / "config.json").write_text("{}")
    validate_plan(load_pipeline(str(config), [f"ppo.ppo.reward_model={tmp_path / 'my-rm'}"]))
    validate_plan(load_pipeline(str(config), ["stages=[simulate,rm,sft,ppo]"]))


def test_sample_policy_reference_drops_the_wired_policy_input(tmp_path):
    """sample: {policy: "@dpo"} reads dpo, not the last policy stage (rs): rerunning rs keeps the batch."""
    from rewardlab.commands.loop import load_pipeline
    from rewardlab.recipes.pipeline import Context, Output, stage_config

    cfg = load_pipeline(str(write_pipeline(tmp_path)), [])
    ctx = Context(cfg=cfg, root=tmp_path)
    for stage in ("simulate", "rm", "dpo", "rs"):
        run_dir = tmp_path / stage
        ctx.outputs[stage] = Output(
            stage, run_dir, f"{stage}-fp", data=run_dir / "data", model=run_dir / "model"
        )
    sample_cfg, inputs = stage_config("sample", ctx, tmp_path / "sample")
    assert sample_cfg.policy == str(tmp_path / "dpo" / "model")
    assert inputs == {"simulate": "simulate-fp", "rm": "rm-fp", "dpo": "dpo-fp"}
    cfg.sample.pop("policy")  # no reference: the last policy stage run so far
    sample_cfg, inputs = stage_config("sample", ctx, tmp_path / "sample")
    assert sample_cfg.policy == str(tmp_path / "rs" / "model") and "rs" in inputs and "dpo" not in inputs


def _wandb_records(path: str) -> list[bytes]:
    """Records of a .wandb file (LevelDB log: 7-byte file header, 32 KiB blocks, 7-byte record headers)."""
    data = Path(path).read_bytes()
    pos, block, records, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            records.append(buf + chunk)
    return records


def test_wandb_offline_runs_share_the_pipeline_group(cli, tmp_path, monkeypatch):
    from wandb.proto import wandb_internal_pb2

    monkeypatch.setenv("WANDB_MODE", "offline")
    config = write_pipeline(
        tmp_path,
        stages=["simulate", "raters"],
        tracking={"backend": "wandb", "group": "round-7", "tags": ["ci"]},
    )
    res = cli("pipeline", config)
    assert res.exit_code == 0, res
    assert "wandb sync" in res.stdout
    files = glob.glob(str(tmp_path / "runs" / "tiny" / "raters" / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    runs = []
    for raw in _wandb_records(files[0]):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "run":
            runs.append(rec.run)
    assert runs and runs[0].run_group == "round-7"
    assert {"ci", "tiny", "raters"} <= set(runs[0].tags)
    assert b"rater_stats" in Path(files[0]).read_bytes()  # the rater stats table was logged
    assert (tmp_path / "runs" / "tiny" / "raters" / "metrics.jsonl").is_file()  # JSONL always


def test_shipped_pipeline_configs_validate_every_stage():
    """Each stage of the quickstart configs resolves against its schema before anything runs."""
    from rewardlab.commands.loop import load_pipeline
    from rewardlab.recipes.pipeline import validate_plan

    for name in ("quickstart.yaml", "quickstart-smollm.yaml"):
        cfg = load_pipeline(str(ROOT / "configs" / "pipeline" / name), [])
        validate_plan(cfg)
        assert cfg.stages[0] == "simulate" and cfg.stages[-1] == "report"
