"""Hub-ready model folders: card metadata read back with huggingface_hub, and `export rm` loaded as TRL does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_rm_recipe import make_records

from rewardlab.data.dataset import write_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def minilm_rm(tmp_path_factory):
    """A 2-head RM on the real MiniLM encoder (offline:minilm-l6 maps to a hub id), 3 steps."""
    from conftest import run_cli

    base = tmp_path_factory.mktemp("hubrm")
    write_dataset(make_records(24), base / "ds")
    out = base / "run"
    res = run_cli(
        "train", "rm", ROOT / "configs/rm/minilm.yaml", f"data.train={base / 'ds'}", f"output_dir={out}",
        "heads=[overall,helpfulness]", "model.pooling=cls", "data.eval_fraction=0.3", "data.max_length=64", "train.batch_size=4",
        "train.max_steps=3", "train.eval_every=null", "train.save_every=null", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    return out


def test_rm_card_has_hub_metadata(minilm_rm):
    from huggingface_hub import ModelCard

    card = ModelCard.load(minilm_rm / "model" / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["license"] == "apache-2.0"  # inherited from the base
    assert data["pipeline_tag"] == "text-classification"
    assert {"reward-model", "rlhf", "rewardlab"} <= set(data["tags"])
    metrics = json.loads((minilm_rm / "metrics.json").read_text())
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["pairwise accuracy (held-out)"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert "pairwise accuracy, head helpfulness (held-out)" in results
    # the card's snippet, run on the folder, prints what rewardlab scores
    from rewardlab.scoring import RewardScorer

    code = card.text.split("```python\n")[1].split("```")[0]
    code = code.replace("<your-name>/run", str(minilm_rm / "model")).replace("print(", "result = (")
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - our own card's snippet
    ours = RewardScorer.from_path(minilm_rm).score(
        ["How do I reset my router?"], ["Unplug it for 30 seconds, then plug it back in."]
    )
    assert scope["result"]["helpfulness"] == pytest.approx(float(ours[0, 1]), abs=1e-5)
    assert '"lr": 0.0001' in card.text  # hyperparameters (the shipped config's)
    fingerprint = json.loads((minilm_rm / "manifest.json").read_text())["data"]["train_fingerprint"]
    assert fingerprint in card.text


def test_export_rm_head_loads_like_trl_and_scores_the_same(minilm_rm, tmp_path, cli):
    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardlab.scoring import RewardScorer

    out = tmp_path / "helpfulness"
    res = cli("export", "rm", minilm_rm, "--head", "helpfulness", "--out", out, "--json")
    assert res.exit_code == 0, res
    assert res.json()["index"] == 1 and res.json()["heads"] == ["overall", "helpfulness"]
    # As TRL's GRPO / RLOO load `reward_funcs=path` (and RewardTrainer a reward model): num_labels=1.
    single = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert single.config.num_labels == 1 and single.config.id2label == {0: "helpfulness"}
    prompts = ["What is 2 + 2?", "Name a colour.", "What is 9 + 1?"]
    answers = ["2 + 2 = 4.", "Blue.", "I don't know. Figure it out yourself."]
    full = RewardScorer.from_path(minilm_rm).score(prompts, answers)
    for n, (p, a) in enumerate(zip(prompts, answers)):
        msgs = [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
        enc = tok(tok.apply_chat_template(msgs, tokenize=False), return_tensors="pt")  # BERT: [CLS] .. [SEP]
        with torch.no_grad():
            assert single(**enc).logits.shape == (1, 1)
            assert float(single(**enc).logits[0, 0]) == pytest.approx(float(full[n, 1]), abs=1e-5)
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "**Exported head:** `helpfulness` (output 1 of 2" in card.text
    # a pooling transformers cannot apply (mean) would score differently once exported: refused, exit 2
    import shutil

    mean_rm = tmp_path / "mean-rm"
    shutil.copytree(minilm_rm / "model", mean_rm)
    config = json.loads((mean_rm / "config.json").read_text())
    (mean_rm / "config.json").write_text(json.dumps({**config, "rewardlab_pooling": "mean"}))
    res = cli("export", "rm", mean_rm, "--head", "overall", "--out", tmp_path / "m")
    assert res.exit_code == 2 and "pools 'mean'" in res.stderr and not (tmp_path / "m").exists()
    # an unknown head is bad input: exit 2, one line naming the heads
    res = cli("export", "rm", minilm_rm, "--head", "harmlessness", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "overall, helpfulness" in res.stderr
    assert not (tmp_path / "x").exists()


def test_policy_card_metadata(tmp_path, cli):
    from huggingface_hub import ModelCard

    demo = tmp_path / "demos.jsonl"
    demo.write_text("\n".join(json.dumps({"prompt": f"{i}?", "response": f"{i}."}) for i in range(4)) + "\n")
    run = tmp_path / "sft"
    res = cli("train", "sft", ROOT / "configs/sft/tiny.yaml", f"data.train={demo}", "sft.demonstrations=file",
              f"output_dir={run}", "train.max_steps=1", "train.batch_size=4", "card.license=mit", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    card = ModelCard.load(run / "model" / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "mit"  # offline:tiny-llama has no hub id: the config key
    assert "base_model" not in data  # nothing to link to, and no internal alias pretending to be one
    assert data["pipeline_tag"] == "text-generation" and {"sft", "rlhf", "rewardlab"} <= set(data["tags"])
    assert "AutoModelForCausalLM" in card.text and "`offline:tiny-llama` (no hub id known)" in card.text


def test_card_base_model_maps_offline_sources_and_follows_local_lineage(tmp_path):
    from huggingface_hub import ModelCard

    from rewardlab import cards
    from rewardlab.config import DPOConfig

    cfg = DPOConfig(output_dir=str(tmp_path / "dpo"))
    cfg.model.name_or_path = "offline:smollm2-135m-instruct"
    card = cards.build_card("dpo", cfg, {"eval_loss": 0.5, "train_loss": 0.6})
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.license == "apache-2.0" and "dpo" in card.data.tags
    assert [r.metric_type for r in card.data.eval_results] == ["loss"]  # train_loss is not an eval metric
    # a policy started from that folder links to the same hub base; a new stage gets a valid card too
    card.save(tmp_path / "dpo" / "README.md")
    rs = cards.build_card("rs", {"model": {"name_or_path": str(tmp_path / "dpo")}})
    assert rs.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "rejection-sampling" in rs.data.tags
    assert ModelCard(str(rs)).data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_trl_grpo_trains_with_the_exported_head_as_reward_funcs_path(minilm_rm, tmp_path, cli):
    """The issue's failure: TRL's GRPO with `reward_funcs=<folder>` on a 2-head RM (size mismatch)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rewardlab import models

    out = tmp_path / "overall"
    assert cli("export", "rm", minilm_rm, "--head", "overall", "--out", out).exit_code == 0
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), max_steps=1, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=6, report_to="none", use_cpu=True, bf16=False, dataloader_pin_memory=False,
        save_strategy="no", logging_steps=1, disable_tqdm=True,
    )  # fmt: skip
    prompts = Dataset.from_list([{"prompt": f"What is {i} + 1?"} for i in range(4)])
    trainer = GRPOTrainer(
        model=models.resolve("offline:tiny-llama"), reward_funcs=str(out), args=args, train_dataset=prompts
    )
    trainer.train()
    logged = next(r for r in trainer.state.log_history if "rewards/overall/mean" in r)
    assert math.isfinite(logged["rewards/overall/mean"])  # the RM scored the completions


def test_card_lists_hub_datasets_through_an_aggregation(tmp_path):
    from rewardlab import cards
    from rewardlab.config import RMConfig

    write_dataset([], tmp_path / "imported", extra_meta={"hub_datasets": ["Anthropic/hh-rlhf"]})
    write_dataset([], tmp_path / "agg", extra_meta={"aggregated_from": str(tmp_path / "imported")})
    card = cards.build_card("rm", RMConfig(), {"accuracy": 0.7}, {"train": str(tmp_path / "agg")})
    assert card.data.datasets == ["Anthropic/hh-rlhf"]
    assert card.data.eval_results[0].dataset_type == "Anthropic/hh-rlhf"
    assert card.data.license is None  # offline:tiny-rm: no known base license and no card.license
