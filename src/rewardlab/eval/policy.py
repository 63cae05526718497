"""`rewardlab eval policy RUN`: a tuned policy against its reference on held-out prompts.

Both models answer the same prompts; the reward model scores both answers (its own tokenizer and chat
format), the win rate counts how often the RM prefers the policy's answer (ties count half), and prompts
from a simulated campaign (``meta.task``) also get the ground-truth rubric score of both answers.

KL to the reference (``kl_to_ref``) is exact per token: on each of the policy's own answers, the sum over
its positions of KL(pi(.|prefix) || pi_ref(.|prefix)) summed over the whole vocabulary. Its mean over
answers is an unbiased estimate of the sequence KL that is never negative and has far less variance than
the sampled log pi(y|x) - log pi_ref(y|x) (also reported, as ``kl_to_ref_sampled``).

``--best-of N``: the decoding baseline DPO and PPO should beat. The reference draws N answers per prompt,
the run's reward model (the one it trained against) keeps the best, and that answer is judged like the
policy's; its KL to the reference is at most log N - (N - 1) / N nats (``best_of_n_kl_bound``).

Generation is seeded sampling at temperature 1 with no top-k/top-p (the distribution PPO optimizes and the
one the KL estimate needs); the policy and the reference draw with the same seed, so repeated runs give the
same numbers. ``--greedy`` switches to greedy decoding (the KL is then still measured on those answers).

``--reference-from RUN``: reuse the reference answers an earlier ``eval policy`` of RUN drew, instead of
sampling them again (comparing DPO, PPO and RS runs from one start model on one prompt set samples the
start model once). Only when every setting that decides those answers is the same (reference model, prompt
token ids, seed, decoding, length limits, batch size, stop tokens); otherwise it stops and names the
difference, since answers drawn under other settings would be compared silently against the wrong baseline.
The reference model is compared by its name or path: weights overwritten in place under the same path are
not detected.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from rewardlab import generation as gen
from rewardlab import models, runs
from rewardlab.data import policy_data
from rewardlab.errors import UserError


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
            return policy_data.read_prompt_file(prompts)
        records, _ = policy_data.read_records(prompts)
        return policy_data.unique_prompts(records)
    from rewardlab.config import DataConfig

    raw = dict(cfg.get("data") or {})
    if "split_seed" not in raw:  # a run made before data.split_seed split with train.seed
        raw["split_seed"] = int((cfg.get("train") or {}).get("seed", 0))
    _, held, _ = policy_data.split_records(DataConfig.model_validate(raw))
    if not held:
        raise UserError("the run's data has no eval split (data.eval_fraction is 0): pass --prompts")
    return policy_data.unique_prompts(held)


def reward_model_of(cfg: dict[str, Any]) -> str | None:
    for section in ("ppo", "online", "rs"):
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
    stop_ids: list[int] | None = None,
    reference: Any = None,
) -> tuple[list[str], list[int], list[bool], tuple[list[float], list[float]] | None]:
    """Answers; per answer its length in tokens and whether it ended on a stop token (not cut by the length
    limit); with ``reference``, per answer its KL to it (``answer_kl``), else None."""
    import torch

    from rewardlab import ppo_math as pm

    stop_ids = stop_ids or gen.stop_token_ids(tokenizer, model)
    gen_config = gen.generation_config(tokenizer, max_new_tokens, do_sample=not greedy, stop_ids=stop_ids)
    texts: list[str] = []
    lengths: list[int] = []
    stopped: list[bool] = []
    exact: list[float] = []
    sampled: list[float] = []
    for start in range(0, len(prompts), batch_size):
        part = prompts[start : start + batch_size]
        query, query_mask = gen.encode_prompts(tokenizer, part, max_prompt_tokens)
        query, query_mask = query.to(model.device), query_mask.to(model.device)
        torch.manual_seed(seed + start)
        if reference is None:
            response = gen.generate(model, tokenizer, query, query_mask, gen_config)
        else:
            response, logits = gen.generate_with_logits(model, tokenizer, query, query_mask, gen_config)
        mask, has_stop, _ = pm.response_mask(response, stop_ids)
        stopped += has_stop.tolist()
        lengths += [int(x) for x in mask.sum(1).tolist()]
        response = response.masked_fill(mask == 0, tokenizer.pad_token_id)
        texts += gen.decode_responses(tokenizer, response, stop_ids)
        if reference is not None:
            kl = answer_kl(logits, reference, query, query_mask, response, mask)
            exact += kl[0]
            sampled += kl[1]
    return texts, lengths, stopped, ((exact, sampled) if reference is not None else None)


def answer_kl(
    logits: Any, reference: Any, query: Any, query_mask: Any, response: Any, mask: Any
) -> tuple[list[float], list[float]]:
    """Per answer: the exact KL to the reference summed over its positions (``ppo_math.exact_kl``, over the
    whole vocabulary) and the sampled k1 estimate sum(log pi - log pi_ref).

    The policy's side is the sampler's own logits (``generate_with_logits``: exactly what each token was
    drawn from), the reference's one forward pass over prompt + answer with the prompt's left padding
    skipped by the position ids, in eval mode, without the KV cache. Why not a second policy forward: it
    recomputed what sampling had just computed, about a fifth of an evaluation's time (the two agree to
    float rounding; tested on a model against itself and against a full forward)."""
    import torch

    from rewardlab import ppo_math as pm
    from rewardlab.generation import position_ids

    attention = torch.cat([query_mask, mask.long()], 1)
    n = response.shape[1]
    with torch.no_grad():
        ref_logits = reference(
            input_ids=torch.cat([query, response], 1),
            attention_mask=attention,
            position_ids=position_ids(attention),
            logits_to_keep=n + 1,
            use_cache=False,
        ).logits[:, :-1]
    exact: list[float] = []
    sampled: list[float] = []
    for rows in torch.split(torch.arange(len(response)), 16):  # caps the [rows, n, vocab] temporaries
        mine, theirs, keep = logits[rows].float(), ref_logits[rows].float(), mask[rows]
        exact += (pm.exact_kl(mine, theirs) * keep).sum(1).tolist()
        tokens = response[rows]
        diff = pm.logprobs_from_logits(mine, tokens) - pm.logprobs_from_logits(theirs, tokens)
        sampled += (diff * keep).sum(1).tolist()
    return exact, sampled


def reference_settings(
    reference_name: str,
    tokenizer: Any,
    prompts: list[Any],
    max_prompt_tokens: int,
    **decoding: Any,
) -> dict[str, Any]:
    """Everything that decides the reference's answers: the model, the prompts' token ids as the
    reference sees them (chat template and tokenizer included), and ``decoding`` (seed, greedy, limits,
    batch size, stop ids). Two evaluations with equal settings draw the same reference answers."""
    query, mask = gen.encode_prompts(tokenizer, prompts, max_prompt_tokens)
    digest = hashlib.sha256()
    for row, keep in zip(query.tolist(), mask.tolist(), strict=True):
        digest.update(json.dumps([t for t, k in zip(row, keep, strict=True) if k]).encode())
    return {
        "reference": reference_name,
        "prompt_ids_sha256": digest.hexdigest(),
        "n_samples": len(prompts),
        "max_prompt_tokens": max_prompt_tokens,
        **decoding,
    }


def reused_reference(source: str, settings: dict[str, Any]) -> tuple[list[str], list[int], list[bool]]:
    """The reference answers, lengths and stop flags of an earlier evaluation of run ``source``, refused
    unless that evaluation's reference settings equal ``settings``."""
    folder = Path(source)
    metrics_file, samples_file = folder / "metrics.json", folder / "samples.jsonl"
    if not (metrics_file.is_file() and samples_file.is_file()):
        raise UserError(
            f"--reference-from {source}: no metrics.json and samples.jsonl from an eval policy there"
        )
    earlier = json.loads(metrics_file.read_text()).get("eval_reference_settings")
    if not isinstance(earlier, dict):
        raise UserError(
            f"{metrics_file}: field 'eval_reference_settings' missing (evaluated by an older rewardlab): "
            "evaluate that run again, or sample the reference here"
        )
    differ = sorted(k for k in set(settings) | set(earlier) if settings.get(k) != earlier.get(k))
    if differ:
        shown = ", ".join(f"{k}: {earlier.get(k)!r} there, {settings.get(k)!r} here" for k in differ)
        raise UserError(f"--reference-from {source}: its reference answers were drawn differently ({shown})")
    rows = [
        json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    if len(rows) != settings["n_samples"] or any("reference_stopped" not in r for r in rows):
        raise UserError(f"{samples_file}: expected {settings['n_samples']} rows with 'reference_stopped'")
    return (
        [r["reference"] for r in rows],
        [int(r["reference_length"]) for r in rows],
        [bool(r["reference_stopped"]) for r in rows],
    )


def best_of_n(
    reference: Any,
    tokenizer: Any,
    prompts: list[Any],
    n: int,
    selector: Any,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    max_prompt_tokens: int,
    stop_ids: list[int],
) -> list[str]:
    """Per prompt, the reference's answer (of ``n`` samples) that ``selector`` (an RM scorer) scores highest."""
    repeated = [p for p in prompts for _ in range(n)]
    texts, _, _, _ = sample(
        reference, tokenizer, repeated, max_new_tokens, seed + 7919, False, batch_size,
        max_prompt_tokens, stop_ids,
    )  # fmt: skip
    scores = selector.score(repeated, texts)[:, 0].tolist()
    out = []
    for i in range(len(prompts)):
        block = range(i * n, (i + 1) * n)
        out.append(texts[max(block, key=lambda j: scores[j])])
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


def paired_gain(
    prompts: list[Any], policy: list[float | None], reference: list[float | None]
) -> tuple[float | None, float | None]:
    """Mean of policy - reference and its standard error, with the samples of one prompt averaged first.

    Why per prompt: answers to one prompt share its difficulty, so they are not independent draws; the
    prompt is the unit that was sampled, and an SE over samples would claim more certainty than there is.
    """
    by_prompt: dict[str, list[float]] = {}
    for prompt, a, b in zip(prompts, policy, reference, strict=True):
        if a is not None and b is not None:
            by_prompt.setdefault(json.dumps(prompt, sort_keys=True), []).append(a - b)
    diffs = [sum(v) / len(v) for v in by_prompt.values()]
    if not diffs:
        return None, None
    gain = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return gain, None
    var = sum((d - gain) ** 2 for d in diffs) / (len(diffs) - 1)
    return gain, (var / len(diffs)) ** 0.5


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
    best_of: int = 0,
    reference_from: str | None = None,
    device: Any = "auto",
    dtype: Any = "float32",
) -> dict[str, Any]:
    """Evaluate, write ``<run>/samples.jsonl``, merge the metrics into ``<run>/metrics.json``; return them.
    ``reference_from``: an earlier evaluated run whose reference answers to reuse (see module doc).
    ``device``/``dtype``: where and in which dtype the policy, reference and RMs run (rewardlab/devices.py;
    ``auto`` is this process's accelerator)."""
    from rewardlab import devices

    device, dtype = devices.resolve_device(device), devices.parse_dtype(dtype)
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
    if best_of and not (reward_model_of(cfg) or rm_path):
        raise UserError("--best-of needs a reward model to select with: pass --reward-model")
    limit = max_new_tokens or int((cfg.get("ppo") or {}).get("max_new_tokens") or 48)
    max_prompt = int((cfg.get("data") or {}).get("max_length") or 512)

    # The run's own config decides whether its base/reference and RM may be pickle files or run code.
    model_cfg = cfg.get("model") or {}
    allow_pickle = bool(model_cfg.get("allow_pickle", False))
    trust = bool(model_cfg.get("trust_remote_code", False))
    tokenizer = models.load_tokenizer(str(run / "model"), trust_remote_code=trust)
    policy = models.build_reference(  # frozen, eval mode
        str(run / "model"), dtype=dtype, trust_remote_code=trust, device=device
    )
    reference = models.build_reference(
        reference_name, dtype=dtype, trust_remote_code=trust, allow_pickle=allow_pickle, device=device
    )
    stops = sorted(set(gen.stop_token_ids(tokenizer, policy)) | set(gen.stop_token_ids(tokenizer, reference)))
    texts_prompts = [item["prompt"] for item in items]
    policy_texts, lengths, policy_stopped, kl_pair = sample(
        policy, tokenizer, texts_prompts, limit, seed, greedy, batch_size, max_prompt, stops, reference
    )
    kls, kls_sampled = kl_pair
    settings = reference_settings(
        reference_name, tokenizer, texts_prompts, max_prompt, seed=seed, greedy=greedy,
        max_new_tokens=limit, batch_size=batch_size, stop_token_ids=stops,
        device=device.type, dtype=str(dtype).removeprefix("torch."),
    )  # fmt: skip
    if reference_from:
        ref_texts, ref_len, ref_stopped = reused_reference(reference_from, settings)
    else:
        ref_texts, ref_len, ref_stopped, _ = sample(
            reference, tokenizer, texts_prompts, limit, seed, greedy, batch_size, max_prompt, stops
        )

    rm_policy = rm_ref = [None] * len(items)
    scorer = None
    if rm_path:
        from rewardlab.scoring import RewardScorer

        scorer = RewardScorer.from_path(
            rm_path, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust
        )
        rm_policy = scorer.score(texts_prompts, policy_texts)[:, 0].tolist()
        rm_ref = scorer.score(texts_prompts, ref_texts)[:, 0].tolist()
    truth_policy = [truth(item["meta"], t) for item, t in zip(items, policy_texts, strict=True)]
    truth_ref = [truth(item["meta"], t) for item, t in zip(items, ref_texts, strict=True)]

    wins = None
    if rm_path:
        wins = mean(
            [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rm_policy, rm_ref, strict=True)]
        )
    rm_gain, rm_gain_se = paired_gain(texts_prompts, rm_policy, rm_ref)
    truth_gain, truth_gain_se = paired_gain(texts_prompts, truth_policy, truth_ref)
    metrics = {
        "rm_score_mean": mean(rm_policy),
        "ref_rm_score_mean": mean(rm_ref),
        "rm_gain": rm_gain,  # policy - reference, paired per prompt: gain +- 2 * se excluding 0 is clear
        "rm_gain_se": rm_gain_se,
        "win_rate_vs_ref": wins,
        "kl_to_ref": mean(kls),
        "kl_to_ref_sampled": mean(kls_sampled),
        "truth_score_mean": mean(truth_policy),
        "ref_truth_score_mean": mean(truth_ref),
        "truth_gain": truth_gain,
        "truth_gain_se": truth_gain_se,
        "response_length_mean": mean(lengths),
        "ref_response_length_mean": mean(ref_len),
        "stop_rate": mean([float(x) for x in policy_stopped]),
        "ref_stop_rate": mean([float(x) for x in ref_stopped]),
        "stop_token_ids": stops,
        "eval_prompts": len(items) // samples_per_prompt,
        "eval_samples": len(items),
        "eval_reward_model": rm_path,
        "eval_reference": reference_name,
        "eval_decoding": "greedy" if greedy else f"sampling(seed={seed}, temperature=1)",
        "eval_device": str(device),
        "eval_dtype": str(dtype).removeprefix("torch."),
        "eval_reference_settings": settings,
        "eval_reference_from": reference_from,
    }
    bon_texts: list[Any] = [None] * len(items)
    if best_of:
        import math

        from rewardlab.scoring import RewardScorer

        select_path = reward_model_of(cfg) or rm_path
        selector = (
            scorer
            if select_path == rm_path and scorer is not None
            else RewardScorer.from_path(
                select_path, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust
            )
        )
        bon_texts = best_of_n(
            reference, tokenizer, texts_prompts, best_of, selector, limit, seed, batch_size, max_prompt, stops
        )
        bon_truth = [truth(item["meta"], t) for item, t in zip(items, bon_texts, strict=True)]
        metrics.update(
            best_of_n=best_of,
            best_of_n_select_rm=select_path,
            best_of_n_truth_score_mean=mean(bon_truth),
            best_of_n_kl_bound=math.log(best_of) - (best_of - 1) / best_of,
        )
        if scorer is not None:
            bon_rm = scorer.score(texts_prompts, bon_texts)[:, 0].tolist()
            metrics.update(
                best_of_n_rm_score_mean=mean(bon_rm),
                best_of_n_win_rate_vs_ref=mean(
                    [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(bon_rm, rm_ref, strict=True)]
                ),
                win_rate_vs_best_of_n=mean(
                    [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rm_policy, bon_rm, strict=True)]
                ),
            )
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
            "policy_length": p_len,
            "reference_length": r_len,
            "policy_stopped": p_stop,
            "reference_stopped": r_stop,
            **({"best_of_n": bon} if best_of else {}),
        }
        for item, p_text, r_text, p_rm, r_rm, p_t, r_t, kl, p_len, r_len, p_stop, r_stop, bon in zip(
            items,
            policy_texts,
            ref_texts,
            rm_policy,
            rm_ref,
            truth_policy,
            truth_ref,
            kls,
            lengths,
            ref_len,
            policy_stopped,
            ref_stopped,
            bon_texts,
            strict=True,
        )  # fmt: skip
    ]
    with (run / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    existing = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    runs.write_metrics(run, {**existing, **metrics})
    return metrics
