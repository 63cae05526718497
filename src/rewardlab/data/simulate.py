"""Simulated rating campaigns with a known ground truth.

Why: every later stage (rater report, aggregation, reward model, DPO/PPO, next-round sampling) needs data
whose right answer is known, so its quality can be measured instead of guessed. A campaign is:

1. prompts from task families with a checkable truth (``sim_tasks``), K short candidates each;
2. a true utility per candidate: ``truth_score(task, text)["overall"]`` plus a tiny fixed per-text jitter
   (``sim_tasks.jitter``, +-0.005) so no two candidates tie exactly;
3. a rater pool with profiles (``sim_raters``) judging each item ``overlap`` times, in a shuffled order;
4. gold reference records (``gold: true``, no rater, ranks = true order) for a ``gold_rate`` share of the
   clearest items, which raters also judge as usual.

``simulate_campaign(cfg) -> (records, truth)`` returns normalized canonical records and the truth dict
written to ``<out>/truth.json``::

    {"version": 1, "seed": 0, "utility": "...", "weights": {"helpfulness": 0.4, ...}, "jitter": 0.01,
     "tie_epsilon": 0.03,
     "raters": {"r-00": {"profile": "careful", "temperature": 0.04, "p_first": 0.0, ...}, ...},
     "utilities": {<group_key>: {<response text>: true utility, ...}, ...},
     "groups": {<group_key>: {"item": "p-0003", "task": {...}, "rubric": {<text>: {"helpfulness", "accuracy",
                "harmlessness", "overall"}}, "gold": false, "min_gap": 0.21}, ...},
     "config": {...}}            # the resolved SimulateConfig (campaigns; `rate` writes "batch" instead)
 ``rate_items`` / ``rate_batch`` let the same pool
judge an exported next-round batch (``read_batch`` reads JSONL or Label Studio tasks).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.data import sim_raters as raters_lib
from rewardlab.data.schema import group_key, normalize
from rewardlab.data.sim_tasks import (
    FAMILIES,
    JITTER,
    WEIGHTS,
    make_candidates,
    make_prompt,
    true_utilities,
    truth_score,
)
from rewardlab.errors import UserError

__all__ = [
    "simulate_campaign",
    "make_items",
    "rate_items",
    "rate_batch",
    "read_batch",
    "write_campaign",
    "truth_score",
    "true_utilities",
    "sweep_settings",
    "evaluate_majority",
]

TRUTH_FILE = "truth.json"
TRUTH_VERSION = 1


# ---------------------------------------------------------------- prompts and candidates


def _k_choices(cfg: Any, n: int, rng: np.random.Generator) -> list[int]:
    """K per item: ``k_mix`` shares (largest-remainder counts, shuffled) or the fixed ``k``."""
    if not cfg.k_mix:
        return [cfg.k] * n
    counts = raters_lib.allocate({str(k): v for k, v in cfg.k_mix.items()}, n)
    ks = [int(k) for k in counts]
    rng.shuffle(ks)
    return ks


def _new_prompt(
    family: str, families: list[str], exhausted: set[str], seen: set[str], rng: np.random.Generator
) -> tuple[str, dict[str, Any]]:
    """A prompt not seen yet. A family whose small tables run out (format, safety, capital, antonym hold
    100-130 distinct prompts each) hands over to the next family that still has new ones."""
    for fam in [family] + [f for f in families if f != family]:
        if fam in exhausted:
            continue
        for _ in range(200):
            prompt, task = make_prompt(fam, rng)
            if prompt not in seen:
                return prompt, task
        exhausted.add(fam)
    raise UserError(
        f"simulate config: prompts: the families {families} ran out of distinct prompts; lower prompts"
    )


def make_items(cfg: Any) -> list[dict[str, Any]]:
    """The campaign's items: ``{"id", "prompt", "responses", "meta": {"task"}}``, distinct prompts."""
    bad = [f for f in cfg.families if f not in FAMILIES]
    if bad:
        raise UserError(
            f"simulate config: families: unknown family '{bad[0]}' (one of {', '.join(FAMILIES)})"
        )
    if not cfg.families:
        raise UserError("simulate config: families: give at least one task family")
    rng = np.random.default_rng([cfg.seed, 1])
    fams = [cfg.families[i % len(cfg.families)] for i in range(cfg.prompts)]
    rng.shuffle(fams)
    ks = _k_choices(cfg, cfg.prompts, rng)
    width = max(4, len(str(cfg.prompts)))
    seen: set[str] = set()
    exhausted: set[str] = set()
    items = []
    for n, (family, k) in enumerate(zip(fams, ks)):
        prompt, task = _new_prompt(family, cfg.families, exhausted, seen, rng)
        seen.add(prompt)
        try:
            responses = make_candidates(task, k, rng)
        except ValueError as exc:
            raise UserError(f"simulate config: k: {exc}") from None
        items.append(
            {"id": f"p-{n:0{width}d}", "prompt": prompt, "responses": responses, "meta": {"task": task}}
        )
    return items


