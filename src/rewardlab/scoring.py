"""Score prompt/response pairs with a trained reward model, exactly as training saw them.

Why one encoder shared by training and scoring: a reward model is only meaningful on inputs formatted the
way it was trained (its own tokenizer and chat format, the same special tokens, the same truncation). The
recipe (recipes/rm.py), evaluation, `rewardlab score`, PPO and sampling all call ``encode_conversations``
and ``RewardScorer`` from here, so a reward means the same thing everywhere.

Encoding rule: the full conversation text is ``models.format_conversation(tokenizer, prompt, response)``,
tokenized in one call (so a plain ``tokenizer(text)`` gives the same ids when nothing is truncated). When
the text is longer than ``max_length`` tokens, tokens are cut from the LEFT of the prompt so the response
survives; only when the response alone does not fit is it cut on its right side.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rewardlab.errors import UserError

Prompt = str | list[dict[str, str]]


@dataclass
class Encoded:
    """Token ids per conversation plus which ones were truncated (prompt cut, response cut)."""

    ids: list[list[int]]
    prompt_truncated: list[bool] = field(default_factory=list)
    response_truncated: list[bool] = field(default_factory=list)

    @property
    def n_prompt_truncated(self) -> int:
        return sum(self.prompt_truncated)

    @property
    def n_response_truncated(self) -> int:
        return sum(self.response_truncated)


def conversation_text(
    tokenizer: Any, prompt: Prompt, response: str, prompt_prefix: str | None = None
) -> tuple[str, int]:
    """The chat-formatted text and the character offset where the response part starts.

    ``prompt_prefix`` (``models.format_prompt`` of the prompt) can be passed in to avoid recomputing it
    for every response of a group.
    """
    from rewardlab import models

    text = models.format_conversation(tokenizer, prompt, response)
    if prompt_prefix is None:
        prompt_prefix = models.format_prompt(tokenizer, prompt)
    if prompt_prefix and text.startswith(prompt_prefix):
        return text, len(prompt_prefix)
    at = text.rfind(response)  # templates that rewrite the prompt part: fall back to the response itself
    return text, max(at, 0)


def _add_special_tokens(tokenizer: Any, text: str) -> bool:
    """Let the tokenizer add its special tokens ([CLS]/[SEP], BOS) unless the chat template already did."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def _truncate(
    ids: list[int],
    offsets: list,
    special: list[int],
    boundary: int,
    max_length: int,
    max_prompt_length: int | None = None,
) -> tuple[list[int], bool, bool]:
    """Cut the prompt's left tokens first, then the response's right tokens.

    ``max_prompt_length`` also keeps at most that many prompt tokens (the latest turns) even when the whole
    fits: on multi-turn data the last turns carry most of what decides between two answers, and shorter
    inputs train faster. Special tokens at either end (``special`` is 1 for [CLS]/[SEP]/BOS/role
    markers/end-of-turn) are kept, so a truncated input still starts and ends the way the model saw during
    training.
    """
    if len(ids) <= max_length and max_prompt_length is None:
        return ids, False, False
    head = 0
    while head < len(ids) and special[head]:
        head += 1
    tail = len(ids)
    while tail > head and special[tail - 1]:
        tail -= 1
    body = list(range(head, tail))
    n_prompt = sum(1 for i in body if offsets[i][0] < boundary)
    excess = len(ids) - max_length
    capped = max(0, n_prompt - max_prompt_length) if max_prompt_length is not None else 0
    if excess <= 0 and not capped:
        return ids, False, False
    cut_prompt = max(capped, min(excess, n_prompt))
    keep = body[cut_prompt:]
    excess = max(0, excess - cut_prompt)
    cut_response = excess > 0
    if cut_response:
        keep = keep[: len(keep) - excess]
    kept = ids[:head] + [ids[i] for i in keep] + ids[tail:]
    return kept, cut_prompt > 0, cut_response


