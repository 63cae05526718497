"""The shared conversation encoder: same ids as a plain tokenizer call, left truncation of prompts."""

from __future__ import annotations

import pytest

from rewardlab import models
from rewardlab.scoring import encode_conversations, head_names


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("offline:tiny-rm")


def test_untruncated_ids_equal_a_plain_tokenizer_call(tok):
    prompt, response = "What is 2 + 2?", "2 + 2 = 4."
    enc = encode_conversations(tok, [prompt], [response], max_length=256)
    text = models.format_conversation(tok, prompt, response)
    assert enc.ids[0] == tok(text, add_special_tokens=False)["input_ids"]
    assert enc.prompt_truncated == [False] and enc.response_truncated == [False]


def test_long_prompt_is_cut_from_the_left_and_the_response_survives(tok):
    prompt = "Tell me. " * 30 + "What is 2 + 2?"
    response = "2 + 2 = 4. The answer is 4."
    enc = encode_conversations(tok, [prompt], [response], max_length=24)
    ids = enc.ids[0]
    assert len(ids) == 24
    assert enc.prompt_truncated == [True] and enc.response_truncated == [False]
    text = tok.decode(ids)
    assert text.endswith(response + tok.eos_token)
    assert "What is 2 + 2?" in text  # the end of the prompt is kept, its start is gone
    assert text.startswith(tok.bos_token)  # leading special tokens survive


def test_response_longer_than_max_length_is_cut_on_the_right(tok):
    response = "The answer is 4. " * 40
    enc = encode_conversations(tok, ["Hi"], [response], max_length=20)
    assert len(enc.ids[0]) == 20
    assert enc.prompt_truncated == [True] and enc.response_truncated == [True]
    text = tok.decode(enc.ids[0])
    assert "The answer is 4" in text and text.endswith(tok.eos_token)


def test_prompt_cap_keeps_the_latest_prompt_tokens_even_when_everything_fits(tok):
    prompt = "First turn, long ago. " * 10 + "What is 2 + 2?"
    response = "2 + 2 = 4."
    full = encode_conversations(tok, [prompt], [response], max_length=512).ids[0]
    enc = encode_conversations(tok, [prompt], [response], max_length=512, max_prompt_length=8)
    ids = enc.ids[0]
    assert enc.prompt_truncated == [True] and enc.response_truncated == [False]
    assert len(ids) < len(full)
    text = tok.decode(ids)
    assert "2 + 2?" in text and "long ago" not in text and text.endswith(response + tok.eos_token)
    short = encode_conversations(tok, ["Hi"], [response], max_length=512, max_prompt_length=8)
    assert short.prompt_truncated == [False]  # a prompt within the cap is untouched


def test_encoder_tokenizer_keeps_cls_and_sep():
    bert = models.load_tokenizer("offline:minilm-l6")
    enc = encode_conversations(bert, ["why " * 50], ["because it is so."], max_length=16)
    ids = enc.ids[0]
    assert len(ids) == 16 and ids[0] == bert.cls_token_id and ids[-1] == bert.sep_token_id
    assert bert.decode(ids[1:-1]).endswith("because it is so.")


def test_head_names_from_config():
    class C:
        num_labels = 2
        id2label = {0: "overall", 1: "safety"}

    assert head_names(C()) == ["overall", "safety"]
    C.rewardlab_heads = ["a", "b"]
    assert head_names(C()) == ["a", "b"]

    class D:
        num_labels = 1
        id2label = {0: "LABEL_0"}

    assert head_names(D()) == ["overall"]
