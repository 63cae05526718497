"""A TRL export trains TRL's own RewardTrainer and DPOTrainer unchanged (2 steps each, tiny models, CPU)."""

from __future__ import annotations

import json
import math

from rewardlab.data import importing
from rewardlab.data.dataset import iter_records, load_dataset
from rewardlab.data.formats.trl import export_trl

CPU = {
    "bf16": False,
    "gradient_checkpointing": False,
    "dataloader_pin_memory": False,
    "report_to": "none",
    "use_cpu": True,
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "logging_steps": 1,
    "save_strategy": "no",
    "max_length": 64,
}


def exported(tmp_path, rows, name):
    src = tmp_path / f"{name}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert importing.run([src], out=tmp_path / name).accepted == len(rows)
    result = export_trl(iter_records(load_dataset(tmp_path / name)), tmp_path / f"{name}.trl.jsonl")
    from datasets import load_dataset as hf_load

    return result, hf_load("json", data_files=str(tmp_path / f"{name}.trl.jsonl"), split="train")


def losses(trainer):
    return [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_reward_trainer_on_standard_export(tmp_path):
    from trl import RewardConfig, RewardTrainer

    from rewardlab.models import build_reward_model, load_tokenizer

    rows = [
        {
            "prompt": f"What is {n} plus {n}?",
            "responses": [f"It is {2 * n}.", f"It is {2 * n + 1}.", "No idea."],
            "ranks": [1, 2, 2 if n % 2 else 3],
        }
        for n in range(4)
    ]
    result, data = exported(tmp_path, rows, "std")
    assert result["pairs"] == 10 and result["ties_not_exported"] == 2  # n odd: the two wrong answers tie
    assert set(data.column_names) == {"prompt", "chosen", "rejected"}
    trainer = RewardTrainer(
        model=build_reward_model("offline:tiny-rm"),
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **CPU),
        train_dataset=data,
        processing_class=load_tokenizer("offline:tiny-rm"),
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert losses(trainer) and all(math.isfinite(x) for x in losses(trainer))


def test_dpo_trainer_on_conversational_export(tmp_path):
    from trl import DPOConfig, DPOTrainer

    from rewardlab.models import build_policy, load_tokenizer

    rows = [
        {
            "prompt": [{"role": "user", "content": f"Say hi to {name}"}],
            "responses": [f"Hi {name}!", "Go away."],
            "ranks": [1, 2],
            "rater": "r1",
        }
        for name in ("Ann", "Bob", "Cid", "Dee")
    ]
    result, data = exported(tmp_path, rows, "chat")
    assert result["pairs"] == 4 and result["ties_not_exported"] == 0
    assert data[0]["chosen"] == [{"role": "assistant", "content": "Hi Ann!"}]
    trainer = DPOTrainer(
        model=build_policy("offline:tiny-llama"),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **CPU),
        train_dataset=data,
        processing_class=load_tokenizer("offline:tiny-llama"),
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert losses(trainer) and all(math.isfinite(x) for x in losses(trainer))


def test_export_says_what_raw_multi_rater_data_holds_and_maps_margins(tmp_path, cli):
    # two raters agree on q1, disagree on q2, one rater on q3 (with a strength the map knows)
    recs = [
        {"prompt": "q1", "responses": ["a", "b"], "ranks": [1, 2], "rater": "r1", "strength": "better"},
        {"prompt": "q1", "responses": ["a", "b"], "ranks": [1, 2], "rater": "r2", "strength": "better"},
        {"prompt": "q2", "responses": ["c", "d"], "ranks": [1, 2], "rater": "r1"},
        {"prompt": "q2", "responses": ["c", "d"], "ranks": [2, 1], "rater": "r2", "strength": "slightly better"},
        {"prompt": "q3", "responses": ["e", "f"], "ranks": [2, 1], "rater": "r1", "strength": "significantly better"},
    ]  # fmt: skip
    src = tmp_path / "raw.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert cli("data", "import", src, "--out", tmp_path / "ds").exit_code == 0
    out = tmp_path / "trl.jsonl"
    res = cli("data", "export", tmp_path / "ds", "--to", "trl", "--out", out, "--json",
              "--margin", "configs/rm/tiny.yaml")  # fmt: skip
    assert res.exit_code == 0, res
    got = res.json()
    assert (got["pairs"], got["distinct_rows"], got["duplicate_rows"], got["contradicting_rows"]) == (
        5,
        4,
        1,
        2,
    )
    assert got["raters"] == 2 and got["aggregated"] is False
    assert "raters aggregate" in got["warnings"][0] and "raters aggregate" in res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # tiny.yaml's map: better 0.66, slightly better 0.33, significantly better 1.0; no strength -> 0.0
    assert [r["margin"] for r in rows] == [0.66, 0.66, 0.0, 0.33, 1.0]
    # a label the map does not know is refused, not exported as 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: rm\nloss: {margin: {better: 1.0}}\n")
    res = cli("data", "export", tmp_path / "ds", "--to", "trl", "--out", out, "--margin", bad)
    assert res.exit_code == 2 and "strength 'slightly better' is not in the margin map" in res.stderr
    # an aggregated dataset exports one row per comparison: no warning
    assert (
        cli(
            "raters", "aggregate", tmp_path / "ds", "--out", tmp_path / "agg", "--method", "majority"
        ).exit_code
        == 0
    )
    res = cli("data", "export", tmp_path / "agg", "--to", "trl", "--out", out, "--json")
    assert res.json()["duplicate_rows"] == 0 and res.json()["warnings"] == [] and res.json()["aggregated"]
