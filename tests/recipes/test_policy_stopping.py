"""Stopping: a chat model whose turn ends on another token than its eos stops there, in every sampler.

The fixture is the tiny Llama with a tokenizer that ends assistant turns on a new special token ``<|end|>``
(like Llama 3's ``<|eot_id|>``), while its eos and its generation config's eos stay ``<|eos|>``. Its
weights are set so that it says ``<|end|>`` after almost any token (attention and MLP outputs zeroed, so
the last hidden state is the current token's embedding; every embedding shares one large component that
the ``<|end|>`` row of the output layer reads). Stopping only on eos, every answer would run to the length
limit; stopping on the chat template's end-of-turn token, almost none does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _policy_setup import DATA, ROOT, SHARED, read_jsonl, untrained_rm

END = "<|end|>"


def end_of_turn_model() -> Path:
    """A model folder (saved once per test process) whose chat turns end on <|end|>, not on its eos."""
    out = SHARED / "end-of-turn-model"
    if (out / "config.json").exists():
        return out
    from rewardlab import models

    tok = models.load_tokenizer("offline:tiny-llama")
    tok.add_special_tokens({"additional_special_tokens": [END]})
    assistant = "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    assert assistant in models.TINY_CHAT_TEMPLATE
    tok.chat_template = models.TINY_CHAT_TEMPLATE.replace(
        assistant, "{% generation %}{{ message['content'] + '" + END + "' }}{% endgeneration %}"
    )
    model = models.build_policy("offline:tiny-llama")
    model.resize_token_embeddings(len(tok))
    end = tok.convert_tokens_to_ids(END)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 5.0  # normalised hidden state: ~8 on dimension 0
        model.lm_head.weight[end] = 0.0
        model.lm_head.weight[end, 0] = 1.1  # logit ~8.8 against ~0 for 2000 others: P(end) ~ 0.75
    model.generation_config.eos_token_id = tok.eos_token_id  # the config names eos only, as many do
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def test_stop_ids_are_eos_generation_config_and_end_of_turn():
    from rewardlab import models
    from rewardlab.recipes import policy_common as pc

    folder = end_of_turn_model()
    tok = models.load_tokenizer(str(folder))
    model = models.build_policy(str(folder))
    end = tok.convert_tokens_to_ids(END)
    assert end != tok.eos_token_id
    assert pc.end_of_turn_id(tok) == end
    assert pc.stop_token_ids(tok, model) == [tok.eos_token_id, end]
    model.generation_config.eos_token_id = [tok.eos_token_id, 7]  # a list, as Llama 3 ships it
    assert pc.stop_token_ids(tok, model) == [tok.eos_token_id, 7, end]
    assert pc.generation_config(tok, 8, do_sample=False).eos_token_id == [tok.eos_token_id, end]
    hello = tok("hello world", add_special_tokens=False)["input_ids"]
    row = torch.tensor([[*hello, end, *hello, tok.eos_token_id]])
    assert pc.decode_responses(tok, row, [tok.eos_token_id, end]) == ["hello world"]
    # SmolLM2-style templates whose turn ends on eos itself add nothing new
    plain = models.load_tokenizer("offline:tiny-llama")
    assert pc.stop_token_ids(plain) == [plain.eos_token_id]


def test_ppo_rollouts_and_eval_stop_on_the_end_of_turn_token(cli, tmp_path):
    folder = end_of_turn_model()
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    run = tmp_path / "ppo"
    res = cli("train", "ppo", ROOT / "configs/ppo/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              f"model.name_or_path={folder}", f"ppo.reward_model={rm}", "ppo.rollout_batch_size=8",
              "ppo.mini_batch_size=8", "ppo.ppo_epochs=1", "ppo.max_new_tokens=12", "train.max_steps=1",
              "train.lr=1e-9", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    out = res.json()
    # P(no <|end|> in 12 tokens) ~ 0.25^12: stopping on eos only, eos_rate would be ~0 and lengths 12
    assert out["eos_rate_end"] == 1.0
    assert out["response_length_end"] < 4
    res = cli("eval", "policy", run, "--n", "6", "--max-new-tokens", "12", "--json")
    assert res.exit_code == 0, res
    ev = res.json()
    assert ev["stop_rate"] == 1.0 and ev["ref_stop_rate"] == 1.0
    end = json.loads((folder / "tokenizer_config.json").read_text())  # the saved tokenizer keeps <|end|>
    assert END in json.dumps(end)


@pytest.mark.parametrize("stage", ["grpo"])
def test_trl_online_trainer_stops_on_the_end_of_turn_token(cli, tmp_path, stage):
    folder = end_of_turn_model()
    rm = untrained_rm("rm-tiny", "offline:tiny-rm")
    run = tmp_path / stage
    res = cli("train", stage, ROOT / f"configs/{stage}/tiny.yaml", f"data.train={DATA}", f"output_dir={run}",
              f"model.name_or_path={folder}", f"online.reward_model={rm}", "train.max_steps=1",
              "train.batch_size=8", "online.num_generations=4", "online.max_completion_length=12",
              "train.lr=1e-9", "--json")  # fmt: skip
    assert res.exit_code == 0, res
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "completions/mean_length" in r]
    assert rows and rows[0]["completions/mean_length"] < 4  # TRL stopped at <|end|>, not at 12 tokens
