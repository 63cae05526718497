"""train.gradient_checkpointing (issue 30 item 3): the same losses with and without, in the rm loop, a TRL
stage (sft) and under LoRA; the memory it saves is measured by scripts/bench_checkpointing.py."""

from __future__ import annotations

import pytest
from _policy_setup import DATA, ROOT, read_jsonl


def _losses(cli, stage: str, run, *extra: str) -> list[float]:
    res = cli("train", stage, ROOT / f"configs/{stage}/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              "train.max_steps=3", "train.batch_size=4", "train.seed=0", "train.log_every=1", *extra)  # fmt: skip
    assert res.exit_code == 0, res
    return [r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("stage", ["rm", "sft"])
def test_same_losses_with_checkpointing(cli, tmp_path, stage, monkeypatch):
    from transformers import PreTrainedModel

    enabled = []
    real = PreTrainedModel._set_gradient_checkpointing

    def spy(self, enable=True, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        enabled.append(enable)
        return real(self, enable, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "_set_gradient_checkpointing", spy)
    off = _losses(cli, stage, tmp_path / "off")
    assert True not in enabled  # off by default (TRL's own default of true is overridden)
    on = _losses(cli, stage, tmp_path / "on", "train.gradient_checkpointing=true")
    assert True in enabled  # the layers really recomputed in the second run
    assert len(off) == 3 and on == pytest.approx(off, rel=1e-5, abs=1e-7)


def test_checkpointing_is_on_in_the_model_and_lora_grads_match():
    import torch

    from rewardlab import models
    from rewardlab.recipes.policy_common import checkpointing_args

    args = checkpointing_args(True)
    assert True in args.values() and {"use_reentrant": False} in args.values()
    assert not any(v is True for v in checkpointing_args(False).values())

    def grads(checkpointing: bool) -> tuple[float, list]:
        torch.manual_seed(0)
        model = models.build_reward_model("offline:tiny-rm", lora={"r": 4, "alpha": 8, "dropout": 0.0})
        if checkpointing:
            models.enable_checkpointing(model)
            assert model.base_model.model.model.gradient_checkpointing  # the decoder's layers recompute
        model.train()
        ids = torch.randint(5, 200, (2, 12))
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum()
        out.backward()
        return out.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    loss_off, g_off = grads(False)
    loss_on, g_on = grads(True)
    assert loss_on == pytest.approx(loss_off, rel=1e-6)
    assert len(g_on) == len(g_off) > 2 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_on, g_off))
    assert any(float(g.abs().sum()) > 0 for g in g_on)  # the LoRA weights got a gradient
