"""`rewardlab train sft`: demonstrations from rankings (consensus best) or from a prompt/response file."""

from __future__ import annotations

import json

from _policy_setup import ROOT

from rewardlab.data.schema import normalize
from rewardlab.recipes.policy_common import demonstrations, unique_prompts

CONFIG = ROOT / "configs/sft/tiny.yaml"


def test_demonstrations_take_the_consensus_best_across_raters():
    base = {"prompt": "Q?", "responses": ["a", "b", "c"]}
    records = [
        normalize({**base, "ranks": [2, 1, 3], "rater": "r1"}),  # a noisy rater prefers b
        normalize({**base, "ranks": [1, 2, 3], "rater": "r2"}),
        normalize(
            {**base, "responses": ["c", "a", "b"], "ranks": [3, 1, 2], "rater": "r3"}
        ),  # same group, reordered
        normalize(
            {"prompt": "Other?", "responses": ["x", "y"], "ranks": [2, 1], "meta": {"task": {"family": "k"}}}
        ),
    ]
    demos = demonstrations(records)
    assert [(d["prompt"], d["response"]) for d in demos] == [("Q?", "a"), ("Other?", "y")]
    assert demos[1]["meta"] == {"task": {"family": "k"}}
    assert [p["prompt"] for p in unique_prompts(records)] == ["Q?", "Other?"]


def test_sft_from_a_demonstration_file(cli, tmp_path):
    demo = tmp_path / "demos.jsonl"
    lines = [{"prompt": f"What is {i} + 1?", "response": f"{i} + 1 = {i + 1}."} for i in range(6)]
    lines.append({"prompt": [{"role": "user", "content": "Hi!"}], "response": "Hello! How can I help?"})
    demo.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    run = tmp_path / "sft"
    res = cli("train", "sft", CONFIG, f"data.train={demo}", "sft.demonstrations=file", f"output_dir={run}",
              "train.max_steps=2", "train.batch_size=4", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    assert out["demonstrations"] == 7 and out["steps"] == 2
    assert (run / "model" / "model.safetensors").exists() and (run / "model" / "README.md").exists()
    assert json.loads((run / "manifest.json").read_text())["base_model"] == "offline:tiny-llama"
    assert all(
        "loss" in row or "train_loss" in row for row in map(json.loads, (run / "metrics.jsonl").open())
    )


def test_bad_demonstration_line_names_file_and_line(cli, tmp_path):
    demo = tmp_path / "demos.jsonl"
    demo.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": ""}\n')
    res = cli(
        "train",
        "sft",
        CONFIG,
        f"data.train={demo}",
        "sft.demonstrations=file",
        f"output_dir={tmp_path / 'x'}",
    )
    assert res.exit_code == 2
    assert f"{demo}:2: field 'response'" in res.stderr
