"""`train rm` on simulated data with real ties and gold records: learned tie parameters, gold set aside,
the eval split's own seed, bf16 autocast on CPU, SHP strength labels against a shipped margin map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardlab.config import SimulateConfig
from rewardlab.data.dataset import iter_records, load_dataset, write_dataset
from rewardlab.data.simulate import simulate_campaign

CONFIG = "configs/rm/tiny.yaml"


@pytest.fixture(scope="module")
def tie_data(tmp_path_factory) -> Path:
    """Careful raters who tie responses whose true utilities are within 0.25: ~20% of pairs are ties."""
    cfg = SimulateConfig(
        prompts=160,
        k_mix={2: 0.5, 3: 0.5},
        raters=6,
        overlap=1,
        gold_rate=0.1,
        tie_epsilon=0.25,
        seed=0,
        mix={"careful": 1.0, "noisy": 0.0, "random": 0.0, "position_biased": 0.0, "too_fast": 0.0},
    )
    records, _ = simulate_campaign(cfg)
    out = tmp_path_factory.mktemp("ties") / "ds"
    write_dataset(records, out)
    return out


def train(cli, data: Path, out: Path, *extra: str) -> dict:
    res = cli(
        "train", "rm", CONFIG, f"data.train={data}", f"output_dir={out}", "heads=[overall]",
        "data.eval_fraction=0.3", "train.batch_size=8", "train.max_steps=10", "train.eval_every=5",
        *extra, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    return res.json()


@pytest.fixture(scope="module")
def tie_run(tie_data, tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("tierun") / "run"
    return out, train(run_cli, tie_data, out)


def test_learned_ties_are_reported_saved_and_called(tie_run, tie_data):
    out, m = tie_run
    share = m["train_tie_share_by_head"]["overall"]
    assert 0.1 < share < 0.4 and m["train_tie_pairs_by_head"]["overall"] >= 10
    assert m["tie_model_by_head"] == {"overall": "rao-kupper"} and m["tie_param_learned"] is True
    theta = m["tie_param_by_head"]["overall"]
    # started at (1 + s) / (1 - s) (P(tie | equal rewards) = s), then learned: still a valid theta, moved
    start = (1 + share) / (1 - share)
    assert theta > 1 and theta != pytest.approx(start, abs=1e-6)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["tie_param_overall"] for r in rows if "tie_param_overall" in r][-1] == pytest.approx(theta)
    # ties are called during training (at 1.5 fixed they never were) and at the end
    evals = [r for r in rows if "eval/tie_accuracy" in r]
    assert len(evals) == 2 and all(r["eval/tie_accuracy"] > 0 for r in evals)
    assert m["n_tie_pairs"] > 0 and m["tie_accuracy"] > 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["rewardlab_tie_model"] == {"kind": "rao-kupper", "param": pytest.approx(theta)}
    assert config["rewardlab_tie_models"][0]["param"] == pytest.approx(theta)


def test_gold_is_set_aside_and_counted(tie_run, tie_data):
    out, m = tie_run
    gold = sum(1 for r in iter_records(load_dataset(tie_data)) if r.get("gold"))
    assert gold > 0
    assert m["gold_set_aside"]["train"] + m["gold_set_aside"]["eval"] == gold
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["gold_set_aside"] == m["gold_set_aside"]
    assert manifest["data"]["split_seed"] == 0


def test_bf16_autocast_other_seed_same_split_use_gold(tie_run, tie_data, tmp_path, cli):
    _, base = tie_run
    out = tmp_path / "bf16"
    m = train(cli, tie_data, out, "train.bf16=true", "train.seed=1", "data.use_gold=true")
    assert m["gold_set_aside"] == {"train": 0, "eval": 0} and m["mixed_precision"] == "bf16"
    assert 0 <= m["accuracy"] <= 1 and m["reward_std"] > 0
    # the eval split follows data.split_seed, not train.seed: the same prompts, now with their gold records
    assert m["eval_records"] == base["eval_records"] + base["gold_set_aside"]["eval"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in rows if "loss" in r)  # finite under autocast
    from safetensors import safe_open

    with safe_open(str(out / "model" / "model.safetensors"), "pt") as f:  # weights stay float32
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float32"}  # noqa: SIM118


def test_one_stray_tie_keeps_a_head_bradley_terry(tie_data, tmp_path, cli):
    records = [r for r in iter_records(load_dataset(tie_data)) if not r.get("gold")]
    decided = [r for r in records if len(set(r["ranks"])) == len(r["ranks"])]
    one_tie = [r for r in records if len(set(r["ranks"])) < len(r["ranks"])][:1]
    data = tmp_path / "one-tie"
    write_dataset(decided[:80] + one_tie, data)
    m = train(
        cli, data, tmp_path / "run", "data.eval_fraction=0.0", "train.max_steps=2", "train.eval_every=null"
    )
    assert m["train_tie_pairs_by_head"]["overall"] >= 1
    assert m["tie_model_by_head"] == {"overall": "bradley-terry"} and m["tie_model"] is None
    assert m["tie_param_by_head"] == {"overall": None}


def test_shp_import_trains_with_a_shipped_margin_map(tmp_path, cli):
    """SHP's strength labels ("significantly better", ...) are the shipped configs' margin keys."""
    rows = []
    for i in range(12):
        a, b = 10 + i, (i % 4) * 4 + 1  # score ratios from 0.9 to 11: every strength bucket
        rows.append(
            {"post_id": f"p{i}", "domain": "askscience_train", "upvote_ratio": 0.9, "history": f"Question {i}?",
             "c_root_id_A": f"a{i}", "c_root_id_B": f"b{i}", "created_at_utc_A": 1, "created_at_utc_B": 2,
             "human_ref_A": f"A careful answer {i}.", "human_ref_B": f"A short reply {i}.", "labels": int(a > b),
             "score_A": a, "score_B": b, "seconds_difference": 1.0}
        )  # fmt: skip
    path = tmp_path / "shp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = cli(
        "train", "rm", CONFIG, f"data.train={path}", "data.format=shp", f"output_dir={tmp_path / 'run'}",
        "heads=[overall]", "data.eval_fraction=0.0", "train.max_steps=1", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "significantly better" in card  # the margin map it trained with
