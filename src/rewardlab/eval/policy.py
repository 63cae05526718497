"""`rewardlab eval policy RUN`: a tuned policy against its reference on held-out prompts.

Both models answer the same prompts; the reward model scores both answers (its own tokenizer and chat
format), the win rate counts how often the RM prefers the policy's answer (ties count half), the KL to the
reference is the sequence-level mean of log pi(y|x) - log pi_ref(y|x) over the policy's own samples, and
prompts from a simulated campaign (``meta.task``) also get the ground-truth rubric score of both answers.

Generation is seeded sampling at temperature 1 with no top-k/top-p (the distribution PPO optimizes and the
one the KL estimate needs); the policy and the reference draw with the same seed, so repeated runs give the
same numbers. ``--greedy`` switches to greedy decoding (the KL is then still measured on those answers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from rewardlab import models, runs
from rewardlab.errors import UserError
from rewardlab.recipes import policy_common as pc


def run_info(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's resolved config and manifest."""
    if not (run_dir / "model" / "config.json").is_file():
        raise UserError(f"{run_dir}: not a finished policy run (no model/config.json)")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    manifest = (
        json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").is_file() else {}
    )
    return cfg or {}, manifest


def held_out_prompts(cfg: dict[str, Any], prompts: str | None) -> list[dict[str, Any]]:
    """``--prompts`` (a dataset folder: all its prompts; a JSONL file: its lines), else the run's eval split."""
    if prompts:
        path = Path(prompts)
        if path.is_file() and path.suffix in (".jsonl", ".json"):
            return pc.read_prompt_file(prompts)
        records, _ = pc.read_records(prompts)
        return pc.unique_prompts(records)
    from rewardlab.config import DataConfig

    raw = dict(cfg.get("data") or {})
    if "split_seed" not in raw:  # a run made before data.split_seed split with train.seed
        raw["split_seed"] = int((cfg.get("train") or {}).get("seed", 0))
    _, held, _ = pc.split_records(DataConfig.model_validate(raw))
    if not held:
        raise UserError("the run's data has no eval split (data.eval_fraction is 0): pass --prompts")
    return pc.unique_prompts(held)


def reward_model_of(cfg: dict[str, Any]) -> str | None:
    for section in ("ppo", "online"):
        rm = (cfg.get(section) or {}).get("reward_model")
        if rm:
            return rm
    return None


def sample(
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    max_new_tokens: int,
    seed: int,
    greedy: bool,
    batch_size: int,
    max_prompt_tokens: int,
) -> tuple[list[str], list[Any], list[Any]]:
    """Answers, and per answer its (query_response, attention_mask, context) tensors for log-prob passes."""
    import torch

    from rewardlab import ppo_math as pm

    gen_config = pc.generation_config(tokenizer, max_new_tokens, do_sample=not greedy)
    texts, batches = [], []
    for start in range(0, len(prompts), batch_size):
        part = prompts[start : start + batch_size]
        query, query_mask = pc.encode_prompts(tokenizer, part, max_prompt_tokens)
        torch.manual_seed(seed + start)
        response = pc.generate(model, tokenizer, query, query_mask, gen_config)
        mask, _, _ = pm.response_mask(response, tokenizer.eos_token_id)
        response = response.masked_fill(mask == 0, tokenizer.pad_token_id)
        texts += pc.decode_responses(tokenizer, response, tokenizer.eos_token_id)
        batches.append(
            (torch.cat([query, response], 1), torch.cat([query_mask, mask.long()], 1), query.shape[1])
        )
    return texts, batches, [b[1][:, b[2] :].sum(1).tolist() for b in batches]


def sequence_kl(policy: Any, reference: Any, batches: list[Any]) -> list[float]:
    """Per answer: sum over its tokens of log pi - log pi_ref (the k1 estimate of KL on policy samples)."""
    import torch

    from rewardlab.recipes.ppo import policy_logprobs

    out: list[float] = []
    with torch.no_grad():
        for query_response, attention_mask, context in batches:
            logp, _ = policy_logprobs(policy, query_response, attention_mask, context, 1.0)
            ref_logp, _ = policy_logprobs(reference, query_response, attention_mask, context, 1.0)
            mask = attention_mask[:, context:].float()
            out += ((logp - ref_logp) * mask).sum(1).tolist()
    return out