def encode_conversations(
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    max_length: int,
    prompt_prefixes: Sequence[str | None] | None = None,
    max_prompt_length: int | None = None,
) -> Encoded:
    """Token ids for each (prompt, response), truncated from the left of the prompt (see module doc);
    ``max_prompt_length`` caps the prompt's tokens (its latest ones kept) whatever the total length."""
    if not getattr(tokenizer, "is_fast", True):
        raise UserError("rewardlab needs a fast (Rust) tokenizer to truncate prompts from the left")
    texts, bounds = [], []
    for n, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        prefix = prompt_prefixes[n] if prompt_prefixes is not None else None
        text, bound = conversation_text(tokenizer, prompt, response, prefix)
        texts.append(text)
        bounds.append(bound)
    out = Encoded(ids=[])
    # Texts that start with BOS and those that do not are tokenized separately (different special-token rule).
    flags = [_add_special_tokens(tokenizer, t) for t in texts]
    results: list[tuple[list[int], bool, bool] | None] = [None] * len(texts)
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for flag in (True, False):
        every = [i for i, f in enumerate(flags) if f is flag]
        # In chunks: the tokenizer's batch output (offsets, masks) dwarfs the ids it yields.
        for idx in (every[s : s + 4096] for s in range(0, len(every), 4096)):
            _encode_chunk(
                tokenizer, texts, bounds, idx, flag, (max_length, max_prompt_length), special_ids, results
            )
    for ids, cut_p, cut_r in results:  # type: ignore[misc]
        out.ids.append(ids)
        out.prompt_truncated.append(cut_p)
        out.response_truncated.append(cut_r)
    return out


def _encode_chunk(
    tokenizer: Any,
    texts: list[str],
    bounds: list[int],
    idx: list[int],
    flag: bool,
    limits: tuple[int, int | None],
    special_ids: set[int],
    results: list,
) -> None:
    """Tokenize ``texts[idx]`` with one special-token rule and store each truncated result in ``results``."""
    enc = tokenizer(
        [texts[i] for i in idx],
        add_special_tokens=flag,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        truncation=False,
    )
    for row, i in enumerate(idx):
        ids = enc["input_ids"][row]
        special = [int(m or t in special_ids) for m, t in zip(enc["special_tokens_mask"][row], ids)]
        results[i] = _truncate(list(ids), enc["offset_mapping"][row], special, bounds[i], *limits)


def pad_batch(sequences: Sequence[list[int]], pad_id: int):
    """Right-pad to the longest sequence: (input_ids, attention_mask) tensors."""
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def head_names(config: Any) -> list[str]:
    """Head names saved with a rewardlab RM (``rewardlab_heads``, else id2label, else 'overall')."""
    names = getattr(config, "rewardlab_heads", None)
    if names:
        return list(names)
    n = int(getattr(config, "num_labels", 1) or 1)
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label.get(i, id2label.get(str(i))) for i in range(n)]
    if n == 1 and (not labels[0] or str(labels[0]).startswith("LABEL_")):
        return ["overall"]
    return [str(lbl) if lbl else f"head_{i}" for i, lbl in enumerate(labels)]


def resolve_model_dir(path: str | Path) -> Path:
    """A run folder (with model/) or a model folder -> the model folder."""
    p = Path(path)
    if (p / "model" / "config.json").is_file():
        return p / "model"
    if (p / "config.json").is_file():
        return p
    raise UserError(
        f"{path}: not a reward model folder or RM run folder (no config.json or model/config.json)"
    )


