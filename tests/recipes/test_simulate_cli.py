"""`rewardlab simulate` from the CLI: campaign folder + truth.json, determinism, `rate`, sweep, the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

from rewardlab.data.dataset import dataset_meta, iter_records, load_dataset, split_by_prompt
from rewardlab.data.schema import group_key

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs/simulate/default.yaml"


def test_simulate_writes_dataset_and_truth_deterministically(cli, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ra = cli("simulate", DEFAULT, "prompts=40", "--out", a, "--json")
    assert ra.exit_code == 0, ra
    s = ra.json()
    assert s["prompts"] == 40 and s["raters"] == 12 and s["gold"] == 4 and s["out"] == str(a)
    assert s["records"] == 40 * 3 + 4
    rb = cli("simulate", DEFAULT, "prompts=40", f"out={b}", "--json")
    assert cli("simulate", DEFAULT, "prompts=40", "seed=1", f"out={c}").exit_code == 0
    assert dataset_meta(a)["fingerprint"] == dataset_meta(b)["fingerprint"] == rb.json()["fingerprint"]
    assert dataset_meta(c)["fingerprint"] != dataset_meta(a)["fingerprint"]
    truth, truth_b = (json.loads((x / "truth.json").read_text()) for x in (a, b))
    assert truth["config"].pop("out") == str(a) and truth_b["config"].pop("out") == str(b)
    assert truth == truth_b
    records = list(iter_records(load_dataset(a)))
    assert len(records) == s["records"]
    for rec in records:  # every comparison has its utilities, every rater a profile, every record its task
        utils = truth["utilities"][group_key(rec["prompt"], rec["responses"])]
        assert set(utils) == set(rec["responses"])
        assert rec["meta"]["task"] == truth["groups"][group_key(rec["prompt"], rec["responses"])]["task"]
        assert rec["rater"] is None or truth["raters"][rec["rater"]]["profile"]


def test_simulate_bad_input_exits_2(cli, tmp_path):
    r = cli("simulate", DEFAULT, "overlapp=3", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "overlapp" in r.stderr
    r = cli("simulate", DEFAULT, "raters=2", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "overlap" in r.stderr
    r = cli("simulate", "rate", tmp_path / "missing.jsonl", DEFAULT)
    assert r.exit_code == 2 and "missing.jsonl" in r.stderr
    assert cli("simulate", "rate", DEFAULT).exit_code == 2


def test_simulate_rate_jsonl_batch(cli, tmp_path):
    batch = tmp_path / "batch.jsonl"
    task = {"family": "capital", "country": "Canada", "answer": "Ottawa"}
    rows = [
        {"id": f"s{i}", "prompt": "What is the capital of Canada?", "meta": {"task": task, "policy": "runs/dpo"},
         "responses": [f"Ottawa{'!' * i}", "Toronto.", "Sorry, I can't help with that.", "Toronto."]}
        for i in range(1, 11)
    ]  # fmt: skip
    rows.append({"id": "bad", "prompt": "x", "responses": ["same", "same"]})
    rows.append({"id": "free", "prompt": "Say hi.", "responses": ["Hi there!", "Go away, idiot."]})
    batch.write_text("\n".join(json.dumps(r) for r in rows))
    r = cli("simulate", "rate", batch, DEFAULT, "overlap=2", "gold_rate=0", "--json")
    assert r.exit_code == 0, r
    s = r.json()
    out = tmp_path / "batch-rated"
    assert s["out"] == str(out) and s["items"] == 12 and s["rated"] == 11 and s["skipped"] == 1
    assert s["by_reason"] == {"fewer_than_2_distinct_responses": 1}
    assert s["no_task"] == 1 and s["duplicate_responses"] == 11 and s["records"] == 22
    records = list(iter_records(load_dataset(out)))
    assert {len(r["responses"]) for r in records if r["meta"]["item"] != "free"} == {3}
    assert all(r["meta"].get("policy") == "runs/dpo" for r in records if r["meta"]["item"] != "free")
    assert json.loads((out / "skipped.jsonl").read_text())["id"] == "bad"
    truth = json.loads((out / "truth.json").read_text())
    utils = truth["utilities"][
        group_key("What is the capital of Canada?", ["Ottawa!", "Toronto.", "Sorry, I can't help with that."])
    ]
    assert utils["Ottawa!"] > utils["Toronto."] > utils["Sorry, I can't help with that."]


def test_simulate_rate_label_studio_tasks(cli, tmp_path):
    tasks = [
        {"id": i, "data": {"prompt": f"What is {i} + 1?", "answer1": f"{i + 1}", "answer2": f"{i + 2}",
                           "meta": {"task": {"family": "arithmetic", "operands": [i, 1], "answer": i + 1}}}}
        for i in range(20)
    ]  # fmt: skip
    batch = tmp_path / "tasks.json"
    batch.write_text(json.dumps(tasks))
    r = cli("simulate", "rate", batch, DEFAULT, "gold_rate=0.1", f"out={tmp_path / 'rated'}", "--json")
    assert r.exit_code == 0, r
    s = r.json()
    assert (
        s["out"] == str(tmp_path / "rated")
        and s["rated"] == 20
        and s["gold"] == 2
        and s["records"] == 20 * 3 + 2
        and s["no_task"] == 0
    )


def test_sweep_prints_each_setting(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a sweep plans only: nothing may be written
    sweep = "sweep={overlap: [1, 3], gold_rate: [0.1]}"
    r = cli("simulate", ROOT / "configs/simulate/sweep.yaml", "prompts=30", sweep, "--json")
    assert r.exit_code == 0, r
    out = r.json()
    assert out["keys"] == ["overlap", "gold_rate"]
    rows = out["settings"]
    assert [row["setting"] for row in rows] == [
        {"overlap": 1, "gold_rate": 0.1},
        {"overlap": 3, "gold_rate": 0.1},
    ]
    for row in rows:
        assert {"label_accuracy", "majority_accuracy", "agreement", "judgments", "gold", "evaluator"} <= set(
            row
        )
        assert 0.5 < row["label_accuracy"] <= 1.0
    assert [row["judgments"] for row in rows] == [30, 90] and rows[1]["gold"] == 3
    assert rows[0]["agreement"] is None and 0.4 < rows[1]["agreement"] < 0.95
    assert list(tmp_path.iterdir()) == []


def test_sweep_table(capsys):
    from rewardlab.commands.simulate import print_sweep

    rows = [{"setting": {"overlap": o}, "label_accuracy": a, "majority_accuracy": a, "agreement": g,
             "judgments": 60 * o, "gold": 0, "evaluator": "majority (fallback)"}
            for o, a, g in [(1, 0.81, None), (3, 0.934, 0.69)]]  # fmt: skip
    print_sweep(rows, ["overlap"])
    text = capsys.readouterr().out
    assert "label_accuracy" in text and "0.934" in text and "180" in text and "majority (fallback)" in text


def test_bundled_sample_matches_the_default_config(cli, tmp_path):
    """data/sample is what `rewardlab simulate configs/simulate/default.yaml` writes (regenerate it if not)."""
    sample = ROOT / "data/sample"
    r = cli("simulate", DEFAULT, "--out", tmp_path / "fresh", "--json")
    assert r.exit_code == 0, r
    assert dataset_meta(sample)["fingerprint"] == r.json()["fingerprint"]
    ds = load_dataset(sample)
    assert len(set(ds["prompt"])) >= 60
    train, held_out = split_by_prompt(ds, 0.1, seed=0)
    assert len(held_out) > 0 and not set(train["prompt"]) & set(held_out["prompt"])
    assert sum(p.stat().st_size for p in sample.iterdir()) < 1_000_000
