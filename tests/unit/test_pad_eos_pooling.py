"""Pad = eos cannot move the pooled token (issue 30 item 6).

Llama-3 / Mistral tokenizers have no pad token, so the loader pads with eos; transformers' own last-token
pooling skips every token equal to pad and so reads the token before the end-of-turn eos. These tests use a
tokenizer derived from offline:tiny-llama with its pad token removed and eos ending every turn.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rewardlab import models

CONVERSATIONS = [
    ("How do I reset my router?", "Unplug it for 30 seconds, then plug it back in."),
    ("What is two plus two?", "Four."),
]


@pytest.fixture(scope="module")
def no_pad_folder(tmp_path_factory):
    """offline:tiny-llama whose tokenizer has no pad token (its eos ends each turn)."""
    from transformers import AutoTokenizer

    src = models.resolve("offline:tiny-llama")
    out = tmp_path_factory.mktemp("nopad") / "model"
    shutil.copytree(src, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.pad_token = None
    tok.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config.pop("pad_token_id", None)
    (out / "config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(out).pad_token is None
    return out


def batch(tokenizer):
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
        )
        for p, r in CONVERSATIONS
    ]
    enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_reward_reads_last_real_token_when_pad_is_eos(no_pad_folder):
    torch.manual_seed(0)
    model = models.build_reward_model(str(no_pad_folder)).eval()
    tok = models.load_tokenizer(str(no_pad_folder))
    assert tok.pad_token_id == tok.eos_token_id == model.config.pad_token_id
    ids, mask = batch(tok)
    last = mask.sum(1) - 1
    assert (ids[torch.arange(2), last] == tok.eos_token_id).all()  # each turn ends in eos = pad
    assert mask[1].sum() < mask[0].sum()  # the second row is right-padded (with eos)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).logits
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = model.score(hidden[torch.arange(2), last])
        hf = type(model).forward(model, input_ids=ids, attention_mask=mask).logits  # pad-based pooling
    torch.testing.assert_close(ours, expected)
    assert (hf - ours).abs().min() > 1e-4  # transformers reads another token in every row
    assert not models.native_matches_mask(model.config)


def test_card_snippet_pools_by_mask_when_pad_is_eos(no_pad_folder, tmp_path):
    """The model card's plain-transformers lines, run as a user would paste them, give rewardlab's score."""
    from rewardlab.scoring import RewardScorer

    torch.manual_seed(0)
    model = models.build_reward_model(str(no_pad_folder))
    folder = models.save_model(model, models.load_tokenizer(str(no_pad_folder)), tmp_path / "model")
    code = models.scoring_snippet(model.config).replace('"path/to/model"', repr(str(folder)))
    prompt, response = CONVERSATIONS[0]
    code = code.replace('"How do I boil an egg?"', repr(prompt)).replace(
        '"Simmer it for 9 minutes."', repr(response)
    )
    assert "hidden = " in code  # not model(**batch), which would read the token before eos
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the card's own lines
    want = RewardScorer.from_path(folder).score([prompt], [response])[0, 0]
    assert abs(float(scope["rewards"][0, 0]) - want) < 1e-5


def test_exported_head_scores_the_same_in_plain_transformers(no_pad_folder, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardlab.commands.export import EXPORT_PAD, export_rm_head
    from rewardlab.scoring import RewardScorer

    torch.manual_seed(0)
    model = models.build_reward_model(str(no_pad_folder))
    run = models.save_model(model, models.load_tokenizer(str(no_pad_folder)), tmp_path / "run" / "model")
    result = export_rm_head(run, "overall", tmp_path / "exported")
    assert result["pad_token_added"] == EXPORT_PAD
    prompts, responses = zip(*CONVERSATIONS)
    want = RewardScorer.from_path(run).score(list(prompts), list(responses))[:, 0]
    tok = AutoTokenizer.from_pretrained(tmp_path / "exported")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported").eval()
    ids, mask = batch(tok)  # right-padded with the export's own pad token
    with torch.no_grad():
        got = plain(input_ids=ids, attention_mask=mask).logits[:, 0].numpy()
    assert abs(got - want).max() < 1e-5
    assert "no text contains" in (tmp_path / "exported" / "README.md").read_text()
