"""Batched generation for every sampler (PPO rollouts, GRPO/RLOO's generation config, `eval policy`,
`sample`, `train rs`): the stop tokens, the generation config, prompt encoding with left padding, seeded
exact sampling, decoding up to the first stop token.

Why one module below eval and the recipes: a sampler that stops, pads or samples differently from another
would make training and evaluation quietly disagree.
"""

from __future__ import annotations

from typing import Any

from rewardlab.data.policy_data import Prompt
from rewardlab.errors import UserError


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template writes right after an assistant message, if any.

    Instruct models often end a turn on another token than ``eos_token`` (Llama 3 ``<|eot_id|>``, Gemma
    ``<end_of_turn>``, Phi-3 ``<|end|>``): a sampler that stops only on eos runs on to the length limit.
    Found by rendering a one-turn conversation and reading the first token after the answer.
    """
    from rewardlab import models

    marker = "Sure thing"
    try:
        text = models.format_conversation(tokenizer, "Hi", marker)
    except Exception:  # noqa: BLE001 - a template that cannot render a plain chat has no usable marker
        return None
    at = text.rfind(marker)
    if at < 0:
        return None
    suffix = text[at + len(marker) :].lstrip(" ")
    if not suffix:
        return None
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {
        int(i) for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if tok.special
    }
    return int(ids[0]) if ids and ids[0] in special else None


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Every token that ends an answer: the tokenizer's eos, the model's generation-config eos (an int or a
    list) and the chat template's end-of-turn token. Sampling, masking and decoding all use this list."""
    ids: list[int] = []

    def add(value: Any) -> None:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))

    add(tokenizer.eos_token_id)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        add(gen.eos_token_id)
    add(end_of_turn_id(tokenizer))
    if not ids:
        raise UserError(f"tokenizer of {tokenizer.name_or_path}: no eos or end-of-turn token to stop on")
    return ids


def set_stop_tokens(model: Any, tokenizer: Any) -> list[int]:
    """Write the stop ids into the model's generation config (what TRL's GRPO/RLOO stop on); returns them."""
    ids = stop_token_ids(tokenizer, model)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = ids
    return ids


def generation_config(
    tokenizer: Any,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_ids: list[int] | None = None,
) -> Any:
    """A fresh GenerationConfig so no model default (top_k=50, repetition penalty) changes the sampler.

    ``stop_ids`` (``stop_token_ids``; default: the tokenizer's eos and the template's end-of-turn token)
    end generation. PPO computes its log-probs from softmax(logits / temperature), so it refuses
    top-k/top-p: sampling uses exactly the distribution it scores.
    """
    from transformers import GenerationConfig

    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "eos_token_id": list(stop_ids or stop_token_ids(tokenizer)),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "use_cache": True,
        # transformers fills every field left unset here from the model's own generation_config.json (a hub
        # model's repetition_penalty 1.1 would tilt the sampler away from the distribution we score): pin them
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_new_tokens": 0,
    }
    if do_sample:
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    return GenerationConfig(**kwargs)


def encode_prompts(tokenizer: Any, prompts: list[Prompt], max_length: int) -> tuple[Any, Any]:
    """Chat-formatted prompts as left-padded (input_ids, attention_mask); long prompts keep their end."""
    import torch

    from rewardlab import models

    texts = [models.format_prompt(tokenizer, p) for p in prompts]
    add_special = not (tokenizer.bos_token and texts and texts[0].startswith(tokenizer.bos_token))
    ids = [tokenizer(t, add_special_tokens=add_special)["input_ids"][-max_length:] for t in texts]
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return input_ids, mask


def generate(
    model: Any, tokenizer: Any, input_ids: Any, attention_mask: Any, gen_config: Any, **kwargs: Any
) -> Any:
    """Response token ids [batch, new_tokens] (KV cache on; everything after the first EOS is padding).
    ``kwargs`` go to ``model.generate`` (``logits_processor``, ``synced_gpus``)."""
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_config, **kwargs
        )
    return out[:, input_ids.shape[1] :]


def generate_with_logits(
    model: Any, tokenizer: Any, input_ids: Any, attention_mask: Any, gen_config: Any
) -> tuple[Any, Any]:
    """Response token ids [batch, new_tokens] and the model's raw next-token logits at each generated
    position [batch, new_tokens, vocab] (before temperature, top-k, top-p): the distribution every token
    was drawn from at temperature 1, read from the sampler itself instead of a second forward pass."""
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=gen_config,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return out.sequences[:, input_ids.shape[1] :], torch.stack(out.logits, 1)