class RewardScorer:
    """A loaded reward model: ``score(prompts, responses) -> numpy [n, n_heads]`` in the RM's own format.

    Attributes: ``heads`` (names, head 0 is 'overall'), ``tokenizer``, ``model``, ``max_length``,
    ``max_prompt_length`` (the prompt cap the RM trained with, or None), ``reward_mean``/``reward_std`` (head 0, from training responses; None when absent) and
    ``reward_means``/``reward_stds`` (per head lists or None), ``device``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int = 512,
        device: Any = "cpu",
        max_prompt_length: int | None | Literal["saved"] = "saved",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = int(max_length)
        cfg = model.config
        # "saved": a loaded RM trained on prompts cut to N tokens scores them cut the same way (its saved config
        # says N). A run scoring the model it trains passes its own setting, None (uncapped) included: an RM
        # started from one that saved a cap, trained on whole prompts, must not be evaluated, calibrated and
        # given its reward mean/std on prompts cut to the old cap (issue 27).
        saved = getattr(cfg, "rewardlab_max_prompt_length", None)
        self.max_prompt_length = saved if max_prompt_length == "saved" else max_prompt_length
        self.heads = head_names(cfg)
        self.reward_mean = _maybe_float(getattr(cfg, "reward_mean", None))
        self.reward_std = _maybe_float(getattr(cfg, "reward_std", None))
        self.reward_means = getattr(cfg, "reward_mean_per_head", None)
        self.reward_stds = getattr(cfg, "reward_std_per_head", None)
        self.pad_id = _pad_id(tokenizer, cfg)

    @classmethod
    def from_path(
        cls,
        model_dir: str | Path,
        device: Any = "auto",
        max_length: int | None = None,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        where: str = "model",
        dtype: Any = "float32",
        attn_implementation: str = "auto",
    ) -> RewardScorer:
        """Load a saved RM (a run folder or its model/ folder) onto ``device`` in ``dtype``.

        ``device="auto"`` follows the one device rule (rewardlab/devices.py: this process's GPU, else MPS,
        else CPU); scores come back as float32 whatever the weights' dtype (PPO loads its RM in bfloat16 in a
        bf16 run: half the bytes, scored under autocast). Safetensors only and no code from the folder unless
        the caller's config allows it; ``where`` names that config section (or CLI flag) in the refusal message.
        ``attn_implementation``: the run's ``model.attn_implementation`` (``devices.attn_implementation``).
        """
        from transformers import AutoModelForSequenceClassification

        from rewardlab import devices, models

        device = devices.resolve_device(device, "--device" if where == "--" else f"{where}.device")
        torch_dtype = devices.parse_dtype(dtype, "--dtype" if where == "--" else f"{where}.dtype")

        folder = resolve_model_dir(model_dir)
        models.check_model_source(str(folder), str(model_dir), allow_pickle, trust_remote_code, where)
        tokenizer = models.load_tokenizer(str(folder), trust_remote_code=trust_remote_code)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder),
                dtype=torch_dtype,
                trust_remote_code=trust_remote_code,
                **models.attn_kwargs(attn_implementation, torch_dtype, device),
                **models.load_kwargs(allow_pickle),
            )
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load reward model {model_dir}: {str(err).splitlines()[0]}") from None
        models.set_pooling(
            model, getattr(model.config, "rewardlab_pooling", None) or models.native_pooling(model.config)
        )
        model.to(device)
        model.eval()
        saved = getattr(model.config, "rewardlab_max_length", None)
        return cls(model, tokenizer, max_length=max_length or saved or 512, device=device)

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> Encoded:
        return encode_conversations(
            self.tokenizer,
            prompts,
            responses,
            self.max_length,
            max_prompt_length=self.max_prompt_length,
        )

    def score_tensor(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        batch_size: int = 32,
        progress: bool = False,
    ):
        """Rewards as a float32 torch tensor [n, n_heads] on ``self.device``, computed without grad."""
        import torch

        if len(prompts) != len(responses):
            raise UserError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        n = len(responses)
        out = torch.zeros((n, len(self.heads)), dtype=torch.float32, device=self.device)
        if n == 0:
            return out
        enc = self.encode(prompts, responses)
        order = sorted(range(n), key=lambda i: len(enc.ids[i]))  # similar lengths together: less padding
        bar = _progress(n, progress)
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                input_ids, mask = pad_batch([enc.ids[i] for i in idx], self.pad_id)
                logits = self.model(
                    input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                out[torch.tensor(idx, device=self.device)] = logits.float()
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        batch_size: int = 32,
        progress: bool = False,
    ) -> np.ndarray:
        """Rewards as numpy [n, n_heads] (column order = ``self.heads``)."""
        return self.score_tensor(prompts, responses, batch_size=batch_size, progress=progress).cpu().numpy()

    def whiten(self, rewards: np.ndarray) -> np.ndarray:
        """(r - mean) / std per head with the training-set statistics (identity when they are absent)."""
        means = self.reward_means or ([self.reward_mean] if self.reward_mean is not None else None)
        stds = self.reward_stds or ([self.reward_std] if self.reward_std is not None else None)
        if not means or not stds:
            return rewards
        m = np.asarray(means[: rewards.shape[-1]], dtype=np.float64)
        s = np.maximum(np.asarray(stds[: rewards.shape[-1]], dtype=np.float64), 1e-8)
        return ((rewards - m) / s).astype(rewards.dtype)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _pad_id(tokenizer: Any, config: Any) -> int:
    for value in (getattr(config, "pad_token_id", None), getattr(tokenizer, "pad_token_id", None)):
        if value is not None:
            return int(value)
    return 0


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from rewardlab import progress

    return progress.bar(total, "scoring", unit="resp")


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    """The saved config.json of an RM as a dict (cheap: no torch)."""
    return json.loads((resolve_model_dir(model_dir) / "config.json").read_text())
