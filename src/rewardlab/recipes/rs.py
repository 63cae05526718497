"""`rewardlab train rs`: rejection-sampling fine-tuning (Llama 2's "rejection sampling", RAFT), one recipe.

Each round: the current policy answers every training prompt ``rs.num_samples`` times (seeded sampling at
``rs.temperature``, stopping on every stop token), the reward model scores the answers with its own
tokenizer and chat format, the best answer per prompt is kept, and the policy is fine-tuned on the kept
answers with TRL's SFTTrainer (completion-only loss, the ``train`` section's optimizer settings). The next
round samples from the tuned policy.

The policy trains on the exact tokens it sampled (the encoded prompt, then the answer up to and including
its stop token), not on decoded text pushed through the chat template again. Why: the template closes
every assistant turn with its end-of-turn token, so an answer cut by the length limit would be taught as
a finished answer ending mid-sentence. Here a cut answer carries no end token, and its loss covers only
what was sampled. ``rs.require_stop: true`` keeps only answers that stopped; at a short length limit that
selects short answers rather than the RM's best (on SmolLM2 at 128 tokens, 29 of 64 prompts had no
stopped answer and the policy learned to stop, not what the RM prefers).

It is the simple baseline DPO and PPO are compared against: no reference model, no value model, no
on-policy ratios, only best-of-n distilled back into the policy. ``eval policy`` compares the result with
the starting policy (the manifest's ``reference_model``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rewardlab import devices, models, runs
from rewardlab.errors import UserError
from rewardlab.recipes import policy_common as pc
from rewardlab.tracking import open_tracker


def sample_answers(
    model: Any, tokenizer: Any, prompts: list[Any], cfg: Any, round_index: int, stop_ids: list[int]
) -> tuple[list[list[str]], list[list[bool]], list[list[tuple[list[int], list[int]]]]]:
    """``num_samples`` answers per prompt: their text (for the RM), whether each ended on a stop token, and
    the sampled tokens (prompt ids without padding, answer ids up to and including the stop token), to
    train on exactly what was sampled. Seeded per answer."""
    from rewardlab import ppo_math as pm

    o = cfg.rs
    n = o.num_samples
    repeated = [p for p in prompts for _ in range(n)]
    gen = pc.generation_config(tokenizer, o.max_new_tokens, do_sample=False, stop_ids=stop_ids)
    texts: list[str] = []
    stopped: list[bool] = []
    tokens: list[tuple[list[int], list[int]]] = []
    model.eval()
    # Several processes share the generation batches (batch b on process b mod N) and exchange the results:
    # each batch is the same prompts with the same seeds as on one process, so the answers are too.
    rank, world = process_share()
    done: list[tuple[int, list[str], list[bool], list[tuple[list[int], list[int]]]]] = []
    for start in list(range(0, len(repeated), o.generation_batch_size))[rank::world]:
        part = repeated[start : start + o.generation_batch_size]
        seeds = [
            (cfg.train.seed * 1_000_003 + (round_index + 1) * 10_000_019 + start + i) * 2_654_435_761 % 2**63
            for i in range(len(part))
        ]
        ids, mask = pc.encode_prompts(tokenizer, part, cfg.data.max_length)
        ids, mask = ids.to(model.device), mask.to(model.device)
        response = pc.generate(
            model, tokenizer, ids, mask, gen, logits_processor=pc.seeded_sampling(seeds, o.temperature)
        )
        _, has_stop, last = pm.response_mask(response, stop_ids)
        rows = [
            (ids[row][mask[row].bool()].tolist(), response[row, : int(last[row]) + 1].tolist())
            for row in range(len(part))
        ]
        done.append((start, pc.decode_responses(tokenizer, response, stop_ids), has_stop.tolist(), rows))
    if world > 1:
        from accelerate.utils import gather_object

        done = gather_object(done)  # every process's batches, on every process
    for _, batch_texts, batch_stopped, batch_tokens in sorted(done, key=lambda b: b[0]):
        texts += batch_texts
        stopped += batch_stopped
        tokens += batch_tokens
    per_prompt = lambda xs: [xs[i * n : (i + 1) * n] for i in range(len(prompts))]  # noqa: E731
    return per_prompt(texts), per_prompt(stopped), per_prompt(tokens)


def process_share() -> tuple[int, int]:
    """(this process's index, number of processes) of the launch; (0, 1) for a single process. Starts
    accelerate's process state (the group TRL's trainer joins later) when there are several."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from accelerate import PartialState

    state = PartialState(cpu=pc.device_name() == "cpu")
    return state.process_index, state.num_processes


