"""The pipeline's eval stage: the RM and every policy on held-out prompts the training never saw.

Why fresh simulated prompts: the simulator knows the truth, so the RM's accuracy is measured against the
true ranking (not against noisy rater labels) and each policy's answers get their ground-truth score.
The held-out prompts come from the pipeline's simulate config with another seed (``eval.seed``); without a
simulate stage the RM keeps its own eval metrics and the policies are evaluated on their eval split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardlab import config as cfglib


def held_out_items(ctx: Any, opts: Any) -> list[dict[str, Any]] | None:
    """Simulated items ``{"id", "prompt", "responses", "meta": {"task"}}`` on prompts unseen in training."""
    if "simulate" not in ctx.outputs:
        return None
    from rewardlab.data.simulate import make_items
    from rewardlab.recipes.pipeline_state import stage_raw

    raw = stage_raw(ctx.cfg, "simulate")
    raw = {**raw, "seed": opts.seed, "prompts": opts.prompts, "sweep": None, "stage": "simulate"}
    sim_cfg = cfglib.load(None, [], stage="simulate", base=raw)
    train_prompts = _prompts_of(ctx.outputs["simulate"].data)
    return [it for it in make_items(sim_cfg) if it["prompt"] not in train_prompts]


def _prompts_of(dataset: Path) -> set[str]:
    from rewardlab.data.dataset import load_dataset

    return {p for p in load_dataset(dataset)["prompt"]}


def truth_records(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items ranked by their true utility (1 is best; equal utilities tie): the RM's answer key."""
    from rewardlab.data.schema import normalize
    from rewardlab.data.sim_tasks import true_utilities

    out = []
    for it in items:
        util = true_utilities(it["meta"]["task"], it["responses"])
        order = sorted(set(util), reverse=True)
        ranks = [order.index(u) + 1 for u in util]
        out.append(
            normalize(
                {
                    "id": it["id"],
                    "prompt": it["prompt"],
                    "responses": it["responses"],
                    "ranks": ranks,
                    "meta": it["meta"],
                }
            )
        )
    return out


def evaluate_rm(
    model_dir: Path,
    records: list[dict[str, Any]],
    device: Any = "auto",
    dtype: Any = "float32",
    batch_size: int = 32,
) -> dict[str, Any]:
    from rewardlab.eval.rm import evaluate_scorer
    from rewardlab.scoring import RewardScorer

    scorer = RewardScorer.from_path(model_dir, device=device, dtype=dtype, where="eval")
    metrics = evaluate_scorer(scorer, records, batch_size=batch_size)
    return {k: v for k, v in metrics.items() if not isinstance(v, dict) or k.startswith("accuracy_by")}


def run(opts: Any, run_dir: Path, ctx: Any) -> dict[str, Any]:
    """Write ``<run>/metrics.json`` with ``rm_truth_*`` and ``<policy>.*`` metrics; return them."""
    from rewardlab import devices, runs
    from rewardlab.eval.policy import evaluate_run
    from rewardlab.recipes.pipeline_state import POLICY_STAGES, tracking_for
    from rewardlab.tracking import open_tracker

    devices.resolve_device(opts.device, "eval.device")  # a missing device is refused before any work
    runs.prepare_run(opts, {"stage": "eval", "pipeline": ctx.cfg.name}, run_dir=run_dir)
    tracker = open_tracker(
        cfglib.TrackingConfig.model_validate(tracking_for(ctx, "eval", {})),
        run_dir,
        opts.model_dump(mode="json"),
    )
    items = held_out_items(ctx, opts)
    prompts_file = None
    metrics: dict[str, Any] = {}
    if items:
        prompts_file = run_dir / "heldout_prompts.jsonl"
        with prompts_file.open("w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps({"prompt": it["prompt"], "meta": it["meta"]}, ensure_ascii=False) + "\n")
        metrics["heldout_prompts"] = len(items)
    rm = ctx.outputs.get("rm")
    if rm is not None and items:
        rm_metrics = evaluate_rm(rm.model, truth_records(items), opts.device, opts.dtype)
        metrics.update({f"rm_truth_{k}": v for k, v in rm_metrics.items() if not isinstance(v, dict)})
    for stage in POLICY_STAGES:
        out = ctx.outputs.get(stage)
        if out is None:
            continue
        pm = evaluate_run(
            str(out.run_dir),
            prompts=str(prompts_file) if prompts_file else None,
            n=opts.prompts,
            reward_model=str(rm.model) if rm is not None else None,
            max_new_tokens=opts.max_new_tokens,
            seed=opts.seed,
            batch_size=opts.batch_size,
            device=opts.device,
            dtype=opts.dtype,
        )
        metrics.update({f"{stage}.{k}": v for k, v in pm.items() if isinstance(v, (int, float)) or v is None})
        samples = out.run_dir / "samples.jsonl"
        if samples.is_file():  # policy samples as a tracked table (a wandb Table with backend wandb)
            rows = [
                json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
            tracker.log_table(f"{stage}_samples", rows)
    tracker.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=0)
    tracker.summary(metrics)
    tracker.finish()
    runs.write_metrics(run_dir, metrics)
    return metrics
