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


def seeded_sampling(seeds: list[int], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Any:
    """A logits processor that samples each row from its own generator (Gumbel-max), for greedy ``generate``.

    ``generate(do_sample=True)`` draws every row's token from one global RNG, so a prompt's answer depends on
    which other prompts share its batch and process. Here row i adds Gumbel noise from a generator seeded
    with ``seeds[i]`` to its warped logits (temperature, then top-k, top-p: the same distribution as
    sampling), and greedy decoding takes the argmax: an exact sample that depends only on the prompt and its
    seed. Seeded from the prompt's global position, rollouts are the same on 1 process or N.
    """
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))

    class PerRowGumbel(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(int(s) % 2**63) for s in seeds]

        def __call__(self, input_ids, scores):  # noqa: ANN001, ANN204 - HF signature
            scores = scores.float()
            for warp in warpers:
                scores = warp(input_ids, scores)
            u = torch.stack([torch.rand(scores.shape[1], generator=g) for g in self.generators])
            gumbel = -torch.log(-torch.log(u.clamp(min=1e-20)))
            return scores + gumbel.to(scores.device)

    return LogitsProcessorList([PerRowGumbel()])


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