def refuse_sharding() -> None:
    """RS samples with the whole policy on every process between its SFT passes: under FSDP or ZeRO-3 no
    process holds it. Refused before any work (accelerate's launcher sets these variables)."""
    import os

    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    zero3 = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    if fsdp or zero3:
        raise UserError(
            f"train rs: not supported under {'FSDP' if fsdp else 'DeepSpeed ZeRO-3'} (each process samples with "
            "the whole policy); run it under DDP (configs/accelerate/ddp.yaml) or ZeRO-2"
        )


def select_best(
    prompts: list[Any],
    answers: list[list[str]],
    scores: list[list[float]],
    stopped: list[list[bool]],
    require_stop: bool,
    tokens: list[list[tuple[list[int], list[int]]]] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The best-scored answer per prompt (among those that stopped, when required); prompts with none
    skipped. Each kept row has the answer's text, score, whether it stopped and (given) its sampled tokens."""
    kept, skipped = [], 0
    for j, (prompt, texts, row, ends) in enumerate(zip(prompts, answers, scores, stopped, strict=True)):
        ok = [i for i in range(len(texts)) if texts[i] and (ends[i] or not require_stop)]
        if not ok:
            skipped += 1
            continue
        best = max(ok, key=lambda i: row[i])
        kept.append({"prompt": prompt, "response": texts[best], "score": row[best], "stopped": ends[best]})
        if tokens is not None:
            kept[-1]["prompt_ids"], kept[-1]["response_ids"] = tokens[j][best]
    return kept, skipped


def training_rows(kept: list[dict[str, Any]]) -> Any:
    """TRL's pre-tokenized format: the sampled prompt and answer ids, loss on the answer only. A stopped
    answer ends on its stop token (learned); a cut one ends where sampling stopped, with no end token."""
    from datasets import Dataset

    rows = [
        {
            "input_ids": k["prompt_ids"] + k["response_ids"],
            "completion_mask": [0] * len(k["prompt_ids"]) + [1] * len(k["response_ids"]),
        }
        for k in kept
    ]
    return Dataset.from_list(rows)


def fine_tune(
    model: Any, tokenizer: Any, demos: list[dict], cfg: Any, run_dir: Path, round_index: int
) -> Any:
    """One SFT pass on the kept answers' sampled tokens (TRL SFTTrainer); returns the trainer (its
    ``result`` attribute holds what ``train()`` returned)."""
    from trl import SFTConfig, SFTTrainer

    kwargs = pc.trainer_kwargs(cfg, run_dir, has_eval=False)
    kwargs.update(
        output_dir=str(run_dir / "checkpoints" / f"round-{round_index}"),
        save_strategy="no",
        seed=cfg.train.seed + round_index,
        data_seed=cfg.train.seed + round_index,
    )
    kwargs.pop("save_steps", None)
    # prompts were encoded to at most data.max_length tokens and answers sampled to rs.max_new_tokens: room
    # for both, so no sequence is cut and the policy learns in the very context it sampled in
    max_length = cfg.data.max_length + cfg.rs.max_new_tokens
    args = SFTConfig(**kwargs, max_length=max_length, completion_only_loss=True)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=training_rows(demos),
        processing_class=tokenizer,
        callbacks=[pc.finite_guard_callback("rs", run_dir)],
    )
    trainer.result = trainer.train()
    return trainer


def probe(
    model: Any, tokenizer: Any, prompts: list[Any], cfg: Any, stop_ids: list[int], scorer: Any
) -> tuple[float | None, float | None]:
    """Mean RM score and stop rate of the policy's answers on ``prompts`` (fixed seeds: paired start/end).

    Why optional (``rs.probe_prompts: 0``): at the defaults the two probes sample 512 answers, as many as a
    128-prompt round; a benchmark that evaluates on held-out prompts anyway spends that time for nothing."""
    if not prompts:
        return None, None
    answers, stopped, _ = sample_answers(model, tokenizer, prompts, cfg, -1, stop_ids)
    flat_prompts = [p for p, texts in zip(prompts, answers, strict=True) for _ in texts]
    scores = scorer.score(flat_prompts, [t for texts in answers for t in texts])[:, 0].tolist()
    return sum(scores) / len(scores), sum(map(sum, stopped)) / max(len(scores), 1)


