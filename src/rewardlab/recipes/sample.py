"""`rewardlab sample`: the next round for the raters.

Top to bottom: read the prompts (unique prompts of a dataset, ``meta.task`` kept), generate K answers per
prompt with the policy (batched, left padding, the policy's chat template), score every answer with the
reward model(s), turn the answers into candidate items (pairs for the pairwise template, whole K-groups for
the ranker), choose ``budget`` items with the selection strategy, and write the batch:
``batch.jsonl`` (``{"id", "prompt", "responses", "meta"}``: what ``simulate rate`` reads), the export for
the rating tool, ``samples.jsonl`` (every generated answer with its rewards) and the manifest (policy, RMs).

Selection strategies (pure functions below, tested in tests/unit/test_selection.py):
- ``random``: a seeded shuffle; the baseline.
- ``uncertainty``: pairs whose RM preference probability sigmoid(r_i - r_j) is nearest 0.5 (mean over an
  ensemble); the labels the RM learns most from.
- ``disagreement``: pairs on which the RMs of an ensemble (or the rubric heads of one RM) disagree most:
  the spread of their preference probabilities.
- ``coverage``: spread over task families and prompts (round robin), most uncertain first within each.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import UserError

Prompt = str | list[dict[str, str]]


# ---------------------------------------------------------------- candidate items and selection


@dataclass
class Group:
    """One prompt with its distinct generated answers and their rewards.

    ``overall``: [K, R] the overall reward of each answer under each of R reward models.
    ``heads``: [K, H] every head of the first reward model (rubric heads), or None.
    """

    prompt: Prompt
    meta: dict[str, Any]
    responses: list[str]
    overall: np.ndarray | None = None
    heads: np.ndarray | None = None
    head_names: list[str] = field(default_factory=list)


@dataclass
class Item:
    """What one rater sees: a prompt and 2 (pairwise) or K (ranker) answers, with the selection score."""

    group: int
    indices: tuple[int, ...]
    score: float = 0.0
    p: float | None = None  # RM preference probability of the first answer over the second (pairs)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def family_of(meta: dict[str, Any]) -> str:
    task = meta.get("task") if isinstance(meta, dict) else None
    if isinstance(task, dict) and task.get("family"):
        return str(task["family"])
    return str(meta.get("domain") or meta.get("family") or "all") if isinstance(meta, dict) else "all"


def candidate_items(groups: list[Group], unit: str) -> list[Item]:
    """Every pair of distinct answers per prompt (``unit="pair"``) or each whole group (``"group"``)."""
    items = []
    for g, group in enumerate(groups):
        k = len(group.responses)
        if k < 2:
            continue
        if unit == "group":
            items.append(Item(g, tuple(range(k))))
        else:
            items.extend(Item(g, (i, j)) for i, j in combinations(range(k), 2))
    return items


def pair_probabilities(rewards: np.ndarray, i: int, j: int) -> np.ndarray:
    """sigmoid(r_i - r_j) for each column of ``rewards`` [K, C] (one per RM or per head)."""
    return sigmoid(rewards[i] - rewards[j])


def uncertainty_score(group: Group, indices: tuple[int, ...]) -> tuple[float, float]:
    """1 - 2|p - 0.5| averaged over the item's pairs, with p the ensemble-mean preference probability.

    1.0: the RM cannot tell the answers apart (most informative label); 0.0: it is sure.
    """
    if group.overall is None:
        raise UserError("select=uncertainty needs reward_models: give at least one RM run or model folder")
    scores, probs = [], []
    for i, j in combinations(indices, 2):
        p = float(pair_probabilities(group.overall, i, j).mean())
        probs.append(p)
        scores.append(1.0 - 2.0 * abs(p - 0.5))
    return float(np.mean(scores)), probs[0]


def disagreement_score(group: Group, indices: tuple[int, ...]) -> float:
    """Spread (std) of the preference probabilities across RMs of the ensemble, else across rubric heads."""
    if group.overall is not None and group.overall.shape[1] >= 2:
        rewards = group.overall
    elif group.heads is not None and group.heads.shape[1] >= 2:
        rewards = group.heads
    else:
        raise UserError(
            "select=disagreement needs two or more reward_models or one RM with two or more heads"
        )
    spreads = [float(np.std(pair_probabilities(rewards, i, j))) for i, j in combinations(indices, 2)]
    return float(np.mean(spreads))


def score_items(items: list[Item], groups: list[Group], strategy: str, seed: int) -> list[Item]:
    """Fill ``item.score`` (higher is chosen first) for ``random``, ``uncertainty``, ``disagreement``;
    ``coverage`` uses uncertainty (or random without an RM) to order items within a family."""
    rng = np.random.default_rng(seed)
    noise = rng.random(len(items))
    for n, item in enumerate(items):
        group = groups[item.group]
        if group.overall is not None and len(item.indices) >= 2:
            unc, p = uncertainty_score(group, item.indices)
            item.p = p
        else:
            unc = None
        if strategy == "random":
            item.score = float(noise[n])
        elif strategy == "uncertainty":
            item.score = unc if unc is not None else uncertainty_score(group, item.indices)[0]
        elif strategy == "disagreement":
            item.score = disagreement_score(group, item.indices)
        elif strategy == "coverage":
            item.score = unc if unc is not None else float(noise[n])
        else:
            raise UserError(
                f"select: unknown strategy '{strategy}' (random, uncertainty, disagreement, coverage)"
            )
    return items


def select_items(
    items: list[Item],
    groups: list[Group],
    strategy: str,
    budget: int,
    seed: int = 0,
    max_per_prompt: int | None = None,
) -> list[Item]:
    """Score the items and choose ``budget`` of them (fewer when there are fewer candidates).

    ``max_per_prompt`` caps how many items one prompt contributes. ``coverage`` takes items round robin
    over task families, and within a family round robin over prompts, best-scored first.
    """
    if budget < 1:
        raise UserError(f"budget must be at least 1, got {budget}")
    score_items(items, groups, strategy, seed)
    rng = np.random.default_rng(seed + 1)
    tiebreak = {id(it): float(x) for it, x in zip(items, rng.random(len(items)))}
    ranked = sorted(items, key=lambda it: (-it.score, tiebreak[id(it)]))
    if strategy == "coverage":
        ranked = _round_robin(ranked, groups)
    chosen: list[Item] = []
    per_prompt: dict[int, int] = defaultdict(int)
    for item in ranked:
        if max_per_prompt is not None and per_prompt[item.group] >= max_per_prompt:
            continue
        chosen.append(item)
        per_prompt[item.group] += 1
        if len(chosen) >= budget:
            break
    return chosen


def _round_robin(ranked: list[Item], groups: list[Group]) -> list[Item]:
    """Interleave families, and prompts within a family, keeping each list's order (best first)."""
    by_family: dict[str, dict[int, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for item in ranked:
        by_family[family_of(groups[item.group].meta)][item.group].append(item)
    family_queues = []
    for prompts in by_family.values():
        queue, lists = [], list(prompts.values())
        for r in range(max(len(x) for x in lists)):
            queue.extend(x[r] for x in lists if r < len(x))
        family_queues.append(queue)
    out = []
    for r in range(max((len(q) for q in family_queues), default=0)):
        out.extend(q[r] for q in family_queues if r < len(q))
    for pos, item in enumerate(out):  # the score becomes the coverage rank, so the batch shows the order
        item.score = round(1.0 - pos / max(len(out), 1), 6)
    return out


def dedupe_answers(answers: list[str]) -> tuple[list[str], int, int]:
    """Distinct non-empty answers in first-seen order, plus counts of empty and duplicate ones dropped.

    A rating item cannot hold an empty answer or the same answer twice (canonical record rules), so they
    are dropped here and counted in the manifest, never silently.
    """
    seen: list[str] = []
    empty = dup = 0
    for text in answers:
        if not text.strip():
            empty += 1
        elif text in seen:
            dup += 1
        else:
            seen.append(text)
    return seen, empty, dup


def batch_lines(
    chosen: list[Item],
    groups: list[Group],
    policy: str,
    reward_models: list[str],
    strategy: str,
    batch_name: str,
) -> list[dict[str, Any]]:
    """The batch file rows: ``{"id", "prompt", "responses", "meta"}`` (no ranks: the raters add those)."""
    rows = []
    for item in chosen:
        group = groups[item.group]
        responses = [group.responses[i] for i in item.indices]
        meta = dict(group.meta)
        meta.update(
            {
                "policy": policy,
                "reward_model": reward_models[0] if len(reward_models) == 1 else (reward_models or None),
                "selection": strategy,
                "selection_score": round(float(item.score), 6),
                "batch": batch_name,
            }
        )
        if item.p is not None:
            meta["rm_p_first"] = round(float(item.p), 6)
        if group.overall is not None:
            meta["rm_rewards"] = [round(float(group.overall[i].mean()), 6) for i in item.indices]
        digest = hashlib.sha1(json.dumps([group.prompt, responses], sort_keys=True).encode()).hexdigest()[:12]
        rows.append(
            {"id": f"{batch_name}-{digest}", "prompt": group.prompt, "responses": responses, "meta": meta}
        )
    return rows


# ---------------------------------------------------------------- prompts, generation, scoring


def read_prompts(
    path: str, num_prompts: int | None, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Unique prompts (with meta) of a dataset folder or a JSONL file; a seeded subset when capped."""
    from rewardlab.data.dataset import is_dataset_dir
    from rewardlab.recipes import policy_common as pc

    p = Path(path)
    if is_dataset_dir(p):
        records, info = pc.read_records(str(p))
        prompts = pc.unique_prompts(records)
    elif p.is_file():
        prompts = [{"prompt": r["prompt"], "meta": r["meta"]} for r in pc.read_prompt_file(str(p))]
        from rewardlab.data.schema import prompt_key

        seen: set[str] = set()
        prompts = [
            r for r in prompts if not (prompt_key(r["prompt"]) in seen or seen.add(prompt_key(r["prompt"])))
        ]
        info = {"path": str(p), "fingerprint": hashlib.sha256(p.read_bytes()).hexdigest()[:16]}
    else:
        raise UserError(f"prompts: {path}: not a dataset folder or a JSONL file of prompts")
    if not prompts:
        raise UserError(f"prompts: {path}: no prompts found")
    if num_prompts is not None and num_prompts < len(prompts):
        order = np.random.default_rng(seed).permutation(len(prompts))[:num_prompts]
        prompts = [prompts[i] for i in sorted(order)]
    info["prompts"] = len(prompts)
    return prompts, info


def policy_path(policy: str) -> str:
    """A policy run folder -> its model/ folder; a model folder or a source (offline:..., hub id) as given."""
    p = Path(policy)
    if (p / "model" / "config.json").is_file():
        return str(p / "model")
    if p.exists() and not (p / "config.json").is_file():
        raise UserError(f"policy: {policy}: not a model folder or a run folder with model/")
    return policy


def generate_answers(cfg: Any, prompts: list[Prompt]) -> list[list[str]]:
    """K sampled answers per prompt, generated in batches of prompts x K with left padding."""
    import torch

    from rewardlab import devices, models
    from rewardlab.recipes import policy_common as pc

    source = policy_path(cfg.policy)
    models.check_model_source(
        models.resolve(source), source, cfg.allow_pickle, cfg.trust_remote_code, where="sample"
    )
    tokenizer = models.load_tokenizer(source, trust_remote_code=cfg.trust_remote_code)
    tokenizer.padding_side = "left"
    model = models.build_reference(  # frozen, eval mode, on the sampling device
        source,
        dtype=cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
        allow_pickle=cfg.allow_pickle,
        device=devices.resolve_device(cfg.device, "sample.device"),
    )
    stops = pc.stop_token_ids(tokenizer, model)  # eos, the generation config's and the end-of-turn token
    gen = pc.generation_config(
        tokenizer, cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
        stop_ids=stops,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    per_batch = max(1, cfg.batch_size // cfg.k)
    out: list[list[str]] = []
    for start in range(0, len(prompts), per_batch):
        chunk = prompts[start : start + per_batch]
        repeated = [p for p in chunk for _ in range(cfg.k)]
        ids, mask = pc.encode_prompts(tokenizer, repeated, cfg.max_prompt_length)
        ids, mask = ids.to(model.device), mask.to(model.device)
        texts = pc.decode_responses(tokenizer, pc.generate(model, tokenizer, ids, mask, gen), stops)
        out.extend(texts[n * cfg.k : (n + 1) * cfg.k] for n in range(len(chunk)))
    return out


def score_groups(
    groups: list[Group],
    reward_models: list[str],
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device: Any = "auto",
    dtype: Any = "float32",
    batch_size: int = 32,
) -> list[str]:
    """Fill ``overall`` (each RM's overall head) and ``heads`` (all heads of the first RM); return head names."""
    from rewardlab.scoring import RewardScorer

    if not reward_models:
        return []
    flat_prompts = [g.prompt for g in groups for _ in g.responses]
    flat_responses = [r for g in groups for r in g.responses]
    columns, head_names = [], []
    for n, path in enumerate(reward_models):
        scorer = RewardScorer.from_path(
            path,
            device=device,
            dtype=dtype,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
            where="sample",
        )
        scores = scorer.score(flat_prompts, flat_responses, batch_size=batch_size)
        col = scorer.heads.index("overall") if "overall" in scorer.heads else 0
        columns.append(scores[:, col])
        if n == 0:
            head_names = list(scorer.heads)
            first = scores
    overall = np.stack(columns, axis=1)
    start = 0
    for g in groups:
        k = len(g.responses)
        g.overall = overall[start : start + k]
        g.heads = first[start : start + k]
        g.head_names = head_names
        start += k
    return head_names


def truth_of(meta: dict[str, Any], response: str) -> float | None:
    """The simulator's ground-truth score of an answer when the prompt is simulated (meta.task)."""
    task = meta.get("task") if isinstance(meta, dict) else None
    if not isinstance(task, dict):
        return None
    try:
        from rewardlab.data.sim_tasks import truth_score
    except ImportError:
        return None
    return float(truth_score(task, response)["overall"])


# ---------------------------------------------------------------- export


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def export_batch(rows: list[dict[str, Any]], run_dir: Path, export: str, template: str) -> list[str]:
    """Write the batch for the rating tool with the data helper's exporters; returns the files written.

    ``canonical``: batch.jsonl itself is the canonical (unranked) export. ``label-studio``: tasks JSON plus
    the labeling config XML of the pairwise or ranker template. ``argilla``: records plus settings JSON.
    """
    if export == "canonical":
        return ["batch.jsonl"]
    if export == "label-studio":
        from rewardlab.data.formats.label_studio import export_label_studio

        info = export_label_studio(rows, run_dir / "label_studio_tasks.json", template=template)
        return [Path(info["out"]).name, Path(info["config"]).name]
    if export == "argilla":
        from rewardlab.data.formats.argilla import export_argilla

        info = export_argilla(rows, run_dir / "argilla_records.json")
        return [Path(info["out"]).name, Path(info["settings"]).name]
    raise UserError(f"export: unknown target '{export}' (label-studio, argilla, canonical)")


# ---------------------------------------------------------------- the recipe


def run(cfg: Any) -> dict[str, Any]:
    """Generate, score, select, export; returns the metrics written to metrics.json."""
    from rewardlab import runs
    from rewardlab.tracking import open_tracker

    if cfg.select in ("uncertainty", "disagreement") and not cfg.reward_models:
        raise UserError(f"select={cfg.select} needs reward_models (a list of RM run or model folders)")
    from rewardlab import devices

    devices.resolve_device(cfg.device, "sample.device")  # a missing device is refused before any work
    prompts, prompt_info = read_prompts(cfg.prompts, cfg.num_prompts, cfg.seed)
    run_dir = runs.prepare_run(
        cfg, {"policy": cfg.policy, "reward_models": list(cfg.reward_models), "prompts": prompt_info}
    )
    tracker = open_tracker(cfg.tracking, run_dir, cfg.model_dump(mode="json"))
    answers = generate_answers(cfg, [p["prompt"] for p in prompts])
    groups, dropped_empty, dropped_dup = [], 0, 0
    for p, texts in zip(prompts, answers):
        distinct, empty, dup = dedupe_answers(texts)
        dropped_empty += empty
        dropped_dup += dup
        groups.append(Group(p["prompt"], p["meta"], distinct))
    usable = [g for g in groups if len(g.responses) >= 2]
    head_names = score_groups(
        usable, list(cfg.reward_models), cfg.allow_pickle, cfg.trust_remote_code, cfg.device, cfg.dtype,
        cfg.batch_size,
    )  # fmt: skip
    unit = "group" if cfg.template == "ranker" else "pair"
    items = candidate_items(usable, unit)
    if not items:
        raise UserError(
            f"sample: no prompt got two distinct non-empty answers (policy {cfg.policy}); raise k or temperature"
        )
    chosen = select_items(items, usable, cfg.select, cfg.budget, cfg.seed, cfg.max_per_prompt)
    batch_name = cfg.batch_name or Path(cfg.output_dir).name
    rows = batch_lines(chosen, usable, cfg.policy, list(cfg.reward_models), cfg.select, batch_name)
    write_jsonl(run_dir / "batch.jsonl", rows)
    exported = export_batch(rows, run_dir, cfg.export, cfg.template)

    samples = _sample_rows(usable, head_names)
    tracker.log_table("samples", samples)
    scores = [float(it.score) for it in chosen]
    metrics = {
        "prompts": len(prompts),
        "answers": sum(len(a) for a in answers),
        "distinct_answers": sum(len(g.responses) for g in groups),
        "dropped_empty": dropped_empty,
        "dropped_duplicate": dropped_dup,
        "prompts_without_pair": len(groups) - len(usable),
        "candidates": len(items),
        "selected": len(rows),
        "budget": cfg.budget,
        "selection": cfg.select,
        "selection_score_mean": float(np.mean(scores)),
        "rm_score_mean": _mean([s.get("rm_score") for s in samples]),
        "truth_score_mean": _mean([s.get("truth_score") for s in samples]),
        "response_length_mean": _mean([len(s["response"].split()) for s in samples]),
    }
    tracker.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=0)
    tracker.summary(metrics)
    tracker.finish()
    runs.update_manifest(
        run_dir,
        {"batch": "batch.jsonl", "export": {"to": cfg.export, "template": cfg.template, "files": exported}},
    )
    runs.write_metrics(run_dir, metrics)
    return metrics


def _sample_rows(groups: list[Group], head_names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for g in groups:
        for i, text in enumerate(g.responses):
            row: dict[str, Any] = {"prompt": g.prompt, "response": text}
            if g.overall is not None:
                row["rm_score"] = round(float(g.overall[i].mean()), 6)
            if g.heads is not None and len(head_names) > 1:
                row.update({f"rm_{h}": round(float(g.heads[i, n]), 6) for n, h in enumerate(head_names)})
            truth = truth_of(g.meta, text)
            if truth is not None:
                row["truth_score"] = round(truth, 4)
            row["family"] = family_of(g.meta)
            rows.append(row)
    return rows


def _mean(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.mean(nums)) if nums else None