def truth(meta: dict[str, Any], text: str) -> float | None:
    task = (meta or {}).get("task")
    if not task:
        return None
    from rewardlab.data.simulate import truth_score

    return float(truth_score(task, text)["overall"])


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def evaluate_run(
    run_dir: str,
    prompts: str | None = None,
    n: int | None = None,
    reward_model: str | None = None,
    max_new_tokens: int | None = None,
    seed: int = 0,
    greedy: bool = False,
    samples_per_prompt: int = 1,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Evaluate, write ``<run>/samples.jsonl``, merge the metrics into ``<run>/metrics.json``; return them."""
    run = Path(run_dir)
    cfg, manifest = run_info(run)
    items = held_out_prompts(cfg, prompts)[: n or None]
    if not items:
        raise UserError(f"{prompts or run_dir}: no prompts to evaluate on")
    items = [item for item in items for _ in range(samples_per_prompt)]
    reference_name = manifest.get("reference_model") or manifest.get("base_model")
    if not reference_name:
        raise UserError(f"{run_dir}/manifest.json names no reference_model")
    rm_path = reward_model or reward_model_of(cfg)
    limit = max_new_tokens or int((cfg.get("ppo") or {}).get("max_new_tokens") or 48)
    max_prompt = int((cfg.get("data") or {}).get("max_length") or 512)

    # The run's own config decides whether its base/reference and RM may be pickle files or run code.
    model_cfg = cfg.get("model") or {}
    allow_pickle = bool(model_cfg.get("allow_pickle", False))
    trust = bool(model_cfg.get("trust_remote_code", False))
    tokenizer = models.load_tokenizer(str(run / "model"), trust_remote_code=trust)
    policy = models.build_reference(str(run / "model"), trust_remote_code=trust)  # frozen, eval mode
    reference = models.build_reference(reference_name, trust_remote_code=trust, allow_pickle=allow_pickle)
    texts_prompts = [item["prompt"] for item in items]
    policy_texts, policy_batches, policy_lengths = sample(
        policy, tokenizer, texts_prompts, limit, seed, greedy, batch_size, max_prompt
    )
    ref_texts, _, ref_lengths = sample(
        reference, tokenizer, texts_prompts, limit, seed, greedy, batch_size, max_prompt
    )
    kls = sequence_kl(policy, reference, policy_batches)
    lengths = [x for part in policy_lengths for x in part]
    ref_len = [x for part in ref_lengths for x in part]

    rm_policy = rm_ref = [None] * len(items)
    if rm_path:
        from rewardlab.scoring import RewardScorer

        scorer = RewardScorer.from_path(rm_path, allow_pickle=allow_pickle, trust_remote_code=trust)
        rm_policy = scorer.score(texts_prompts, policy_texts)[:, 0].tolist()
        rm_ref = scorer.score(texts_prompts, ref_texts)[:, 0].tolist()
    truth_policy = [truth(item["meta"], t) for item, t in zip(items, policy_texts, strict=True)]
    truth_ref = [truth(item["meta"], t) for item, t in zip(items, ref_texts, strict=True)]

    wins = None
    if rm_path:
        wins = mean(
            [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rm_policy, rm_ref, strict=True)]
        )
    metrics = {
        "rm_score_mean": mean(rm_policy),
        "ref_rm_score_mean": mean(rm_ref),
        "win_rate_vs_ref": wins,
        "kl_to_ref": mean(kls),
        "truth_score_mean": mean(truth_policy),
        "ref_truth_score_mean": mean(truth_ref),
        "response_length_mean": mean(lengths),
        "ref_response_length_mean": mean(ref_len),
        "eval_prompts": len(items) // samples_per_prompt,
        "eval_samples": len(items),
        "eval_reward_model": rm_path,
        "eval_reference": reference_name,
        "eval_decoding": "greedy" if greedy else f"sampling(seed={seed}, temperature=1)",
    }
    rows = [
        {
            "prompt": item["prompt"],
            "policy": p_text,
            "reference": r_text,
            "policy_rm": p_rm,
            "reference_rm": r_rm,
            "policy_truth": p_t,
            "reference_truth": r_t,
            "kl": kl,
        }
        for item, p_text, r_text, p_rm, r_rm, p_t, r_t, kl in zip(
            items, policy_texts, ref_texts, rm_policy, rm_ref, truth_policy, truth_ref, kls, strict=True
        )
    ]
    with (run / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    existing = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    runs.write_metrics(run, {**existing, **metrics})
    return metrics