def run(cfg: Any) -> dict[str, Any]:
    import torch

    from rewardlab.scoring import RewardScorer

    if cfg.train.resume:
        raise UserError("train.resume: `train rs` cannot resume yet (rounds are short); start it again")
    refuse_sharding()
    main = runs.is_main_process()  # under `accelerate launch` the main process writes, tracks and saves
    run_dir = runs.check_writable(cfg.output_dir)
    train_records, _, data_info = pc.split_records(cfg.data)
    prompts = [p["prompt"] for p in pc.unique_prompts(train_records)]
    if not prompts:
        raise UserError(f"{cfg.data.train}: no training prompts")
    if main:
        runs.clear_stale_checkpoints(run_dir)
    runs.prepare_run(
        cfg,
        {
            "base_model": cfg.model.name_or_path,
            "reference_model": cfg.model.name_or_path,
            "data": data_info,
            "reward_model": cfg.rs.reward_model,
            "train_prompts": len(prompts),
        },
    )
    tracker = open_tracker(cfg.tracking, run_dir, cfg.model_dump(mode="json"), resume=False, main=main)
    torch.manual_seed(cfg.train.seed)
    tokenizer = models.load_tokenizer(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    # on this process's accelerator from the start: the first round and the start probe sample there too
    # (the trainer would move it only at the first SFT pass)
    device = devices.accelerator_device()
    model = pc.build_policy(cfg).to(device)
    stop_ids = pc.stop_token_ids(tokenizer, model)
    scorer = RewardScorer.from_path(
        cfg.rs.reward_model,
        device=device,
        allow_pickle=cfg.model.allow_pickle,
        trust_remote_code=cfg.model.trust_remote_code,
        attn_implementation=cfg.model.attn_implementation,
    )
    probe_prompts = prompts[: cfg.rs.probe_prompts]
    start, start_stop = probe(model, tokenizer, probe_prompts, cfg, stop_ids, scorer)
    rng = random.Random(cfg.train.seed)
    history: list[dict[str, float]] = []
    steps = 0
    for round_index in range(cfg.rs.rounds):
        chosen = prompts
        if cfg.rs.prompts_per_round and cfg.rs.prompts_per_round < len(prompts):
            chosen = rng.sample(prompts, cfg.rs.prompts_per_round)
        answers, stopped, tokens = sample_answers(model, tokenizer, chosen, cfg, round_index, stop_ids)
        flat_prompts = [p for p, texts in zip(chosen, answers, strict=True) for _ in texts]
        flat = scorer.score(flat_prompts, [t for texts in answers for t in texts])[:, 0].tolist()
        n = cfg.rs.num_samples
        scores = [flat[i * n : (i + 1) * n] for i in range(len(chosen))]
        kept, skipped = select_best(chosen, answers, scores, stopped, cfg.rs.require_stop, tokens)
        if not kept:
            raise UserError(
                f"rs round {round_index + 1}: no answer ended on a stop token within rs.max_new_tokens="
                f"{cfg.rs.max_new_tokens}; raise it or set rs.require_stop=false"
            )
        trainer = fine_tune(model, tokenizer, kept, cfg, run_dir, round_index)
        result = trainer.result
        steps += result.global_step
        row = {
            "round": round_index + 1,
            "rm_score_mean": sum(flat) / len(flat),
            "kept_rm_score_mean": sum(k["score"] for k in kept) / len(kept),
            "stop_rate": sum(map(sum, stopped)) / max(len(flat), 1),
            "kept": len(kept),
            "skipped_no_stop": skipped,
            "kept_stopped": sum(k["stopped"] for k in kept),
            "sft_loss": result.training_loss,
            "sft_steps": result.global_step,
        }
        history.append(row)
        tracker.log({k: float(v) for k, v in row.items()}, step=round_index + 1)
        if main:
            print(
                f"rs: round {round_index + 1}/{cfg.rs.rounds}: RM score of samples {row['rm_score_mean']:.4f}, "
                f"kept {len(kept)} best answers (mean {row['kept_rm_score_mean']:.4f}), {skipped} prompts without "
                f"a stopped answer, {row['kept_stopped']} of the kept stopped, SFT loss {result.training_loss:.4f}"
            )
    # the tuned policy's own samples on the same prompts and seeds as at the start: did the RM score rise?
    end, end_stop = probe(model, tokenizer, probe_prompts, cfg, stop_ids, scorer)
    metrics: dict[str, Any] = {
        "rounds": cfg.rs.rounds,
        "steps": steps,
        "train_rm_score_start": start,
        "train_rm_score_end": end,
        "stop_rate_start": start_stop,
        "stop_rate_end": end_stop,
        "kept_per_round": [h["kept"] for h in history],
        "kept_stopped_per_round": [h["kept_stopped"] for h in history],
        "stop_token_ids": stop_ids,
    }
    final = pc.full_model(trainer.accelerator, trainer.model_wrapped, lambda: pc.build_policy(cfg))
    if not main:
        return metrics
    pc.save_policy(
        final,
        tokenizer,
        run_dir / "model",
        {
            "stage": "rs",
            "config": cfg,
            "metrics": metrics,
            "base_model": cfg.model.name_or_path,
            "reward_model": cfg.rs.reward_model,
            "data": cfg.data.train,
            "rounds": cfg.rs.rounds,
            "num_samples": cfg.rs.num_samples,
            "steps": steps,
        },
    )
    runs.write_metrics(run_dir, metrics)
    tracker.summary(metrics)
    tracker.finish()
    return metrics