def seeded_sampling(
    seeds: list[int], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, noise: str = "generator"
) -> Any:
    """A logits processor that samples each row from its own random stream (Gumbel-max), for greedy ``generate``.

    ``generate(do_sample=True)`` draws every row's token from one global RNG, so a prompt's answer depends on
    which other prompts share its batch and process. Here row i adds Gumbel noise from a stream keyed by
    ``seeds[i]`` to its warped logits (temperature, then top-k, top-p: the same distribution as sampling),
    and greedy decoding takes the argmax: an exact sample that depends only on the prompt and its seed.
    Seeded from the prompt's global position, rollouts are the same on 1 process or N.

    ``noise``: ``generator`` (default) keeps one ``torch.Generator`` per row *on the logits' device* and
    fills that row's noise there; on CPU the draws are bit-identical to the sampler before 2026-12 (CPU
    generators, then a copy to the device), on a GPU nothing vocabulary-sized crosses from the host (a
    CUDA generator's stream differs from a CPU one's, so a GPU run samples other, equally valid answers).
    ``counter`` hashes (seed, decode step, vocabulary index) with integer ops on the device
    (``counter_uniform``): one vectorised pass for the whole batch and the same bits on every device, at
    ~4x the generators' CPU cost (scripts/bench_sampler.py compares them on the machine at hand).
    """
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    if noise not in ("generator", "counter"):
        raise ValueError(f"unknown sampling noise '{noise}' (generator or counter)")
    warpers = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))

    class PerRowGumbel(LogitsProcessor):
        def __init__(self) -> None:
            self.seeds = [int(s) % 2**64 for s in seeds]
            self.step = 0  # decode steps seen: generate calls the processor once per new token
            self.generators: list[Any] | None = None  # made on the first call, on the logits' device

        def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204 - HF signature
            scores = scores.float()
            for warp in warpers:
                scores = warp(input_ids, scores)
            if noise == "counter":
                u = counter_uniform(self.seeds, self.step, scores.shape[1], scores.device)
                self.step += 1
                return scores + u.log_().neg_().log_().neg_()  # Gumbel(0, 1) = -log(-log u), in place
            if self.generators is None:
                self.generators = [
                    torch.Generator(device=scores.device).manual_seed(s % 2**63) for s in self.seeds
                ]
            u = torch.empty_like(scores)
            for row, gen in enumerate(self.generators):
                u[row].uniform_(generator=gen)  # = torch.rand(vocab, generator=gen), in place
            return scores - u.clamp_(min=1e-20).log_().neg_().log_()

    return LogitsProcessorList([PerRowGumbel()])


_MASK32 = 0xFFFFFFFF


def _mul32(x: Any, m: int) -> Any:
    """x * m mod 2**32 for 0 <= x < 2**32 held in int64, in place and without int64 overflow: a multiplier
    above 2**31 is replaced by m - 2**32 (the same residue), so |product| < 2**63 on every device."""
    return x.mul_(m if m < 2**31 else m - 2**32).bitwise_and_(_MASK32)


def _mix32(x: Any) -> Any:
    """lowbias32 (C. Wellons' hash prospector): a bijection of 32-bit integers whose output bits each flip
    with probability ~1/2 when any input bit flips; in place on int64 values in [0, 2**32)."""
    x ^= x >> 16
    _mul32(x, 0x7FEB352D)
    x ^= x >> 15
    _mul32(x, 0x846CA68B)
    x ^= x >> 16
    return x


def _splitmix64(z: int) -> int:
    """SplitMix64's finaliser on Python ints: turns (seed, step) into a well-mixed 64-bit row key."""
    z = (z + 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


def counter_uniform(seeds: list[int], step: int, vocab: int, device: Any) -> Any:
    """Uniform(0, 1) noise [len(seeds), vocab] in float32 on ``device``, a pure function of (seed, step,
    vocabulary index): row r's values never depend on the other rows, the batch size or the device.

    Each row's key is SplitMix64 of (seed, step) on the host (a few Python ints); the vocabulary index is then
    hashed with the key's two 32-bit halves by two rounds of a 32-bit integer hash on the device (xor with
    the key, mix): one vectorised pass, nothing vocabulary-sized crosses from the host. 23 bits per value:
    u = (h + 0.5) / 2**23 with h < 2**23 is exact in float32 (24 bits would round h + 0.5 up to 2**24, u = 1,
    an infinite Gumbel draw) and lies in [2**-24, 1 - 2**-24], never 0 or 1.
    """
    import torch

    keys = [_splitmix64(int(s) ^ _splitmix64(step)) for s in seeds]
    lo = torch.tensor([k & _MASK32 for k in keys], dtype=torch.int64, device=device)[:, None]
    hi = torch.tensor([k >> 32 for k in keys], dtype=torch.int64, device=device)[:, None]
    x = torch.arange(vocab, dtype=torch.int64, device=device)[None, :] ^ lo  # [rows, vocab]
    _mix32(x)
    x ^= hi
    _mix32(x)
    return (x >> 9).to(torch.float32).add_(0.5).mul_(2.0**-23)


def decode_responses(tokenizer: Any, response_ids: Any, stop_ids: int | list[int]) -> list[str]:
    """Text of each response up to (not including) its first stop token."""
    stops = {stop_ids} if isinstance(stop_ids, int) else set(stop_ids)
    texts = []
    for row in response_ids.tolist():
        cut = next((i for i, tok in enumerate(row) if tok in stops), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts


# ---------------------------------------------------------------- saving


def position_ids(attention_mask: Any) -> Any:
    """Positions that skip left padding, so a padded prompt is read like an unpadded one."""
    return (attention_mask.cumsum(1) - 1).clamp(min=0)