# ---------------------------------------------------------------- rating


def _pool(cfg: Any) -> dict[str, dict[str, Any]]:
    try:
        return raters_lib.build_pool(cfg.mix.model_dump(), cfg.raters, cfg.seed, getattr(cfg, "sparse", None))
    except ValueError as exc:
        raise UserError(f"simulate config: mix: {exc}") from None


def _gold_items(gaps: list[float], rate: float, min_gap: float, rng: np.random.Generator) -> set[int]:
    """round(rate * n) clear-cut items: random among those with gap >= min_gap, then the clearest others."""
    n_gold = int(round(rate * len(gaps)))
    if n_gold == 0:
        return set()
    clear = [i for i, g in enumerate(gaps) if g >= min_gap]
    chosen = [int(i) for i in rng.permutation(clear)[:n_gold]]
    if len(chosen) < n_gold:
        rest = sorted((i for i in range(len(gaps)) if i not in set(chosen)), key=lambda i: -gaps[i])
        chosen += rest[: n_gold - len(chosen)]
    return set(chosen)


def _rate(items: list[dict[str, Any]], cfg: Any, seed: int) -> tuple[list[dict], dict[str, Any], dict]:
    pool = _pool(cfg)
    # separate streams (and one per item for judgments) so that changing one setting, e.g. gold_rate in a
    # sweep, does not reshuffle everything else: settings are compared on common random numbers
    rng_gold, rng_assign = np.random.default_rng([seed, 202]), np.random.default_rng([seed, 203])
    prepared = []
    for item in items:
        task = (item.get("meta") or {}).get("task")
        responses = list(item["responses"])
        prepared.append(
            (
                item,
                task,
                responses,
                true_utilities(task, responses),
                [truth_score(task, r) for r in responses],
            )
        )
    gold = _gold_items(
        [raters_lib.min_gap(u) for *_, u, _r in prepared], cfg.gold_rate, cfg.gold_min_gap, rng_gold
    )
    try:
        if getattr(cfg, "sparse", None) is not None:
            assignment = raters_lib.assign_sparse(len(items), pool, cfg.sparse, rng_assign)
        else:
            assignment = raters_lib.assign(len(items), list(pool), cfg.overlap, rng_assign)
    except ValueError as exc:
        raise UserError(f"simulate config: overlap: {exc}") from None
    records: list[dict[str, Any]] = []
    groups: dict[str, Any] = {}
    utilities: dict[str, dict[str, float]] = {}
    for n, ((item, task, responses, utils, rubric), who) in enumerate(zip(prepared, assignment)):
        item_id = str(item.get("id", n))
        meta = {**(item.get("meta") or {}), "item": item_id}
        prompt = item["prompt"]
        rng = np.random.default_rng([seed, 204, n])
        if n in gold:
            ranks = raters_lib.truth_ranks(utils)
            records.append(normalize({"id": f"{item_id}-gold", "prompt": prompt, "responses": responses,
                                      "ranks": ranks, "gold": True, "meta": meta}, source="simulate"))  # fmt: skip
        for rater in who:
            judged = raters_lib.judge(responses, utils, rubric, rater, pool[rater], cfg.tie_epsilon, rng)
            records.append(normalize({"id": f"{item_id}-{rater}", "prompt": prompt, **judged, "meta": meta},
                                     source="simulate"))  # fmt: skip
        gk = group_key(prompt, responses)
        utilities[gk] = dict(zip(responses, utils))
        groups[gk] = {
            "item": item_id,
            "task": task,
            "rubric": dict(zip(responses, rubric)),
            "gold": n in gold,
            "min_gap": round(raters_lib.min_gap(utils), 6),
        }
    return records, {"utilities": utilities, "groups": groups}, pool


def _truth(cfg: Any, views: dict[str, Any], pool: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "version": TRUTH_VERSION,
        "seed": seed,
        "utility": "overall truth score (weighted rubric) + a fixed per-text jitter in [-jitter/2, jitter/2)",
        "weights": WEIGHTS,
        "jitter": JITTER,
        "tie_epsilon": cfg.tie_epsilon,
        "raters": pool,
        "utilities": views["utilities"],
        "groups": views["groups"],
    }


