"""`rewardlab train ppo`: PPO against a trained reward model, one readable recipe.

trl 1.13+ has no PPO trainer, so this is ours. It follows "The N+ Implementation Details of RLHF with PPO"
(Huang et al., 2024); the math lives in small tested functions in ``rewardlab.ppo_math``. One step:

1. Rollout (no grad): sample a response per prompt with the KV cache (left-padded batch, plain softmax at
   ``ppo.temperature``: no model default top-k). Old, new and reference log-probs are all taken from that
   same softmax(logits / temperature); top-k/top-p would make the sampler differ from it, so they are
   refused. Generation stops on every stop token (``pc.stop_token_ids``: eos, the generation config's eos
   list, the chat template's end-of-turn token); everything after the first one is padding.
2. Score: the response text is decoded and scored by the RM through ``RewardScorer``, which re-tokenizes
   it with the RM's own tokenizer and chat format, so the RM and the policy may use different tokenizers.
   The score is normalized with the RM's stored mean/std, and an answer with no EOS gets the penalty.
3. Rewards: -beta * KL_t per token (k1 by default, against the frozen reference) plus the score on the
   last real token (the EOS, never a pad after it); beta fixed or adapted to a KL target. k1 as a reward
   gives the exact gradient of the KL penalty; k3 is an unbiased *value* of the KL but, used as a per-token
   reward, its gradient is biased (it is the gradient of a reverse-KL-like term): only for comparison.
4. GAE (gamma 1, lambda 0.95) with values from the value model, then whitened advantages.
5. ``ppo_epochs`` passes over shuffled minibatches: clipped policy loss + vf_coef * clipped value loss,
   ``train.grad_accum`` micro-batches per optimizer step, gradient clipping.

The value model is a sequence-classification model read token by token. It starts from the RM when the
RM shares the policy's tokenizer (the usual recipe); otherwise from the policy's own backbone with a new
head; ``ppo.value_backbone=adapter`` makes it a second LoRA adapter plus a value head on the policy's own
frozen base instead. With LoRA the reference is the policy with its adapter disabled (no second copy), the RM
is bf16 in a bf16 run, and log-probs come from a chunked selective log-softmax (docs/scaling.md, "PPO memory
at 0.5B/7B/8B"). Works under ``accelerate launch`` (DDP): ``ppo.rollout_batch_size`` is per process, and N processes
x B prompts train like 1 x N*B: each prompt is sampled from its own seed (its place in the prompt stream),
advantages are whitened and losses averaged over the tokens of all processes (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab import engines, models, runs
from rewardlab import ppo_math as pm
from rewardlab.errors import UserError
from rewardlab.generation import position_ids
from rewardlab.recipes import policy_common as pc
from rewardlab.tracking import open_tracker

# ---------------------------------------------------------------- models


def _token_value_model_class() -> type:
    import torch

    class TokenValueModel(torch.nn.Module):
        """A sequence-classification model read at every position: V_t from the backbone's hidden state t.

        A module of its own so DDP wraps (and syncs) the whole value forward, not just the pooled head.
        The backbone and head are read through ``inner``, not registered a second time: a parameter under
        two names breaks FSDP2's state-dict loading on resume (torch.distributed.checkpoint).
        """

        def __init__(self, seq_cls_model: Any):
            super().__init__()
            self.inner = seq_cls_model

        @property
        def backbone(self) -> Any:
            return getattr(self.inner, self.inner.base_model_prefix)

        @property
        def head(self) -> Any:
            return getattr(self.inner, models.score_head_name(self.inner))

        def forward(self, input_ids, attention_mask, position_ids):  # noqa: ANN001, ANN201
            hidden = self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
            ).last_hidden_state
            return self.head(hidden).squeeze(-1)

    return TokenValueModel


def same_vocab(a: Any, b: Any) -> bool:
    """Can a model trained on tokenizer b read token ids of tokenizer a?"""
    return a.get_vocab() == b.get_vocab()


def build_value_model(
    policy_path: str,
    rm_path: str,
    value_path: str | None,
    policy_tok: Any,
    log: list[str],
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    attn_implementation: str = "auto",
) -> tuple[Any, str]:
    """The value model and where it came from: ``ppo.value_model``, else the RM, else the policy backbone."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    source = value_path or rm_path
    tok = models.load_tokenizer(source, trust_remote_code=trust_remote_code)
    if not same_vocab(policy_tok, tok):
        if value_path:
            raise UserError(f"ppo.value_model {value_path} does not share the policy's tokenizer")
        log.append(
            f"value model: the RM {rm_path} uses another tokenizer than the policy, so the value model starts "
            f"from the policy backbone {policy_path} with a new zero-initialised head"
        )
        source = policy_path
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" notices are expected here
    path = models.resolve(source)
    models.check_model_source(path, source, allow_pickle, trust_remote_code)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
            **models.attn_kwargs(attn_implementation, torch.float32),
            **models.load_kwargs(allow_pickle),
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    head_name = models.score_head_name(model)
    head = getattr(model, head_name)
    if source == policy_path or head.out_features != 1:
        new = torch.nn.Linear(head.in_features, 1, bias=head.bias is not None)
        with torch.no_grad():
            if source == policy_path:
                new.weight.zero_()
            else:  # a multi-head RM: the value starts from the overall head
                new.weight.copy_(head.weight[:1])
            if new.bias is not None:
                new.bias.copy_(head.bias[:1] if source != policy_path else torch.zeros(1))
        setattr(model, head_name, new)
        model.config.num_labels = 1
    model.config.pad_token_id = policy_tok.pad_token_id
    return _token_value_model_class()(model), source


