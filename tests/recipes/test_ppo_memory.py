"""PPO's memory options (issue 30): the LoRA reference is the policy with its adapter off, the value model
can be a second adapter on the policy's base, the RM loads in bf16 in a bf16 run. Each gives the same
function as the copy it replaces, or trains and resumes like the separate model."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from _policy_setup import read_jsonl, untrained_rm
from safetensors.torch import load_file
from test_policy_ppo import ppo_args

from rewardlab import config, models
from rewardlab.errors import UserError
from rewardlab.recipes import ppo

LORA = "model.lora={r: 4, alpha: 8, dropout: 0.0}"


def _cfg(*overrides: str) -> config.PPOConfig:
    return config.load(None, ["stage=ppo", *overrides])


def test_lora_reference_is_the_policy_with_its_adapter_disabled():
    """Same log-probs as a separate frozen copy (to float rounding), with no second model."""
    torch.manual_seed(0)
    policy = models.build_policy("offline:tiny-llama", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    with torch.no_grad():  # a trained-looking adapter: lora_B away from its zero init
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    copy = models.build_reference("offline:tiny-llama")
    ids = torch.randint(3, 200, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    cfg = _cfg(LORA)
    ctx = SimpleNamespace(cfg=cfg, reference=ppo.build_reference(cfg, []))
    assert ctx.reference is None  # LoRA: no copy
    with torch.no_grad():
        shared = ppo.reference_logprobs(ctx, policy, ids, mask, 5)
        separate = ppo.reference_logprobs(SimpleNamespace(cfg=cfg, reference=copy), policy, ids, mask, 5)
        tuned = ppo.policy_logprobs(policy, ids, mask, 5, 1.0)[0]
    torch.testing.assert_close(shared, separate, atol=1e-5, rtol=0)
    assert (tuned - separate).abs().max() > 1e-2  # the adapter does change the policy: the check can fail
    assert ppo.build_reference(_cfg(LORA, "ppo.reference_copy=true"), []) is not None


def test_reward_model_dtype_follows_the_run():
    assert ppo.reward_model_dtype(_cfg()) == "float32"
    assert ppo.reward_model_dtype(_cfg("train.bf16=true")) == "bfloat16"
    assert ppo.reward_model_dtype(_cfg("model.dtype=bfloat16")) == "bfloat16"
    assert ppo.reward_model_dtype(_cfg("train.bf16=true", "ppo.reward_model_dtype=float32")) == "float32"


def test_value_adapter_is_refused_without_lora_or_beside_a_value_model(cli, tmp_path):
    res = cli(*ppo_args(tmp_path / "x", tmp_path / "no-rm", "ppo.value_backbone=adapter"))
    assert res.exit_code == 2 and "set model.lora" in res.stderr
    res = cli(*ppo_args(tmp_path / "x", tmp_path / "no-rm", "ppo.value_backbone=adapter", LORA,
                        "ppo.value_model=somewhere"))  # fmt: skip
    assert res.exit_code == 2 and "ppo.value_model=somewhere" in res.stderr


def test_value_adapter_trains_and_resumes_exactly(cli, tmp_path):
    """Two steps straight vs one step, a checkpoint, and a resumed second step: the same final policy; the
    value adapter and head moved off their zero init; the RM scored in bf16 under autocast (train.bf16)."""
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    common = [LORA, "ppo.value_backbone=adapter", "train.bf16=true", "train.lr_scheduler=constant",
              "train.seed=5", "train.save_every=1", "ppo.ppo_epochs=1", "ppo.max_new_tokens=6"]  # fmt: skip
    straight = tmp_path / "straight"
    res = cli(*ppo_args(straight, rm, "train.max_steps=2", *common), "--json")
    assert res.exit_code == 0, res
    manifest = json.loads((straight / "manifest.json").read_text())
    assert manifest["value_model"] == "policy adapter 'value'"
    assert any("adapter disabled" in note for note in manifest["notes"])
    ckpt = straight / "checkpoints" / "step-00000002"
    value_lora = load_file(str(ckpt / "policy" / "value" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in value_lora.items())  # trained from zero
    assert load_file(str(ckpt / "value" / "model.safetensors"))["head.weight"].abs().max() > 0
    # resume: a copy of the run cut back to its step-1 checkpoint, then trained to step 2 again
    split = tmp_path / "split"
    shutil.copytree(straight, split, ignore=shutil.ignore_patterns("step-00000002", "model", "metrics.json"))
    res = cli(*ppo_args(split, rm, "train.max_steps=2", "train.resume=true", *common))
    assert res.exit_code == 0, res
    assert "resumed from step-00000001" in res.stderr
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(split / "model" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    rows = read_jsonl(split / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert (
        rows[1]["value/loss"]
        == next(r for r in read_jsonl(straight / "metrics.jsonl") if r["step"] == 2)["value/loss"]
    )


def test_adapter_value_model_owns_only_its_head_and_keeps_both_adapters_trainable():
    policy = models.build_policy("offline:tiny-llama", lora={"r": 4, "alpha": 8})
    value = ppo.build_adapter_value_model(policy, {"r": 4, "alpha": 8})
    assert [n for n, _ in value.named_parameters()] == ["inner.head.weight", "inner.head.bias"]
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert any(".default." in n for n in trainable) and any(".value." in n for n in trainable)
    ids = torch.randint(3, 200, (2, 7), generator=torch.Generator().manual_seed(0))
    values = value(ids, torch.ones_like(ids), torch.arange(7).expand(2, 7))
    assert values.shape == (2, 7) and values.abs().max() == 0  # zero head: V = 0 at the start
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == trainable  # set_adapter undone
    assert policy.active_adapter == "default"


def test_ppo_logprob_chunk_gives_the_full_computation_on_a_model():
    """ppo.logprob_chunk (chunked, default) and null (the whole micro-batch in float32) agree on a real
    forward: log-probs, their gradient and the entropy."""
    torch.manual_seed(0)
    policy = models.build_policy("offline:tiny-llama")
    ids = torch.randint(3, 200, (3, 11), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    results = []
    for chunk in (None, 4):
        policy.zero_grad()
        logp, entropy = ppo.policy_logprobs(policy, ids, mask, 4, 0.8, True, chunk)
        logp.sum().backward()
        grad = policy.get_input_embeddings().weight.grad.clone()
        results.append((logp.detach(), entropy, grad))
    (a, ea, ga), (b, eb, gb) = results
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(ea, eb, atol=1e-5, rtol=0)
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
    assert ga.abs().max() > 0


def test_saved_policy_merges_the_policy_adapter_only():
    """save_policy's merge_and_unload merges the active (policy) adapter and drops the value adapter."""
    torch.manual_seed(0)
    policy = models.build_policy("offline:tiny-llama", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    ppo.build_adapter_value_model(policy, {"r": 4, "alpha": 8})
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    ids = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = policy(input_ids=ids).logits
        with ppo.active_adapter(policy, ppo.VALUE_ADAPTER):
            other = policy(input_ids=ids).logits
        merged = policy.merge_and_unload()
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert (other - want).abs().max() > 1e-2  # the value adapter is a different function
    assert not [k for k in merged.state_dict() if "lora" in k]


def test_value_adapter_is_refused_on_several_processes():
    ppo.refuse_value_adapter_distributed(SimpleNamespace(num_processes=1))  # one process: fine
    with pytest.raises(UserError, match="ppo.value_backbone=adapter runs on one process"):
        ppo.refuse_value_adapter_distributed(SimpleNamespace(num_processes=2))