def rate_items(items: list[dict[str, Any]], cfg: Any, seed: int) -> list[dict[str, Any]]:
    """The pool of ``cfg`` judges given ``{"id", "prompt", "responses", "meta": {"task"}}`` items -> records."""
    return _rate(items, cfg, seed)[0]


def rate_batch(
    items: list[dict[str, Any]], cfg: Any, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Like ``rate_items`` and also the truth dict (same layout as a campaign's truth.json)."""
    records, groups, pool = _rate(items, cfg, seed)
    return records, _truth(cfg, groups, pool, seed)


def simulate_campaign(cfg: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A whole simulated campaign from a ``SimulateConfig``: (normalized records, truth dict). Same seed, same output."""
    items = make_items(cfg)
    records, truth = rate_batch(items, cfg, cfg.seed)
    truth["config"] = cfg.model_dump(mode="json")
    return records, truth


def write_campaign(
    records: list[dict[str, Any]], truth: dict[str, Any], out: str | Path, **extra: Any
) -> dict:
    """Write the dataset folder (rewardlab.data.dataset) and ``<out>/truth.json``; returns the folder's meta."""
    from rewardlab.data.dataset import write_dataset

    meta = {
        "simulated": True,
        "seed": truth.get("seed"),
        "prompts": len({r["meta"]["item"] for r in records}),
        "raters": len({r["rater"] for r in records if r.get("rater")}),
        "gold_items": sum(1 for r in records if r.get("gold")),
        "truth": TRUTH_FILE,
        **extra,
    }
    info = write_dataset(records, out, extra_meta=meta)
    (Path(out) / TRUTH_FILE).write_text(json.dumps(truth, ensure_ascii=False, indent=1, sort_keys=False))
    return info


# ---------------------------------------------------------------- exported batches (next round)


def _meta(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{where}: field 'meta' is a string but not JSON") from None
    if not isinstance(value, dict):
        raise UserError(f"{where}: field 'meta' must be an object")
    task = value.get("task")
    if isinstance(task, str):
        try:
            value = {**value, "task": json.loads(task)}
        except json.JSONDecodeError:
            raise UserError(f"{where}: field 'meta.task' is a string but not JSON") from None
    return value


def _texts(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list):
        raise UserError(f"{where}: field 'responses' must be a list")
    out = []
    for n, r in enumerate(raw):
        text = r.get("text", r.get("body")) if isinstance(r, dict) else r
        if text is not None and not isinstance(text, str):
            raise UserError(f"{where}: field 'responses[{n}]' must be a string or an object with 'text'")
        out.append(text or "")
    return out


def _from_label_studio(task: Any, where: str, n: int) -> dict[str, Any]:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise UserError(f"{where}: a Label Studio task must be an object with 'data'")
    data = task["data"]
    if "items" in data:
        if not isinstance(data["items"], list):
            raise UserError(f"{where}: field 'data.items' must be a list")
        responses = _texts([{"text": it.get("body", it.get("text"))} if isinstance(it, dict) else it
                            for it in data["items"]], where)  # fmt: skip
    elif "answer1" in data and "answer2" in data:
        responses = _texts([data["answer1"], data["answer2"]], where)
    else:
        raise UserError(f"{where}: field 'data' needs 'answer1'/'answer2' (pairwise) or 'items' (ranker)")
    if data.get("prompt") is None:
        raise UserError(f"{where}: missing field 'data.prompt'")
    item_id = task.get("id", data.get("id", f"task-{n}"))
    return {"id": str(item_id), "prompt": data["prompt"], "responses": responses,
            "meta": _meta(data.get("meta", task.get("meta")), where)}  # fmt: skip


def _from_jsonl(obj: Any, where: str, n: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: each line must be a JSON object")
    for key in ("prompt", "responses"):
        if obj.get(key) is None:
            raise UserError(f"{where}: missing field '{key}'")
    return {"id": str(obj.get("id", f"item-{n}")), "prompt": obj["prompt"],
            "responses": _texts(obj["responses"], where), "meta": _meta(obj.get("meta"), where)}  # fmt: skip


def read_batch(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """An exported batch -> (items to rate, skipped items with reasons, counters).

    Reads JSONL lines ``{"id", "prompt", "responses", "meta"}`` or a Label Studio tasks JSON (pairwise
    ``data.answer1/answer2`` or ranker ``data.items[].body``; task under ``data.meta.task``). Empty and
    duplicate responses are dropped and counted; an item left with fewer than 2 is skipped with its reason.
    Structural errors (bad JSON, missing prompt) raise UserError naming file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: batch file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    raw: list[tuple[str, dict[str, Any]]] = []
    if text.lstrip().startswith("["):
        try:
            tasks = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        for n, task in enumerate(tasks):
            raw.append((f"{path}: task {n}", _from_label_studio(task, f"{path}: task {n}", n)))
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
            raw.append((f"{path}:{n}", _from_jsonl(obj, f"{path}:{n}", n)))
    if not raw:
        raise UserError(f"{path}: the batch holds no items")
    return _clean(raw)


def _clean(raw: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict], list[dict], dict[str, int]]:
    items, skipped = [], []
    counts = Counter(empty_responses=0, duplicate_responses=0, no_task=0)
    for where, item in raw:
        kept, seen = [], set()
        for r in item["responses"]:
            if not r.strip():
                counts["empty_responses"] += 1
            elif r.strip() in seen:
                counts["duplicate_responses"] += 1
            else:
                seen.add(r.strip())
                kept.append(r)
        if len(kept) < 2:
            skipped.append({"where": where, "id": item["id"], "reason": "fewer_than_2_distinct_responses",
                            "detail": f"{len(kept)} distinct non-empty response(s) left"})  # fmt: skip
            continue
        if not isinstance(item["meta"].get("task"), dict):
            # scored with the task-free fallback of truth_score (style and safety only)
            counts["no_task"] += 1
        items.append({**item, "responses": kept})
    return items, skipped, dict(counts)


# ---------------------------------------------------------------- campaign planning (sweep)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise UserError(f"simulate config: sweep: '{key}' is not a config key")
        node = node[part]
    if parts[-1] not in node:
        raise UserError(f"simulate config: sweep: unknown key '{key}'")
    node[parts[-1]] = value


def sweep_settings(cfg: Any) -> list[tuple[dict[str, Any], Any]]:
    """The cartesian product of ``cfg.sweep`` (dotted keys -> value lists) as (setting, config) pairs."""
    from pydantic import ValidationError

    keys = list(cfg.sweep or {})
    for key in keys:
        if not isinstance(cfg.sweep[key], list) or not cfg.sweep[key]:
            raise UserError(f"simulate config: sweep.{key}: must be a non-empty list of values")
    out = []
    for combo in itertools.product(*(cfg.sweep[k] for k in keys)):
        data = cfg.model_dump()
        data["sweep"] = None
        setting = dict(zip(keys, combo))
        for key, value in setting.items():
            _set_dotted(data, key, value)
        try:
            out.append((setting, type(cfg).model_validate(data)))
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise UserError(f"simulate config: sweep setting {setting}: {loc}: {first['msg']}") from None
    return out


def _votes(rec: dict[str, Any]) -> dict[tuple[str, str], int]:
    """+1 if the alphabetically first text of each pair is ranked better, -1 if worse, 0 for a tie."""
    out = {}
    texts, ranks = rec["responses"], rec["ranks"]
    for i, j in itertools.combinations(range(len(texts)), 2):
        a, b = (i, j) if texts[i] < texts[j] else (j, i)
        out[(texts[a], texts[b])] = int(np.sign(ranks[b] - ranks[a]))
    return out


def evaluate_majority(records: list[dict[str, Any]], truth: dict[str, Any]) -> dict[str, Any]:
    """Fallback planning metrics: majority-vote label accuracy against the truth on pairs whose true
    utilities differ by more than the tie epsilon (a tied vote scores 0.5), and raw pairwise agreement
    (share of rater pairs on the same item giving the same verdict, ties included)."""
    eps = truth.get("tie_epsilon", 0.0)
    by_group: dict[str, list[dict[str, int]]] = defaultdict(list)
    for rec in records:
        if rec.get("rater") and not rec.get("gold"):
            by_group[group_key(rec["prompt"], rec["responses"])].append(_votes(rec))
    correct = total = agree = compared = 0.0
    for gk, votes in by_group.items():
        utils = truth["utilities"][gk]
        for pair in votes[0]:
            vs = [v[pair] for v in votes]
            for x, y in itertools.combinations(vs, 2):
                agree += x == y
                compared += 1
            gap = utils[pair[0]] - utils[pair[1]]
            if abs(gap) <= eps:
                continue
            s = np.sign(sum(vs))
            correct += 0.5 if s == 0 else float(s == np.sign(gap))
            total += 1
    acc = correct / total if total else None
    return {
        "label_accuracy": acc,
        "majority_accuracy": acc,
        "agreement": agree / compared if compared else None,
        "pairs": int(total),
    }
