"""`rewardlab train rm / eval rm / score` end to end on the tiny RM (real CLI, in-process, a few steps)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from _policy_setup import RM_TIMING_KEYS

from rewardlab.data.dataset import iter_records, load_dataset, split_by_prompt, write_dataset
from rewardlab.data.schema import normalize

CONFIG = "configs/rm/tiny.yaml"


def make_records(n_prompts: int = 48, seed: int = 0) -> list[dict]:
    """Arithmetic prompts, K = 2..4, ties, strengths, rubric scores, and two raters on every 3rd group."""
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        pool = [
            f"{a} + {b} = {a + b}. The answer is {a + b}.",
            f"Sure! {a} + {b} is {a + b}.",
            f"{a} + {b} = {a + b + rng.randint(1, 5)}.",
            "I don't know. Figure it out yourself.",
        ]
        k = 2 + i % 3
        idx = [0, 2, 3, 1][:k]
        responses = [pool[j] for j in idx]
        ranks = [{0: 1, 1: 1, 2: 2, 3: 3}[j] for j in idx]  # 0 and 1 tie (both right)
        helpful = [{0: 5, 1: 4, 2: 2, 3: 1}[j] for j in idx]
        base = {"prompt": f"What is {a} + {b}?", "responses": responses, "scores": {"helpfulness": helpful}}
        raters = ["r1", "r2"] if i % 3 == 0 else [f"r{i % 4}"]
        for rater in raters:
            flipped = list(ranks)
            if rater == "r2" and i % 2 == 0:
                flipped[0], flipped[1] = flipped[1], flipped[0]  # a disagreeing second rater
            rec = {**base, "ranks": flipped, "rater": rater, "strength": ["better", "slightly better"][i % 2]}
            if i % 4 == 1:
                rec["agreement"] = 0.5 + (i % 5) / 10
            out.append(normalize(rec, source=f"test:{i}:{rater}"))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rmdata") / "ds"
    write_dataset(make_records(), path)
    return path


def train_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "rm",
        CONFIG,
        f"data.train={dataset}",
        f"output_dir={out}",
        "heads=[overall,helpfulness]",
        "data.eval_fraction=0.3",
        "train.batch_size=4",
        "train.max_steps=6",
        "train.save_every=3",
        "train.eval_every=2",
        "loss.min_ties=3",  # ~11 tied training pairs: enough for a tie model here
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("rmrun") / "run"
    res = run_cli(*train_args(dataset, out), "--json")
    assert res.exit_code == 0, res
    return out, res.json()


def test_train_writes_run_folder_and_design_metrics(trained, dataset):
    out, printed = trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert {k: v for k, v in printed.items() if k != "output_dir"} == metrics
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n_pairs"] > 0
    assert 0.0 <= metrics["ece"] <= 1.0
    assert set(metrics["accuracy_by_strength"]) == {"better", "slightly better"}
    assert set(metrics["accuracy_by_head"]) == {"overall", "helpfulness"}
    assert set(metrics["accuracy_by_k"]) <= {"2", "3", "4"}
    # two raters judged every third group: the ceiling is measurable, and below 1 (r2 disagrees)
    assert 0.0 <= metrics["agreement_ceiling"] < 1.0
    assert metrics["n_tie_pairs"] > 0 and metrics["tie_model"] == "rao-kupper"
    assert metrics["truncated_prompt_records"] == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2, 4, 6]  # every 2 steps, and the final one
    assert (out / "config.yaml").exists() and (out / "manifest.json").exists()
    model = out / "model"
    assert (model / "model.safetensors").exists() and not list(model.glob("*.bin"))
    card = (model / "README.md").read_text()
    fingerprint = json.loads((dataset / "rewardlab.json").read_text())["fingerprint"]
    assert fingerprint in card
    config = json.loads((model / "config.json").read_text())
    assert config["rewardlab_heads"] == ["overall", "helpfulness"]
    assert config["id2label"] == {"0": "overall", "1": "helpfulness"}
    assert config["reward_std"] > 0 and len(config["reward_mean_per_head"]) == 2
    assert config["reward_mean"] == pytest.approx(metrics["reward_mean"])


def test_resume_ends_with_the_same_metrics(trained, tmp_path, cli):
    out, _ = trained
    # a copy of the run as if it had been killed after step 3: no step-6 checkpoint, no model, no metrics
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000006")
    shutil.rmtree(resumed / "model")
    (resumed / "metrics.json").unlink()
    dataset = json.loads((out / "manifest.json").read_text())["data"]["train"]
    res = cli(*train_args(Path(dataset), resumed, "train.resume=true"), "--json")
    assert res.exit_code == 0, res
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((resumed / "metrics.json").read_text())
    assert b["resumed_from_step"] == 3
    assert {k: v for k, v in a.items() if k not in RM_TIMING_KEYS} == {
        k: v for k, v in b.items() if k not in RM_TIMING_KEYS
    }
    rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_plain_transformers_scores_like_rewardlab(trained, tmp_path, cli):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardlab.scoring import RewardScorer

    model_dir = trained[0] / "model"
    prompts = [
        "What is 3 + 4?",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    ]
    responses = ["3 + 4 = 7. The answer is 7.", "Hello! How can I help you today?"]
    ours = RewardScorer.from_path(trained[0]).score(prompts, responses)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    for n, (p, r) in enumerate(zip(prompts, responses)):
        messages = ([{"role": "user", "content": p}] if isinstance(p, str) else p) + [
            {"role": "assistant", "content": r}
        ]
        text = tok.apply_chat_template(messages, tokenize=False)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            plain = model(**enc).logits[0].numpy()
        assert plain == pytest.approx(ours[n], abs=1e-5)
    # and `rewardlab score` writes the same numbers, one `rewards` dict per head
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"prompt": prompts[0], "response": responses[0]})
        + "\n"
        + json.dumps({"prompt": prompts[1], "responses": [responses[1], "Bye."]})
        + "\n"
    )
    dst = tmp_path / "out.jsonl"
    res = cli("score", str(trained[0]), "--input", str(src), "--output", str(dst), "--json")
    assert res.exit_code == 0, res
    lines = [json.loads(x) for x in dst.read_text().splitlines()]
    assert lines[0]["rewards"]["overall"] == pytest.approx(float(ours[0, 0]), abs=1e-5)
    assert lines[0]["rewards"]["helpfulness"] == pytest.approx(float(ours[0, 1]), abs=1e-5)
    assert lines[1]["rewards"]["overall"][0] == pytest.approx(float(ours[1, 0]), abs=1e-5)
    assert len(lines[1]["rewards"]["helpfulness"]) == 2


def test_score_rejects_bad_lines(trained, tmp_path, cli):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"prompt": "x", "response": "y"}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    res = cli("score", str(trained[0]), "--input", str(src), "--output", str(tmp_path / "o.jsonl"))
    assert res.exit_code == 2
    assert f"{src}:2" in res.stderr and "response" in res.stderr


def test_eval_rm_reproduces_the_training_eval(trained, dataset, tmp_path, cli):
    out, metrics = trained
    _, held = split_by_prompt(load_dataset(dataset), 0.3, 0)
    held_dir = tmp_path / "held"
    write_dataset(list(iter_records(held)), held_dir)
    res = cli("eval", "rm", str(out), "--data", str(held_dir), "--json")
    assert res.exit_code == 0, res
    got = res.json()
    for key in ("accuracy", "n_pairs", "ece", "accuracy_by_head", "agreement_ceiling", "tie_accuracy"):
        assert got[key] == pytest.approx(metrics[key]), key
    assert (out / "evals" / "held.json").exists()


def test_truncation_keeps_every_record_and_counts(dataset, tmp_path, cli):
    out = tmp_path / "short"
    res = cli(
        "train",
        "rm",
        CONFIG,
        f"data.train={dataset}",
        f"output_dir={out}",
        "data.max_length=14",
        "train.max_steps=1",
        "data.eval_fraction=0.3",
        "heads=[overall]",
        "--json",
    )
    assert res.exit_code == 0, res
    m = res.json()
    assert m["truncated_prompt_records"] > 0
    n_train = len(list(iter_records(split_by_prompt(load_dataset(dataset), 0.3, 0)[0])))
    assert m["train_groups"] == n_train
    assert "truncated to 14 tokens" in res.stderr


def test_bad_config_and_data_exit_2(dataset, tmp_path, cli):
    res = cli(
        "train",
        "rm",
        CONFIG,
        f"data.train={dataset}",
        f"output_dir={tmp_path / 'a'}",
        "heads=[overall,safety]",
    )
    assert res.exit_code == 2 and "safety" in res.stderr
    odd = tmp_path / "odd"
    write_dataset(
        [normalize({"prompt": "p", "responses": ["a", "b"], "ranks": [1, 2], "strength": "a bit better"})],
        odd,
    )
    res = cli(
        "train",
        "rm",
        CONFIG,
        f"data.train={odd}",
        f"output_dir={tmp_path / 'b'}",
        "heads=[overall]",
        "data.eval_fraction=0",
    )
    assert res.exit_code == 2 and "a bit better" in res.stderr and "loss.margin" in res.stderr
    res = cli("train", "rm", CONFIG, f"data.train={tmp_path / 'missing'}", f"output_dir={tmp_path / 'c'}")
    assert res.exit_code == 2
    res = cli(
        "train",
        "rm",
        CONFIG,
        f"data.train={dataset}",
        "loss.tie_param=0.5",
        f"output_dir={tmp_path / 'd'}",
        "heads=[overall]",
    )
    assert res.exit_code == 2 and "tie_param" in res.stderr


def test_lora_plackett_luce_saves_a_plain_model(dataset, tmp_path, cli):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "lora"
    res = cli(
        "train", "rm", CONFIG, f"data.train={dataset}", f"output_dir={out}", "model.lora={r: 4, alpha: 8}",
        "heads=[overall]", "loss.kind=plackett-luce", "loss.center_coef=0.01", "train.max_steps=2",
        "train.grad_accum=2", "data.eval_fraction=0.3", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    metrics = res.json()
    assert not (out / "model" / "adapter_config.json").exists()
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_labels == 1 and model.config.rewardlab_heads == ["overall"]
    assert not any("lora" in name for name, _ in model.named_parameters())
    # the trained score head was saved with the merged weights: reloading reproduces the run's own eval
    _, held = split_by_prompt(load_dataset(dataset), 0.3, 0)
    held_dir = tmp_path / "held"
    write_dataset(list(iter_records(held)), held_dir)
    again = cli("eval", "rm", str(out), "--data", str(held_dir), "--json").json()
    assert again["ece"] == pytest.approx(metrics["ece"], abs=1e-6)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