VALUE_ADAPTER = "value"


@contextlib.contextmanager
def active_adapter(policy: Any, name: str) -> Any:
    """Run the peft model with adapter ``name`` active, then switch back to the policy's own adapter."""
    previous = policy.active_adapter
    policy.set_adapter(name)
    try:
        yield
    finally:
        policy.set_adapter(previous)
        keep_adapters_trainable(policy)


def keep_adapters_trainable(policy: Any) -> None:
    """Every adapter trains (the policy's and the value's): peft's ``set_adapter`` and the exit of
    ``disable_adapter`` freeze the adapters that are not active, which would silently stop the value
    adapter from learning after the first reference pass."""
    names = tuple(getattr(policy, "peft_config", {}) or ())
    if len(names) < 2:
        return
    for param_name, param in policy.named_parameters():
        if any(f".{a}." in param_name for a in names):
            param.requires_grad_(True)


def _adapter_value_model_class() -> type:
    import torch

    class ValueHead(torch.nn.Module):
        """The value head alone: what a checkpoint's ``value/`` folder holds in adapter mode."""

        def __init__(self, hidden_size: int):
            super().__init__()
            self.head = torch.nn.Linear(hidden_size, 1)
            with torch.no_grad():  # zero: the first values are 0, as for a fresh head on the policy backbone
                self.head.weight.zero_()
                self.head.bias.zero_()

        def save_pretrained(self, folder: Path, safe_serialization: bool = True) -> None:
            from safetensors.torch import save_file

            Path(folder).mkdir(parents=True, exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in self.state_dict().items()},
                str(Path(folder) / "model.safetensors"),
            )

    class AdapterValueModel(torch.nn.Module):
        """V_t from the policy's own frozen base with a second LoRA adapter active, plus a float32 head.

        The policy is held outside the module tree (its parameters, the value adapter's included, belong to
        the policy's optimizer entry and DDP wrapper); this module's own parameters are the head's."""

        def __init__(self, policy: Any):
            super().__init__()
            object.__setattr__(self, "policy", policy)
            self.inner = ValueHead(policy.config.hidden_size)

        def forward(self, input_ids, attention_mask, position_ids):  # noqa: ANN001, ANN201
            base = self.policy.get_base_model()
            backbone = getattr(base, base.base_model_prefix)
            with active_adapter(self.policy, VALUE_ADAPTER):
                hidden = backbone(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    use_cache=False,
                ).last_hidden_state
            return self.inner.head(hidden.to(self.inner.head.weight.dtype)).squeeze(-1)

    return AdapterValueModel


def build_adapter_value_model(policy: Any, lora: dict) -> Any:
    """``ppo.value_backbone=adapter``: a second LoRA adapter (the policy's LoRA settings) on the policy's
    frozen base, read by a new value head. No second backbone: at 7B this saves a 14-28 GB model plus its
    gradients and AdamW state (docs/scaling.md)."""
    from peft import LoraConfig

    kw = models._lora_kwargs(lora)
    policy.add_adapter(
        VALUE_ADAPTER,
        LoraConfig(
            r=kw.get("r", 16), lora_alpha=kw.get("alpha", 32), lora_dropout=kw.get("dropout", 0.05),
            target_modules=kw.get("target_modules", "all-linear"), task_type="CAUSAL_LM",
        ),
    )  # fmt: skip
    for name, param in policy.named_parameters():  # peft leaves an added, inactive adapter frozen
        if f".{VALUE_ADAPTER}." in name:
            param.requires_grad_(True)
    return _adapter_value_model_class()(policy)


def value_adapter_params(policy: Any) -> list[Any]:
    """The value adapter's parameters inside the policy (empty without one)."""
    return [p for n, p in policy.named_parameters() if f".{VALUE_ADAPTER}." in n]


