"""`rewardlab sample` on the tiny policy and tiny random reward models, and the simulator rating its batch."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "sample" / "tiny.yaml"
DATA = ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def rms(tmp_path_factory) -> tuple[Path, Path]:
    """Two untrained tiny RMs (one with a rubric head): enough to exercise scoring and selection."""
    from rewardlab import models

    root = tmp_path_factory.mktemp("rms")
    out = []
    for name, heads in (("rm-a", ["overall"]), ("rm-b", ["overall", "accuracy"])):
        model = models.build_reward_model("offline:tiny-rm", head_names=heads)
        out.append(
            models.save_model(model, models.load_tokenizer("offline:tiny-rm"), root / name / "model").parent
        )
    return out[0], out[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def common(tmp: Path, name: str) -> list[str]:
    return [f"output_dir={tmp / name}", f"prompts={DATA}", "num_prompts=6", "k=3", "max_new_tokens=8"]


def test_uncertainty_batch_for_label_studio(cli, tmp_path, rms):
    res = cli("sample", CONFIG, *common(tmp_path, "s1"), f"reward_models=[{rms[0]}]", "budget=5", "--json")
    assert res.exit_code == 0, res
    out = tmp_path / "s1"
    summary = res.json()
    assert summary["selected"] == 5 and summary["selection"] == "uncertainty"
    batch = read_jsonl(out / "batch.jsonl")
    assert len(batch) == 5
    for row in batch:
        assert set(row) == {"id", "prompt", "responses", "meta"}
        assert len(row["responses"]) == 2 and row["responses"][0] != row["responses"][1]
        assert row["meta"]["policy"] == "offline:tiny-llama"
        assert row["meta"]["reward_model"] == str(rms[0])
        assert "family" in row["meta"]["task"]  # the simulator can score and rate it
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert [t["data"]["answer1"] for t in tasks] == [b["responses"][0] for b in batch]
    assert "<Pairwise" in (out / "label_studio_tasks.config.xml").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["policy"] == "offline:tiny-llama" and manifest["reward_models"] == [str(rms[0])]

    # the chosen pairs are the ones the RM is least sure about, among all pairs of every prompt
    samples = read_jsonl(out / "samples.jsonl")
    reward = {(json.dumps(s["prompt"]), s["response"]): s["rm_score"] for s in samples}
    answers: dict[str, list[str]] = {}
    for s in samples:
        answers.setdefault(json.dumps(s["prompt"]), []).append(s["response"])

    def closeness(prompt: str, a: str, b: str) -> float:
        p = 1 / (1 + math.exp(-(reward[(prompt, a)] - reward[(prompt, b)])))
        return 1 - 2 * abs(p - 0.5)

    everything = sorted(
        (closeness(p, a, b) for p, texts in answers.items() for a, b in combinations(texts, 2)), reverse=True
    )
    chosen = sorted((closeness(json.dumps(r["prompt"]), *r["responses"]) for r in batch), reverse=True)
    assert chosen == pytest.approx(everything[:5], abs=1e-5)
    assert [r["meta"]["selection_score"] for r in batch] == pytest.approx(chosen, abs=1e-5)

    # the loop closes: the simulator's raters judge the exported batch
    rated = cli(
        "simulate",
        "rate",
        out / "batch.jsonl",
        ROOT / "configs" / "simulate" / "default.yaml",
        "--out",
        tmp_path / "round2",
        "--json",
    )
    assert rated.exit_code == 0, rated
    assert rated.json()["rated"] == 5 and (tmp_path / "round2" / "rewardlab.json").is_file()


def test_disagreement_ranker_for_argilla_is_seeded(cli, tmp_path, rms):
    args = [f"reward_models=[{rms[0]},{rms[1]}]", "select=disagreement", "template=ranker", "budget=3"]
    first = cli("sample", CONFIG, *common(tmp_path, "s2"), *args, "export=argilla")
    assert first.exit_code == 0, first
    batch = read_jsonl(tmp_path / "s2" / "batch.jsonl")
    assert len(batch) == 3 and all(len(r["responses"]) >= 2 for r in batch)
    assert all(r["meta"]["reward_model"] == [str(rms[0]), str(rms[1])] for r in batch)
    records = json.loads((tmp_path / "s2" / "argilla_records.json").read_text())
    assert len(records) == 3 and records[0]["fields"]["response2"] == batch[0]["responses"][1]
    again = cli("sample", CONFIG, *common(tmp_path, "s3"), *args, "export=canonical", "batch_name=s2")
    assert again.exit_code == 0, again
    assert read_jsonl(tmp_path / "s3" / "batch.jsonl") == batch  # same seed, same batch


def test_sample_bad_input(cli, tmp_path, rms):
    res = cli("sample", CONFIG, *common(tmp_path, "s4"), "reward_models=[]")
    assert res.exit_code == 2 and "needs reward_models" in res.stderr
    res = cli(
        "sample", CONFIG, *common(tmp_path, "s5"), f"reward_models=[{rms[0]}]", f"prompts={tmp_path}/none"
    )
    assert res.exit_code == 2 and "not a dataset folder" in res.stderr
    res = cli("sample", CONFIG, *common(tmp_path, "s6"), "select=smart")
    assert res.exit_code == 2 and "select" in res.stderr
