"""`rewardlab train dpo`: pairs from rankings (ties counted), soft labels as weights, label smoothing, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _policy_setup import DATA, ROOT, SHARED, read_jsonl

from rewardlab.data.dataset import iter_records, load_dataset, write_dataset
from rewardlab.data.schema import normalize
from rewardlab.recipes.dpo import build_pairs

CONFIG = ROOT / "configs/dpo/tiny.yaml"


def rec(ranks: list[int], **extra) -> dict:
    responses = [f"answer number {i}" for i in range(len(ranks))]
    return normalize({"prompt": "Say something.", "responses": responses, "ranks": ranks, **extra})


def test_all_pairs_skip_and_count_ties():
    rows, counts = build_pairs([rec([1, 1, 2])], "all", "none")
    assert counts == {"pairs": 2, "ties_skipped": 1, "swapped_rows": 0}
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows} == {
        ("answer number 0", "answer number 2"),
        ("answer number 1", "answer number 2"),
    }
    assert rows[0]["prompt"] == [{"role": "user", "content": "Say something."}]


def test_best_vs_worst_keeps_one_pair_and_counts_all_tied_rankings():
    rows, counts = build_pairs([rec([2, 3, 1, 2])], "best-vs-worst", "none")
    assert counts["pairs"] == 1 and counts["ties_skipped"] == 0
    assert (rows[0]["chosen"][0]["content"], rows[0]["rejected"][0]["content"]) == (
        "answer number 2",
        "answer number 1",
    )
    rows, counts = build_pairs([rec([1, 1])], "best-vs-worst", "none")
    assert rows == [] and counts["ties_skipped"] == 1


def test_soft_labels_become_sampling_weights_with_swapped_rows():
    record = rec([1, 2], soft_pairs=[[0, 1, 0.8]], weight=2.0)
    rows, counts = build_pairs([record], "all", "weights")
    assert counts["swapped_rows"] == 1
    forward, swapped = rows
    assert forward["chosen"][0]["content"] == "answer number 0"
    assert forward["sample_weight"] == pytest.approx(1.6)
    assert swapped["chosen"][0]["content"] == "answer number 1"
    assert swapped["sample_weight"] == pytest.approx(0.4)
    # hard labels ignore soft_pairs and weights
    rows, _ = build_pairs([record], "all", "none")
    assert [r["sample_weight"] for r in rows] == [1.0]


def test_label_smoothing_needs_a_loss_that_reads_it(cli, tmp_path):
    res = cli("train", "dpo", CONFIG, f"data.train={DATA}", f"output_dir={tmp_path / 'x'}",
              "model.name_or_path=offline:tiny-llama", "dpo.soft_labels=label_smoothing")  # fmt: skip
    assert res.exit_code == 2
    assert "label_smoothing" in res.stderr and "robust" in res.stderr


@pytest.fixture(scope="module")
def soft_dataset() -> Path:
    """The bundled campaign with made-up aggregation output: soft labels and weights on every record."""
    out = SHARED / "soft-data"
    if not out.exists():
        records = []
        for n, r in enumerate(list(iter_records(load_dataset(DATA)))[:40]):
            best = r["ranks"].index(min(r["ranks"]))
            worst = r["ranks"].index(max(r["ranks"]))
            r["soft_pairs"] = [[best, worst, 0.75]] if best != worst else None
            r["weight"] = 0.5 + (n % 3) / 2
            records.append(r)
        write_dataset(records, out)
    return out


def test_dpo_trains_with_weights_saves_and_resumes(cli, tmp_path, soft_dataset):
    run = tmp_path / "dpo"
    base = ["train", "dpo", CONFIG, f"data.train={soft_dataset}", f"output_dir={run}",
            "model.name_or_path=offline:tiny-llama", "train.save_every=2", "train.batch_size=8", "train.log_every=1"]  # fmt: skip
    res = cli(*base, "train.max_steps=2", "--json")
    assert res.exit_code == 0, res
    first = res.json()
    assert first["steps"] == 2 and first["weighted_sampling"] is True
    assert first["soft_label_swapped_rows"] > 0 and first["pairs"] > 20
    assert first["ties_skipped"] > 0  # the campaign has tied rankings: counted, reported
    assert "ties skipped" in res.stderr
    assert (run / "checkpoints" / "checkpoint-2" / "COMPLETE").exists()
    assert (run / "model" / "model.safetensors").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["reference_model"] == "offline:tiny-llama"
    res = cli(*base, "train.max_steps=4", "train.resume=true", "--json")
    assert res.exit_code == 0, res
    assert res.json()["steps"] == 4
    steps = [row["step"] for row in read_jsonl(run / "metrics.jsonl") if "loss" in row]
    assert steps == [1, 2, 3, 4]  # the resumed run continues at step 3 and appends to metrics.jsonl
    assert (run / "checkpoints" / "checkpoint-4" / "COMPLETE").exists()


def test_resume_without_checkpoint_is_a_user_error(cli, tmp_path):
    res = cli("train", "dpo", CONFIG, f"data.train={DATA}", f"output_dir={tmp_path / 'none'}",
              "model.name_or_path=offline:tiny-llama", "train.resume=true")  # fmt: skip
    assert res.exit_code == 2
    assert "no complete checkpoint" in res.stderr


def test_micro_batches_with_accumulation_make_the_same_updates(cli, tmp_path):
    """batch 8 = 1 x 8 accumulated: the same pairs, the same loss, the same weights (docs/policy.md tells CPU
    users to split a batch this way: TRL pads each forward to its longest pair, and smaller ones pad less)."""
    import torch
    from safetensors.torch import load_file

    weights, losses = {}, {}
    for micro, accum in ((8, 1), (1, 8)):
        run = tmp_path / f"b{micro}"
        res = cli("train", "dpo", CONFIG, f"data.train={DATA}", f"output_dir={run}", "model.name_or_path=offline:tiny-llama",
                  "train.max_steps=2", f"train.batch_size={micro}", f"train.grad_accum={accum}", "train.log_every=1",
                  "dpo.soft_labels=none", "dpo.loss_type=[sigmoid]", "dpo.loss_weights=null", "train.save_every=null")  # fmt: skip
        assert res.exit_code == 0, res
        weights[micro] = load_file(run / "model" / "model.safetensors")
        losses[micro] = torch.tensor(
            [row["loss"] for row in read_jsonl(run / "metrics.jsonl") if "loss" in row]
        )
    assert torch.allclose(losses[8], losses[1], atol=1e-4)
    from rewardlab import models

    start = load_file(Path(models.resolve("offline:tiny-llama")) / "model.safetensors")
    apart = moved = 0.0
    for name, tensor in weights[8].items():
        # Adam turns float rounding in near-zero gradients into steps of up to lr (5e-4) in a few coordinates
        assert torch.allclose(tensor, weights[1][name], atol=1e-4), name
        apart += (tensor - weights[1][name]).abs().sum().item()
        moved += (tensor - start[name]).abs().sum().item()
    assert apart < 0.01 * moved  # measured 2e-6 of the distance the runs moved from the start model