def disable_dropout(model: Any) -> None:
    """No dropout anywhere: log-probs at rollout and at update must come from the same function (N+ details)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


# ---------------------------------------------------------------- forward passes


def policy_logprobs(
    model: Any,
    query_response: Any,
    attention_mask: Any,
    context: int,
    temperature: float,
    with_entropy: bool = False,
    chunk: int | None = pm.LOGPROB_CHUNK,
) -> tuple[Any, Any]:
    """log pi(response token t) for every response position, and optionally the entropy there.

    ``chunk``: response positions per slice of the selective log-softmax (``ppo.logprob_chunk``), so no
    full-vocabulary float32 tensor of the micro-batch is made beside the model's own logits; None: the
    whole micro-batch at once (float32 upcast + log_softmax, as before 2026-12; kept for comparison).
    """
    n_response = query_response.shape[1] - context
    out = model(
        input_ids=query_response,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        logits_to_keep=n_response + 1,
        use_cache=False,
    )
    tokens = query_response[:, context:]
    entropy = None
    if chunk is not None:
        logits = out.logits[:, :-1]
        logp = pm.selective_logprobs(logits, tokens, temperature, chunk)
        if with_entropy:
            entropy = pm.chunked_entropy(logits, temperature, chunk)
        return logp, entropy
    logits = out.logits[:, :-1].float() / max(temperature, 1e-7)
    logp = pm.logprobs_from_logits(logits, tokens)
    if with_entropy:
        import torch

        with torch.no_grad():
            entropy = pm.entropy_from_logits(logits)
    return logp, entropy


def token_values(value_model: Any, query_response: Any, attention_mask: Any, context: int) -> Any:
    """V_t for each response token t, predicted from the state before it (same alignment as log-probs)."""
    values = value_model(query_response, attention_mask, position_ids(attention_mask))
    return values[:, context - 1 : -1].float()


# ---------------------------------------------------------------- rollout


@dataclass
class Rollout:
    """One batch of episodes with everything the PPO update needs (all tensors on the device)."""

    query_response: Any
    attention_mask: Any
    context: int
    mask: Any
    logprobs: Any
    ref_logprobs: Any
    values: Any
    advantages: Any
    returns: Any
    kl: Any
    scores_raw: Any
    scores: Any
    has_eos: Any
    texts: list[str]
    gen_seconds: float


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def sample_seed(seed: int, position: int) -> int:
    """The sampling seed of the prompt at ``position`` in the run's stream of prompts (step x global batch +
    index): one per prompt and step, whatever the number of processes."""
    return (seed * 1_000_003 + position) * 2_654_435_761 % 2**63


def global_whiten(accelerator: Any, x: Any, mask: Any, shift_mean: bool = True, eps: float = 1e-8) -> Any:
    """``ppo_math.whiten`` with the mean and (unbiased) variance taken over every process's tokens, so
    advantages do not depend on how the global batch is split. One process: exactly ``pm.whiten``."""
    import torch

    if accelerator.num_processes == 1:
        return pm.whiten(x, mask, shift_mean=shift_mean, eps=eps)
    sums = torch.stack([(x * mask).sum().double(), mask.sum().double()])
    total, n = accelerator.reduce(sums, reduction="sum").tolist()
    mean = total / max(n, 1.0)
    sq = accelerator.reduce((((x.double() - mean) ** 2) * mask).sum().reshape(1), reduction="sum").item()
    var = sq / max(n, 1.0) * (n / (n - 1) if n > 1 else 1.0)
    out = (x - mean) * (1.0 / math.sqrt(var + eps))
    if not shift_mean:
        out = out + mean
    return out * mask


def reference_logprobs(ctx: Any, policy: Any, query_response: Any, attention_mask: Any, context: int) -> Any:
    """log pi_ref of the response tokens: the frozen copy, or (LoRA) the policy with its adapters disabled,
    which is the same function of the same base weights without a second model in memory."""
    o = ctx.cfg.ppo
    if ctx.reference is not None:
        return policy_logprobs(ctx.reference, query_response, attention_mask, context, o.temperature, False,
                               o.logprob_chunk)[0]  # fmt: skip
    with policy.disable_adapter():
        out = policy_logprobs(policy, query_response, attention_mask, context, o.temperature, False,
                              o.logprob_chunk)[0]  # fmt: skip
    keep_adapters_trainable(policy)
    return out


def rollout(ctx: Any, prompts: list[Any], kl_coef: float, positions: list[int]) -> Rollout:
    """Generate, score and shape rewards for one batch of prompts (see the module doc, steps 1-4).
    ``positions``: each prompt's place in the run's prompt stream, which seeds its sampling."""
    import torch

    o = ctx.cfg.ppo
    device = ctx.accelerator.device
    query, query_mask = pc.encode_prompts(ctx.tokenizer, prompts, ctx.cfg.data.max_length)
    query, query_mask = query.to(device), query_mask.to(device)
    policy = ctx.accelerator.unwrap_model(ctx.policy)
    policy.eval()
    started = time.perf_counter()
    seeds = [sample_seed(ctx.cfg.train.seed, p) for p in positions]
    sampler = pc.seeded_sampling(seeds, o.temperature, o.top_k, o.top_p)
    # FSDP2: the Bundle's root weights whole for the whole rollout (generation and the forwards below)
    with engines.parts_callable(ctx.accelerator, ctx.engine):
        with ctx.accelerator.autocast():  # the same precision as the update's forward passes
            response = pc.generate(
                policy, ctx.tokenizer, query, query_mask, ctx.gen_config,
                logits_processor=sampler, synced_gpus=pc.is_sharded(ctx.accelerator),
            )  # fmt: skip
        gen_seconds = time.perf_counter() - started
        mask, has_eos, last_index = pm.response_mask(response, ctx.stop_ids)
        response = response.masked_fill(mask == 0, ctx.tokenizer.pad_token_id)
        query_response = torch.cat([query, response], dim=1)
        attention_mask = torch.cat([query_mask, mask.long()], dim=1)
        context = query.shape[1]
        logprobs, ref_logprobs, values = [], [], []
        # Old and reference log-probs: the update's forward function (full sequence, no KV cache, same position
        # ids, dropout off, same autocast), so the first minibatch's ratio is 1 up to float rounding.
        with torch.no_grad(), ctx.accelerator.autocast():
            for part in chunks(len(prompts), ctx.forward_batch_size):
                qr, am = query_response[part], attention_mask[part]
                logprobs.append(
                    policy_logprobs(policy, qr, am, context, o.temperature, False, o.logprob_chunk)[0]
                )
                ref_logprobs.append(reference_logprobs(ctx, policy, qr, am, context))
                values.append(token_values(ctx.value, qr, am, context))
    logprobs, ref_logprobs, values = torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)
    texts = pc.decode_responses(ctx.tokenizer, response, ctx.stop_ids)
    with ctx.accelerator.autocast() if ctx.rm_autocast else contextlib.nullcontext():
        scores = ctx.scorer.score_tensor(prompts, texts, batch_size=ctx.forward_batch_size)
    scores_raw = scores[:, 0].float().to(device)
    scores = scores_raw
    if o.whiten_rewards:
        scores = pm.normalize_scores(scores, ctx.scorer.reward_mean, ctx.scorer.reward_std)
    scores = pm.apply_missing_eos_penalty(scores, has_eos, o.missing_eos_penalty, o.missing_eos_mode)
    kl = pm.kl_per_token(logprobs, ref_logprobs, o.kl_estimator) * mask
    rewards, _ = pm.shape_rewards(scores, kl, mask, last_index, kl_coef)
    if o.batch_whiten_rewards:
        rewards = global_whiten(ctx.accelerator, rewards, mask, shift_mean=False)
    advantages, returns = pm.gae(rewards, values, mask, o.gamma, o.lam)
    if o.whiten_advantages:
        advantages = global_whiten(ctx.accelerator, advantages, mask)
    return Rollout(
        query_response=query_response, attention_mask=attention_mask, context=context, mask=mask,
        logprobs=logprobs, ref_logprobs=ref_logprobs, values=values * mask, advantages=advantages,
        returns=returns, kl=kl, scores_raw=scores_raw, scores=scores, has_eos=has_eos, texts=texts,
        gen_seconds=gen_seconds,
    )  # fmt: skip


# ---------------------------------------------------------------- update


def ppo_update(ctx: Any, batch: Rollout) -> dict[str, float]:
    """``ppo_epochs`` passes of clipped policy + value losses over shuffled minibatches; mean stats."""
    import torch

    o = ctx.cfg.ppo
    accelerator = ctx.accelerator
    ctx.policy.train()
    ctx.value.train()
    n = batch.mask.shape[0]
    accum = ctx.cfg.train.grad_accum
    micro = o.mini_batch_size // accum
    stats: dict[str, list[float]] = {}
    first: dict[str, float] = {}
    generator = torch.Generator().manual_seed(ctx.cfg.train.seed * 100_003 + ctx.step)
    window_loss = torch.zeros(1, device=batch.mask.device)  # loss summed since the last optimizer step
    # DeepSpeed, FSDP2: policy and value are one module (engines.Bundle), stepped through rewardlab.engines
    ds = ctx.engine is not None
    policy_fn = engines.Part(ctx.engine, "policy") if ds else ctx.policy
    value_fn = engines.Part(ctx.engine, "value") if ds else ctx.value
    for _ in range(o.ppo_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, micro):
            idx = order[start : start + micro].to(batch.mask.device)
            if start % o.mini_batch_size == 0:  # a new minibatch: its real tokens over all processes
                mb = order[start : start + o.mini_batch_size].to(batch.mask.device)
                mb_tokens = accelerator.reduce(
                    batch.mask[mb].sum().reshape(1).float(), reduction="sum"
                ).item()
            # losses are token means over this micro-batch; rescale them to its share of the global
            # minibatch's token mean, so DDP's average over processes and the accumulation's average over
            # micro-batches give the same gradient on 1 process or N
            share = float(batch.mask[idx].sum()) * accelerator.num_processes * accum / max(mb_tokens, 1.0)
            last = (start + micro) % o.mini_batch_size == 0 or start + micro >= n
            sync = (
                engines.micro_step(accelerator, ctx.engine, last)
                if ds
                else accelerator.accumulate(ctx.policy, ctx.value)
            )
            with sync:
                qr, am, mask = batch.query_response[idx], batch.attention_mask[idx], batch.mask[idx]
                with accelerator.autocast():
                    logp, entropy = policy_logprobs(
                        policy_fn, qr, am, batch.context, o.temperature, True, o.logprob_chunk
                    )
                    vpred = token_values(value_fn, qr, am, batch.context)
                pg_loss, pg_stats = pm.policy_loss(
                    logp, batch.logprobs[idx], batch.advantages[idx], mask, o.cliprange
                )
                vf_loss, vf_stats = pm.value_loss(
                    vpred, batch.values[idx], batch.returns[idx], mask, o.cliprange_value
                )
                loss = (pg_loss + o.vf_coef * vf_loss) * share
                window_loss += loss.detach().float()
                if ds:
                    engines.backward(accelerator, ctx.engine, loss / accum)
                    if last:  # the loss before the step; DeepSpeed measures the norm inside it
                        check_finite_update(ctx, window_loss, None)
                        window_loss.zero_()
                        engines.clip_and_step(
                            accelerator, ctx.engine, ctx.optimizer, ctx.cfg.train.max_grad_norm,
                            functools.partial(stop_on_grad_norm, ctx),
                        )  # fmt: skip
                        ctx.scheduler.step()
                else:
                    accelerator.backward(loss)
                    grad_norm = None
                    if accelerator.sync_gradients and ctx.cfg.train.max_grad_norm:
                        params = [
                            p for m in (ctx.policy, ctx.value) for p in m.parameters() if p.requires_grad
                        ]
                        grad_norm = accelerator.clip_grad_norm_(params, ctx.cfg.train.max_grad_norm)
                    if accelerator.sync_gradients:
                        check_finite_update(ctx, window_loss, grad_norm)
                        window_loss.zero_()
                    ctx.optimizer.step()
                    if accelerator.sync_gradients:
                        ctx.scheduler.step()
                    ctx.optimizer.zero_grad()
            row = {
                "policy/loss": pg_loss.item(),
                "value/loss": vf_loss.item(),
                "policy/entropy": pm.masked_mean(entropy, mask).item(),
                **{f"policy/{k}": v.item() for k, v in pg_stats.items()},
                **{f"value/{k}": v.item() for k, v in vf_stats.items()},
            }
            if not first:  # before any optimizer step: the policy that sampled, so ratio 1 and KL 0
                first = {
                    "policy/first_ratio": row["policy/ratio"],
                    "policy/first_approx_kl": row["policy/approx_kl"],
                }
            for key, value in row.items():
                stats.setdefault(key, []).append(value)
    return {**{key: sum(v) / len(v) for key, v in stats.items()}, **first}


def check_finite_update(ctx: Any, window_loss: Any, grad_norm: Any) -> None:
    """Stop before the optimizer step when the loss (any process's: the mean over processes is then nan)
    or the synced gradient norm is not finite; every process sees the same numbers, so all stop."""
    step, last = ctx.step + 1, functools.partial(runs.latest_checkpoint, ctx.run_dir)
    loss = ctx.accelerator.reduce(window_loss.reshape(1), reduction="mean")
    runs.stop_on_nonfinite("ppo", "loss", float(loss.item()), step, last)
    if grad_norm is not None:
        runs.stop_on_nonfinite("ppo", "gradient norm", float(grad_norm), step, last)


def stop_on_grad_norm(ctx: Any, norm: float) -> None:
    last = functools.partial(runs.latest_checkpoint, ctx.run_dir)
    runs.stop_on_nonfinite("ppo", "gradient norm", float(norm), ctx.step + 1, last)


def check_finite_rewards(ctx: Any, batch: Rollout) -> None:
    """Stop before any update when a reward-model score is nan/inf (summed over processes, so all stop)."""
    total = ctx.accelerator.reduce(batch.scores_raw.detach().float().sum().reshape(1), reduction="sum")
    runs.stop_on_nonfinite(
        "ppo",
        "reward",
        float(total.item()),
        ctx.step + 1,
        functools.partial(runs.latest_checkpoint, ctx.run_dir),
    )


def check_weights(ctx: Any) -> None:
    """Refuse to save diverged weights (they are identical on every process, so all stop together)."""
    for model in (ctx.policy, ctx.value):  # under ZeRO-3 each process checks its shard, all decide together
        bad = engines.nonfinite_weight(ctx.accelerator, model.named_parameters())
        if bad is not None:
            runs.stop_on_nonfinite(
                "ppo", f"weight {bad}", math.nan, ctx.step, runs.latest_checkpoint(ctx.run_dir)
            )


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(ctx: Any, history: list[dict[str, float]]) -> None:
    """Policy and value weights, plus the shared protocol's optimizer, scheduler, RNG and state
    (runs.save_checkpoint): the KL controller and the per-step stats the final summary averages."""
    accelerator = ctx.accelerator
    check_weights(ctx)
    # DeepSpeed, FSDP2: the engine's own checkpoint (engine/, each process its shard)
    ds = ctx.engine is not None

    def write_weights(folder: Path) -> None:
        if ds:
            return
        accelerator.unwrap_model(ctx.policy).save_pretrained(folder / "policy", safe_serialization=True)
        accelerator.unwrap_model(ctx.value).inner.save_pretrained(folder / "value", safe_serialization=True)

    runs.save_checkpoint(
        ctx.run_dir,
        ctx.step,
        accelerator,
        optimizer=None if ds else ctx.optimizer,
        scheduler=ctx.scheduler,
        write_weights=write_weights,
        write_shards=(lambda folder: engines.save_state(accelerator, folder)) if ds else None,
        state={
            "kl_ctl": ctx.kl_ctl.state_dict(),
            "history": history,
            "engine": engines.describe(accelerator),
        },
        config_fingerprint=runs.resume_fingerprint(ctx.cfg),
        keep=ctx.cfg.keep_checkpoints,
    )


def load_checkpoint(ctx: Any, folder: Path) -> list[dict[str, float]]:
    """Restore what ``save_checkpoint`` wrote; returns the per-step stats history up to the checkpoint."""
    from safetensors.torch import load_file

    ds = ctx.engine is not None
    if ds:
        engines.load_state(ctx.accelerator, folder)  # policy, value and optimizer shards
    info = runs.load_checkpoint(
        folder,
        ctx.accelerator,
        optimizer=None if ds else ctx.optimizer,
        scheduler=ctx.scheduler,
        config_fingerprint=runs.resume_fingerprint(ctx.cfg),
    )
    saved = info.get("engine", "ddp" if info.get("world_size", 1) > 1 else "single")
    if (saved in engines.SHARDED_STATE) != ds:
        raise UserError(f"{folder}: written under {saved}, resumed under {engines.describe(ctx.accelerator)}")
    ctx.step = int(info["step"])
    ctx.kl_ctl.load_state_dict(info["kl_ctl"])
    if ds:
        return list(info.get("history") or [])
    policy = ctx.accelerator.unwrap_model(ctx.policy)
    if ctx.cfg.model.lora is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, load_file(str(folder / "policy" / "adapter_model.safetensors")))
        if value_adapter_params(policy):  # ppo.value_backbone=adapter: peft saved it in a subfolder
            weights = load_file(str(folder / "policy" / VALUE_ADAPTER / "adapter_model.safetensors"))
            set_peft_model_state_dict(policy, weights, adapter_name=VALUE_ADAPTER)
    else:
        _load_into(policy, _load_folder_weights(folder / "policy", load_file), folder / "policy")
    value = ctx.accelerator.unwrap_model(ctx.value).inner
    _load_into(value, _load_folder_weights(folder / "value", load_file), folder / "value")
    return list(info.get("history") or [])


def _load_into(model: Any, weights: dict[str, Any], source: Path) -> None:
    """Load saved weights; only tied weights (saved once) may be missing."""
    result = model.load_state_dict(weights, strict=False)
    tied = {k for k in result.missing_keys if "lm_head" in k or "embed" in k}
    if result.unexpected_keys or set(result.missing_keys) - tied:
        raise UserError(
            f"{source}: checkpoint does not match the model ({result.unexpected_keys[:3]} "
            f"unexpected, {sorted(set(result.missing_keys) - tied)[:3]} missing)"
        )
    if tied and hasattr(model, "tie_weights"):
        model.tie_weights()


def _load_folder_weights(folder: Path, load_file: Any) -> dict[str, Any]:
    weights: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(str(file)))
    return weights


# ---------------------------------------------------------------- the run


@dataclass
class Context:
    """What the step functions share; built once by ``setup``."""

    cfg: Any
    run_dir: Path
    accelerator: Any
    tokenizer: Any
    policy: Any
    reference: Any
    value: Any
    scorer: Any
    optimizer: Any
    scheduler: Any
    kl_ctl: Any
    gen_config: Any
    stop_ids: list[int]
    forward_batch_size: int
    total_steps: int
    value_source: str
    step: int = 0
    rm_autocast: bool = False  # the RM is bfloat16 and scores under the run's autocast
    engine: Any = None  # DeepSpeed, FSDP2: policy and value as one module (engines.Bundle); else None


def check_distributed(accelerator: Any, cfg: Any) -> None:
    """Under FSDP1 no checkpoints or resume (pc.refuse_unsupported_sharding); pure-bf16 full fine-tuning
    refused (engines.refuse_pure_bf16). DeepSpeed and FSDP2 run policy and value as one module
    (engines.Bundle, engines.bundled)."""
    fsdp2 = (
        engines.kind(accelerator) == "fsdp" and getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) == 2
    )
    if not fsdp2:
        pc.refuse_unsupported_sharding(accelerator, cfg, "PPO", ("save_every", "resume"))
    engines.refuse_pure_bf16(cfg, "PPO")


def setup(cfg: Any, run_dir: Path, n_prompts: int, log: list[str]) -> Context:
    import torch
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from rewardlab.scoring import RewardScorer

    o = cfg.ppo
    accelerator = engines.make_accelerator(  # DeepSpeed's plugin from the run's config (refused below)
        cfg,
        pc.mixed_precision(cfg),  # train.bf16, else accelerate's own (launch flags)
        gradient_accumulation_steps=cfg.train.grad_accum,
    )
    pc.check_launch(accelerator)
    check_distributed(accelerator, cfg)
    set_seed(cfg.train.seed + accelerator.process_index)
    tokenizer = models.load_tokenizer(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    policy = pc.build_policy(cfg)
    with engines.plain_init():  # frozen, outside the engine: plain modules even under ZeRO-3
        reference = build_reference(cfg, log)
        rm_dtype = reward_model_dtype(cfg)
        scorer = RewardScorer.from_path(
            o.reward_model,
            device=str(accelerator.device),
            allow_pickle=cfg.model.allow_pickle,
            trust_remote_code=cfg.model.trust_remote_code,
            dtype=rm_dtype,
            attn_implementation=cfg.model.attn_implementation,
        )
    if o.value_backbone == "adapter":
        refuse_value_adapter_distributed(accelerator)
        value, value_source = build_adapter_value_model(policy, pc.lora_dict(cfg)), "policy adapter 'value'"
        log.append("value model: a second LoRA adapter and a new value head on the policy's frozen base")
    else:
        value, value_source = build_value_model(
            cfg.model.name_or_path,
            o.reward_model,
            o.value_model,
            tokenizer,
            log,
            allow_pickle=cfg.model.allow_pickle,
            trust_remote_code=cfg.model.trust_remote_code,
            attn_implementation=cfg.model.attn_implementation,
        )
    for model in (policy, reference, value):
        if model is not None:
            disable_dropout(model)
    if cfg.train.gradient_checkpointing:  # the trained models; generation runs in eval mode, cache kept
        models.enable_checkpointing(policy)
        if o.value_backbone != "adapter":
            models.enable_checkpointing(value.inner)
    if reference is not None:
        reference.to(accelerator.device)
    episodes = o.episodes if o.episodes is not None else int(cfg.train.epochs * n_prompts)
    per_step = o.rollout_batch_size * accelerator.num_processes
    total_steps = cfg.train.max_steps or max(1, math.ceil(episodes / per_step))
    updates = total_steps * o.ppo_epochs * (o.rollout_batch_size // o.mini_batch_size)
    value_in_policy = {id(p) for p in value_adapter_params(policy)}
    groups = [
        {
            "params": [p for p in policy.parameters() if p.requires_grad and id(p) not in value_in_policy],
            "lr": cfg.train.lr,
        },
        {"params": list(value.parameters()) + value_adapter_params(policy), "lr": o.value_lr or cfg.train.lr},
    ]
    optimizer = torch.optim.AdamW(
        groups, eps=1e-5, weight_decay=cfg.train.weight_decay
    )  # eps 1e-5: N+ details
    scheduler = get_scheduler(
        cfg.train.lr_scheduler,
        optimizer,
        num_warmup_steps=int(cfg.train.warmup_ratio * updates),
        num_training_steps=updates,
    )
    # The scheduler stays out of accelerator.prepare: prepared schedulers step once per process under DDP.
    engine = None
    if engines.bundled(accelerator):  # one module for both (DeepSpeed: it owns accumulation and step)
        if engines.kind(accelerator) == "fsdp":  # the loop divides by the accumulation, as for DeepSpeed
            accelerator.gradient_accumulation_steps = 1
        micro = o.mini_batch_size // cfg.train.grad_accum
        engine, optimizer = engines.prepare(
            accelerator, engines.Bundle({"policy": policy, "value": value}), optimizer, micro
        )
        policy, value = (
            engines.inner(accelerator, engine, "policy"),
            engines.inner(accelerator, engine, "value"),
        )
    else:
        policy, value, optimizer = accelerator.prepare(policy, value, optimizer)
    if o.adaptive_kl:
        kl_ctl = pm.AdaptiveKLController(o.kl_coef, o.kl_target, o.kl_horizon)
    else:
        kl_ctl = pm.FixedKLController(o.kl_coef)
    # greedy over seeded Gumbel noise = sampling at temperature/top-k/top-p (pc.seeded_sampling)
    stop_ids = pc.stop_token_ids(tokenizer, policy)
    gen_config = pc.generation_config(tokenizer, o.max_new_tokens, do_sample=False, stop_ids=stop_ids)
    return Context(
        cfg,
        run_dir,
        accelerator,
        tokenizer,
        policy,
        reference,
        value,
        scorer,
        optimizer,
        scheduler,
        kl_ctl,
        gen_config,
        stop_ids,
        o.forward_batch_size or o.mini_batch_size,
        total_steps,
        value_source,
        rm_autocast=rm_dtype == "bfloat16",
        engine=engine,
    )


def build_reference(cfg: Any, log: list[str]) -> Any:
    """The frozen KL reference: None under LoRA (the policy with its adapter disabled is the reference,
    ``reference_logprobs``), else a copy of the starting policy (``ppo.reference_copy`` forces one)."""
    if cfg.model.lora is not None and not cfg.ppo.reference_copy:
        log.append("reference: the policy with its LoRA adapter disabled (no second copy)")
        return None
    return models.build_reference(
        cfg.model.name_or_path,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        allow_pickle=cfg.model.allow_pickle,
        attn_implementation=cfg.model.attn_implementation,
    )


def reward_model_dtype(cfg: Any) -> str:
    """``ppo.reward_model_dtype``; auto: bfloat16 in a bf16 run (train.bf16 or bfloat16 weights)."""
    wanted = cfg.ppo.reward_model_dtype
    if wanted != "auto":
        return wanted
    return "bfloat16" if cfg.train.bf16 or cfg.model.dtype == "bfloat16" else "float32"


def refuse_value_adapter_distributed(accelerator: Any) -> None:
    """The value adapter lives inside the policy module but trains through the value loss, which a DDP or
    sharded policy wrapper would not see in its own forward: one process only, for now."""
    if accelerator.num_processes > 1:
        raise UserError(
            f"ppo.value_backbone=adapter runs on one process (got {accelerator.num_processes}): the value "
            "adapter sits inside the policy's DDP/sharded wrapper; use ppo.value_backbone=separate"
        )


def prompt_positions(step: int, size: int, rank: int, world: int) -> list[int]:
    """This process's places in the run's prompt stream at one step: the global batch of ``size * world``
    prompts is cut in consecutive blocks of ``size``, one per process (so 1 x 8 and 2 x 4 agree)."""
    start = step * size * world + rank * size
    return list(range(start, start + size))


def prompt_batch(prompts: list[dict], step: int, size: int, rank: int, world: int, seed: int) -> list[dict]:
    """The prompts of one rollout step: a seeded shuffle per pass over the prompts, sharded by process."""
    import random

    out = []
    for pos in prompt_positions(step, size, rank, world):
        epoch, offset = divmod(pos, len(prompts))
        order = list(range(len(prompts)))
        random.Random(seed * 7919 + epoch).shuffle(order)
        out.append(prompts[order[offset]])
    return out


def step_stats(ctx: Any, batch: Rollout, update: dict[str, float], seconds: float) -> dict[str, float]:
    """Per-step log row, averaged over processes."""
    import torch

    seq_kl = batch.kl.sum(1)
    seq_kl_k1 = ((batch.logprobs - batch.ref_logprobs) * batch.mask).sum(1)
    lengths = batch.mask.sum(1)
    local = {
        "reward/rm_score_mean": batch.scores_raw.mean(),
        "reward/rm_score_std": batch.scores_raw.std() if len(batch.texts) > 1 else torch.zeros(()),
        "reward/score_mean": batch.scores.mean(),
        "reward/eos_rate": batch.has_eos.float().mean(),
        "objective/kl": seq_kl.mean(),
        "objective/kl_k1": seq_kl_k1.mean(),
        "response_length": lengths.float().mean(),
        "value/explained_variance": torch.tensor(
            pm.explained_variance(batch.values, batch.returns, batch.mask)
        ),
    }
    reduced = {
        k: ctx.accelerator.reduce(v.detach().float().reshape(1), reduction="mean").item()
        for k, v in local.items()
    }
    tokens = float(lengths.sum().item()) * ctx.accelerator.num_processes
    episodes = len(batch.texts) * ctx.accelerator.num_processes
    return {
        **reduced,
        **update,
        "objective/kl_coef": ctx.kl_ctl.value,
        "lr": ctx.scheduler.get_last_lr()[0],
        "time/step_s": seconds,
        "time/generate_share": batch.gen_seconds / max(seconds, 1e-9),
        "time/episodes_per_s": episodes / max(seconds, 1e-9),
        "time/tokens_per_s": tokens / max(seconds, 1e-9),
        "episodes": (ctx.step + 1) * episodes,
    }


def run(cfg: Any) -> dict[str, Any]:
    # a full or read-only disk fails here, before any model loads, not at the first checkpoint
    run_dir = runs.check_writable(cfg.output_dir)
    train_records, _, data_info = pc.split_records(cfg.data)
    prompts = [p["prompt"] for p in pc.unique_prompts(train_records)]
    if not prompts:
        raise UserError(f"{cfg.data.train}: no training prompts")
    resume_from = runs.latest_checkpoint(run_dir) if cfg.train.resume else None
    if cfg.train.resume and resume_from is None:
        raise UserError(f"train.resume=true but {run_dir}/checkpoints holds no complete checkpoint")
    log: list[str] = []
    ctx = setup(cfg, run_dir, len(prompts), log)
    main = ctx.accelerator.is_main_process
    if main and resume_from is None:
        runs.clear_stale_checkpoints(run_dir)
        runs.prepare_run(
            cfg,
            {
                "base_model": cfg.model.name_or_path,
                "reference_model": cfg.model.name_or_path,
                "data": data_info,
                "reward_model": cfg.ppo.reward_model,
                "train_prompts": len(prompts),
            },
        )
    history: list[dict[str, float]] = []
    if resume_from is not None:
        history = load_checkpoint(ctx, resume_from)
        log.append(f"resumed from {resume_from.name} (step {ctx.step})")
        if main:
            runs.trim_metrics_log(run_dir, ctx.step)  # rows after the checkpoint are logged again
    tracker = (
        open_tracker(cfg.tracking, run_dir, cfg.model_dump(mode="json"), resume=cfg.train.resume)
        if main
        else None
    )
    if main:
        runs.update_manifest(run_dir, {"value_model": ctx.value_source, "notes": log})
        for line in log:
            print(f"ppo: {line}")
    progress = _progress(ctx.total_steps, ctx.step, main)
    while ctx.step < ctx.total_steps:
        started = time.perf_counter()
        batch_prompts = prompt_batch(
            prompts,
            ctx.step,
            cfg.ppo.rollout_batch_size,
            ctx.accelerator.process_index,
            ctx.accelerator.num_processes,
            cfg.train.seed,
        )
        positions = prompt_positions(
            ctx.step, cfg.ppo.rollout_batch_size, ctx.accelerator.process_index, ctx.accelerator.num_processes
        )
        batch = rollout(ctx, batch_prompts, ctx.kl_ctl.value, positions)
        check_finite_rewards(ctx, batch)
        update = ppo_update(ctx, batch)
        stats = step_stats(ctx, batch, update, time.perf_counter() - started)
        ctx.kl_ctl.update(stats["objective/kl"], len(batch.texts) * ctx.accelerator.num_processes)
        ctx.step += 1
        history.append(stats)
        if main and (ctx.step % cfg.train.log_every == 0 or ctx.step == ctx.total_steps):
            tracker.log(stats, step=ctx.step)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(
                score=f"{stats['reward/rm_score_mean']:.3f}", kl=f"{stats['objective/kl']:.3f}"
            )
        if cfg.train.save_every and ctx.step % cfg.train.save_every == 0:
            with runs.writing(runs.checkpoint_dir(run_dir, ctx.step).with_suffix(".tmp")):
                save_checkpoint(ctx, history)
    if progress is not None:
        progress.close()
    metrics = summary(history, ctx)
    ctx.accelerator.wait_for_everyone()
    check_weights(ctx)
    final = pc.full_model(  # collective (FSDP/ZeRO-3)
        ctx.accelerator,
        ctx.engine if ctx.engine is not None else ctx.policy,
        lambda: pc.build_policy(cfg),
        part="policy" if ctx.engine is not None else None,
    )
    if main:
        with runs.writing(run_dir / "model"):
            pc.save_policy(
                final,
                ctx.tokenizer,
                run_dir / "model",
                {
                    "stage": "ppo",
                    "config": cfg,
                    "metrics": metrics,
                    "base_model": cfg.model.name_or_path,
                    "reward_model": cfg.ppo.reward_model,
                    "data": cfg.data.train,
                    "steps": ctx.step,
                },
            )
            runs.write_metrics(run_dir, metrics)
        tracker.summary(metrics)
        tracker.finish()
    return metrics


def summary(history: list[dict[str, float]], ctx: Any) -> dict[str, Any]:
    """Final metrics: the RM score at the start and end of this run (mean of up to 3 steps each), KL, length."""
    if not history:
        return {"steps": ctx.step}
    k = min(3, len(history))

    def mean(rows: list[dict], key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    return {
        "steps": ctx.step,
        "train_rm_score_start": mean(history[:k], "reward/rm_score_mean"),
        "train_rm_score_end": mean(history[-k:], "reward/rm_score_mean"),
        "train_kl_end": mean(history[-k:], "objective/kl"),
        "kl_coef": ctx.kl_ctl.value,
        # the first minibatch of every step sees the policy that sampled: ratio 1, approx-KL 0 (a mismatch
        # between sampling and scoring shows here first)
        "first_minibatch_ratio_max_dev": max(abs(r["policy/first_ratio"] - 1.0) for r in history),
        "first_minibatch_approx_kl_max": max(r["policy/first_approx_kl"] for r in history),
        "response_length_end": mean(history[-k:], "response_length"),
        "eos_rate_end": mean(history[-k:], "reward/eos_rate"),
        "generate_time_share": mean(history, "time/generate_share"),
        "episodes_per_s": mean(history, "time/episodes_per_s"),
        "tokens_per_s": mean(history, "time/tokens_per_s"),
    }


def _progress(total: int, done: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from rewardlab import progress

    return progress.bar(total, "ppo", unit="steps", initial=done)
