"""Learning rates by depth (`optim.head_lr_scale`, `optim.layer_lr_decay`): the groups by hand on a small
model, and a real RM run in which a near-zero decay leaves the embeddings where they were."""

from __future__ import annotations

import pytest

from rewardlab import models
from rewardlab.param_groups import depth_of, layerwise_param_groups


def test_depths_from_names():
    assert depth_of("model.embed_tokens.weight", "score", 2) == 0
    assert depth_of("bert.embeddings.word_embeddings.weight", "classifier", 6) == 0
    assert depth_of("bert.encoder.layer.0.attention.self.query.weight", "classifier", 6) == 1
    assert depth_of("model.layers.1.mlp.up_proj.weight", "score", 2) == 2
    assert depth_of("transformer.h.11.attn.c_attn.weight", "score", 12) == 12
    assert depth_of("model.norm.weight", "score", 2) == 3  # above the last layer
    assert depth_of("score.weight", "score", 2) is None
    assert depth_of("base_model.model.classifier.modules_to_save.default.weight", "classifier", 6) is None


def test_groups_by_hand():
    model = models.build_reward_model("offline:tiny-rm")  # 2 layers, head `score`
    head = models.score_head_name(model)
    plain = layerwise_param_groups(model, 1e-3, head)
    assert len(plain) == 1 and "lr" not in plain[0]  # the optimizer's lr: exactly the old recipe
    groups = layerwise_param_groups(model, 1e-3, head, head_lr_scale=10.0, layer_lr_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["score.weight"])] == pytest.approx(1e-2)
    assert lr_of[id(named["model.norm.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["model.layers.1.mlp.up_proj.weight"])] == pytest.approx(1e-3)  # top layer
    assert lr_of[id(named["model.layers.0.mlp.up_proj.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["model.embed_tokens.weight"])] == pytest.approx(2.5e-4)
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)  # none lost, none twice


def test_decay_holds_the_embeddings_still(tmp_path, cli, arithmetic_pairs):
    """An RM run with a near-zero decay: the head moves, the embeddings (lr 1e-3 * 1e-6^2) do not."""
    from transformers import AutoModelForSequenceClassification

    arithmetic_pairs(tmp_path / "ds", 16)
    out = tmp_path / "rm"
    result = cli(
        "train", "rm", "configs/rm/tiny.yaml", f"data.train={tmp_path / 'ds'}", "heads=[overall]",
        "train.batch_size=4", "train.max_steps=3", "data.eval_fraction=0.25", f"output_dir={out}",
        "optim.layer_lr_decay=1e-6", "optim.head_lr_scale=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    base = models.build_reward_model("offline:tiny-rm")
    trained = AutoModelForSequenceClassification.from_pretrained(out / "model")
    emb = "model.embed_tokens.weight"
    moved = (trained.state_dict()[emb] - base.state_dict()[emb]).abs().max().item()
    assert moved < 1e-7
    top = "model.layers.1.mlp.up_proj.weight"
    assert (trained.state_dict()[top] - base.state_dict()[top]).abs().max().item() > 1e-4
