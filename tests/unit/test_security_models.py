"""Model loading is safe by default: pickle weights and a folder's own Python code are refused (exit 2, a
one-line message naming the folder and the key to set) unless the config allows them.

These run the real CLI in-process on tiny models: the refusals return before any training, the accepted
runs train 1-2 steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rewardlab import models
from rewardlab.data.simulate import simulate_campaign, write_campaign

ROOT = Path(__file__).resolve().parents[2]


def pickled_copy(source: str, out: Path) -> Path:
    """A copy of an offline model whose weights are a pickle (pytorch_model.bin), no safetensors: what
    `save_pretrained(safe_serialization=False)` wrote before transformers 5 dropped that option."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(models.resolve(source), out)
    torch.save(load_file(out / "model.safetensors"), out / "pytorch_model.bin")
    (out / "model.safetensors").unlink()
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("security-models")
    from rewardlab import config as cfglib

    records, truth = simulate_campaign(
        cfglib.load(ROOT / "configs/simulate/default.yaml", ["prompts=16", "raters=3"])
    )
    write_campaign(records, truth, root / "data")
    return {
        "root": root,
        "data": root / "data",
        "rm": pickled_copy("offline:tiny-rm", root / "pickled-rm"),
        "policy": pickled_copy("offline:tiny-llama", root / "pickled-policy"),
    }


def train_rm(cli, setup, out: Path, *extra: str):
    return cli("train", "rm", ROOT / "configs/rm/tiny.yaml", f"output_dir={out}", f"data.train={setup['data']}",
               "train.max_steps=2", *extra)  # fmt: skip


def test_train_rm_refuses_pickle_weights_unless_allowed(cli, setup, tmp_path):
    refused = train_rm(cli, setup, tmp_path / "no", f"model.name_or_path={setup['rm']}")
    assert refused.exit_code == 2, refused
    message = refused.stderr.strip().splitlines()[-1]
    assert "pytorch_model.bin" in message and str(setup["rm"]) in message
    assert "model.allow_pickle=true" in message
    assert not (tmp_path / "no" / "model").exists()

    ok = train_rm(
        cli, setup, tmp_path / "yes", f"model.name_or_path={setup['rm']}", "model.allow_pickle=true"
    )
    assert ok.exit_code == 0, ok
    saved = {p.name for p in (tmp_path / "yes" / "model").iterdir()}
    assert "model.safetensors" in saved and not {"pytorch_model.bin"} & saved  # we only write safetensors


def test_score_refuses_pickle_reward_model_unless_flag(cli, setup, tmp_path):
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"prompt": "How do I fix my router?", "response": "Restart it."}) + "\n")
    args = ("score", setup["rm"], "--input", rows, "--output", tmp_path / "out.jsonl")
    refused = cli(*args)
    assert refused.exit_code == 2 and "--allow-pickle" in refused.stderr, refused
    assert not (tmp_path / "out.jsonl").exists()
    ok = cli(*args, "--allow-pickle")
    assert ok.exit_code == 0, ok
    assert "rewards" in json.loads((tmp_path / "out.jsonl").read_text())


def test_train_dpo_refuses_pickle_policy_unless_allowed(cli, setup, tmp_path):
    base = ("train", "dpo", ROOT / "configs/dpo/tiny.yaml", f"data.train={setup['data']}",
            f"model.name_or_path={setup['policy']}", "train.max_steps=1", "train.batch_size=4")  # fmt: skip
    refused = cli(*base, f"output_dir={tmp_path / 'no'}")
    assert refused.exit_code == 2, refused
    assert "model.allow_pickle=true" in refused.stderr and str(setup["policy"]) in refused.stderr
    ok = cli(*base, f"output_dir={tmp_path / 'yes'}", "model.allow_pickle=true")
    assert ok.exit_code == 0, ok
    assert (tmp_path / "yes" / "model" / "model.safetensors").is_file()


MARKER_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")  # proves this file ran

from torch import nn
from transformers import LlamaConfig, LlamaForSequenceClassification, LlamaModel, LlamaPreTrainedModel


class MarkerConfig(LlamaConfig):
    model_type = "marker-llama"


class MarkerModel(LlamaModel):
    config_class = MarkerConfig


class MarkerForSequenceClassification(LlamaForSequenceClassification):
    config_class = MarkerConfig

    def __init__(self, config):
        LlamaPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.model = MarkerModel(config)
        self.score = nn.Linear(config.hidden_size, self.num_labels, bias=False)
        self.post_init()
"""


def test_remote_code_runs_only_with_trust_remote_code(cli, setup, tmp_path):
    folder, marker = tmp_path / "custom-model", tmp_path / "marker"
    shutil.copytree(models.resolve("offline:tiny-rm"), folder)
    (folder / "marker_model.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "marker-llama"
    config["auto_map"] = {
        "AutoConfig": "marker_model.MarkerConfig",
        "AutoModel": "marker_model.MarkerModel",
        "AutoModelForSequenceClassification": "marker_model.MarkerForSequenceClassification",
    }
    (folder / "config.json").write_text(json.dumps(config))

    refused = train_rm(cli, setup, tmp_path / "no", f"model.name_or_path={folder}")
    assert refused.exit_code == 2, refused
    assert "model.trust_remote_code=true" in refused.stderr and str(folder) in refused.stderr
    assert not marker.exists()

    ok = train_rm(
        cli, setup, tmp_path / "yes", f"model.name_or_path={folder}", "model.trust_remote_code=true"
    )
    assert ok.exit_code == 0, ok
    assert marker.read_text() == "imported"


def test_native_model_with_leftover_auto_map_loads_without_running_its_code(tmp_path):
    """transformers uses its own class for a known model_type, so such a folder needs no trust key."""
    folder, marker = tmp_path / "native", tmp_path / "marker"
    shutil.copytree(models.resolve("offline:tiny-rm"), folder)
    (folder / "marker_model.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoModelForSequenceClassification": "marker_model.MarkerForSequenceClassification"
    }
    (folder / "config.json").write_text(json.dumps(config))
    model = models.build_reward_model(str(folder))
    assert type(model).__name__ == "LlamaForSequenceClassification" and not marker.exists()
