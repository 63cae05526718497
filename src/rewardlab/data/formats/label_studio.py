"""Label Studio JSON exports (a list of tasks) in, tasks plus a labeling config out.

In: one record per annotation. Templates understood:

- pairwise ("Human Preference collection for RLHF"): ``data = {prompt, answer1, answer2}`` and a result
  ``{"type": "pairwise", "value": {"selected": "left"|"right"}}`` (left is the first ``toName`` object).
  A ``choices`` result whose value reads tie/equal/same marks a tie (the exported config carries that
  option); a ``choices`` result named ``strength`` becomes the record's strength.
- ranker ("LLM Ranker"): ``data = {prompt, items: [{id, title, body}]}``; ``{"ranker": {"<Ranker or List
  name>": [ids best first]}}``, the older ``{"ranker": [ids]}``, or buckets ``{"ranker": {"<bucket>": [ids],
  ...}}`` read as tie groups in the order the buckets are listed (an item left unplaced, e.g. in ``"_"``,
  makes the ranking incomplete: quarantined). A single key that names neither the Ranker nor its List is
  quarantined (``unmatched_ranker_key``): it could be a strict order or one bucket of ties.

``completed_by`` becomes the rater, ``lead_time`` the time in seconds, ``ground_truth`` the gold flag; the
task's ``rewardlab_id`` (written by our export) is kept as ``meta.rewardlab_id``.
Cancelled annotations (``was_cancelled``) and tasks with no annotation are read and skipped with a reason.

Out: ``export_label_studio(records, path, template)`` writes the tasks JSON and the matching labeling config
XML next to it (``<name>.config.xml``). Records without ranks become plain tasks to label; ranked records
carry their ranking as ``predictions`` (pre-annotations) or as ``annotations``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardlab.data.formats import ROW_ERRORS, RowError, per_row, render_chat, unreadable
from rewardlab.errors import UserError

NAME = "label-studio"
STATEFUL = False
PROMPT_KEYS = ("prompt", "question", "instruction", "input", "query", "text")
PAIR_KEYS = (
    ("answer1", "answer2"),
    ("text1", "text2"),
    ("response1", "response2"),
    ("response_a", "response_b"),
    ("left", "right"),
    ("a", "b"),
)
_TIE = re.compile(r"\b(tie|equal|same|both|draw)\b", re.IGNORECASE)

PAIRWISE_CONFIG = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Which answer is better? Click it (or mark a tie below)."/>
  <Pairwise name="comparison" toName="answer1,answer2"
            selectionStyle="background-color: #27ae60; box-shadow: 0px 0px 6px 3px #27ae60;"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
  <Choices name="tie" toName="prompt" choice="single" showInline="true">
    <Choice value="Tie"/>
  </Choices>
</View>
"""

RANKER_CONFIG = """<View>
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Drag the answers into order, best first"/>
  <List name="answers" value="$items" title="Answers"/>
  <Ranker name="rank" toName="answers"/>
</View>
"""


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return (
        "data" in keys
        and ("annotations" in keys or "predictions" in keys)
        and isinstance(first.get("data"), dict)
    )


# ------------------------------------------------------------------------------------------------ import


def _prompt(data: dict[str, Any]) -> Any:
    if isinstance(data.get("prompt_messages"), list):
        return data["prompt_messages"]
    for key in PROMPT_KEYS:
        if data.get(key) is not None:
            return data[key]
    raise RowError("missing_field", f"task data has no prompt field (one of {', '.join(PROMPT_KEYS)})")


def _pair(data: dict[str, Any], to_name: Any) -> tuple[str, str]:
    if isinstance(to_name, str) and "," in to_name:
        left, right = (s.strip() for s in to_name.split(",", 1))
        if left in data and right in data:
            return data[left], data[right]
    for left, right in PAIR_KEYS:
        if left in data and right in data:
            return data[left], data[right]
    raise RowError("missing_field", "task data has no pair of answers (answer1/answer2, text1/text2, ...)")


def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
    for value in data.values():
        if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
            return value
    raise RowError("missing_field", "task data has no list of items with ids for the ranker")


def _rater(completed_by: Any) -> str | None:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    return None if completed_by is None else str(completed_by)


def _flag(value: Any) -> bool:
    """Label Studio's ``ground_truth`` is a JSON bool; CSV-converted exports carry "true"/"false" strings,
    and ``bool("false")`` would mark every such annotation as gold."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no", ""):
            return False
        raise RowError("wrong_type", f"ground_truth must be true or false, got {value!r}")
    if value is None:
        return False
    if isinstance(value, (bool, int)) and value in (0, 1):
        return bool(value)
    raise RowError("wrong_type", f"ground_truth must be true or false, got {value!r}")


def _order_to_ranks(groups: list[list[Any]], ids: list[str]) -> list[int]:
    """Ordered groups of item ids (one id per group for a strict order) -> one rank per item."""
    rank_of: dict[str, int] = {}
    rank = 1
    for group in groups:
        if not isinstance(group, list):
            raise RowError("wrong_type", "a ranking must list item ids (or buckets of ids)")
        for item_id in group:
            if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
                raise RowError("wrong_type", f"the ranking holds {type(item_id).__name__}, not an item id")
            if str(item_id) not in ids:
                raise RowError(
                    "unknown_ranking_value",
                    f"the ranking names item {item_id!r}, which the task does not list",
                )
            rank_of[str(item_id)] = rank
        rank += len(group)
    missing = [i for i in ids if i not in rank_of]
    if missing:
        raise RowError("incomplete_ranking", f"items {missing} are not placed in the ranking")
    return [rank_of[i] for i in ids]


def _ranker_groups(result: dict[str, Any]) -> list[list[Any]]:
    ranking = _value(result).get("ranker")
    if isinstance(ranking, list):
        return [[i] for i in ranking]
    if isinstance(ranking, dict):
        if not all(isinstance(ids, list) for ids in ranking.values()):
            raise RowError("wrong_type", "ranker buckets must be lists of item ids")
        if len(ranking) == 1:
            # One key: the Ranker's own name or its List's name holds a strict order. Any other single
            # key cannot tell a strict order from one bucket of ties: refused, never read as all ties.
            key, ids = next(iter(ranking.items()))
            if key in (result.get("from_name"), result.get("to_name")):
                return [[i] for i in ids]
            if len(ids) > 1:
                raise RowError(
                    "unmatched_ranker_key",
                    f"the ranker result is keyed by {key!r}, neither the Ranker ({result.get('from_name')!r}) "
                    f"nor its List ({result.get('to_name')!r}): a strict order or one bucket of ties?",
                )
        return [list(ids) for name, ids in ranking.items() if name != "_" and ids]
    raise RowError("wrong_type", "ranker result value must be a list or an object of lists")


def _value(res: dict[str, Any]) -> dict[str, Any]:
    value = res.get("value") or {}
    if not isinstance(value, dict):
        raise RowError("wrong_type", f"result {res.get('id')!r}: 'value' must be an object")
    return value


def _annotation(task: dict[str, Any], ann: dict[str, Any]) -> dict[str, Any]:
    data = task["data"]
    results = ann.get("result") or []
    if not isinstance(results, list):
        raise RowError("wrong_type", "'result' must be a list of results")
    by_type: dict[str, list[dict]] = {}
    for res in results:
        if isinstance(res, dict):
            by_type.setdefault(str(res.get("type", "")), []).append(res)
    tie = strength = None
    for res in by_type.get("choices", []):
        choices = _value(res).get("choices") or []
        if not isinstance(choices, list):
            raise RowError("wrong_type", "a choices result must list its choices")
        if res.get("from_name") == "strength" and choices:
            strength = str(choices[0])
        elif any(_TIE.search(str(c)) for c in choices):
            tie = True
    rec: dict[str, Any] = {"prompt": _prompt(data)}
    if "ranker" in by_type:
        items = _items(data)
        ids = [str(it["id"]) for it in items]
        rec["responses"] = [
            {
                "id": str(it["id"]),
                "text": it.get("body") or it.get("text") or it.get("html") or it.get("title"),
            }
            for it in items
        ]
        rec["ranks"] = _order_to_ranks(_ranker_groups(by_type["ranker"][0]), ids)
    elif "pairwise" in by_type or tie:
        res = (by_type.get("pairwise") or [{}])[0]
        left, right = _pair(data, res.get("to_name"))
        rec["responses"] = [left, right]
        selected = _value(res).get("selected")
        if tie and selected:
            raise RowError("conflicting_choice", f"the annotation picks '{selected}' and marks a tie")
        if tie:
            rec["ranks"] = [1, 1]
        elif selected in ("left", "right"):
            rec["ranks"] = [1, 2] if selected == "left" else [2, 1]
        else:
            raise RowError("unknown_choice", f"pairwise selection must be left or right, got {selected!r}")
    else:
        raise RowError("no_choice", "the annotation has no pairwise, ranker or tie result")
    rec["rater"] = _rater(ann.get("completed_by"))
    rec["strength"] = strength
    rec["gold"] = _flag(ann.get("ground_truth", False))
    if isinstance(ann.get("lead_time"), (int, float)):
        rec["time_s"] = float(ann["lead_time"])
    meta = dict(data["meta"]) if isinstance(data.get("meta"), dict) else {}
    meta.update(
        {
            "task_id": task.get("id"),
            "annotation_id": ann.get("id"),
            "created_at": ann.get("created_at"),
            "rewardlab_id": data.get("rewardlab_id"),  # the record a `sample` / `data export` task came from
        }
    )
    rec["meta"] = {k: v for k, v in meta.items() if v is not None}
    rec["id"] = f"ls-{task.get('id')}-{ann.get('id')}"
    return rec


def _task(task: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    if not isinstance(task.get("data"), dict):
        raise RowError("missing_field", "a Label Studio task needs a 'data' object")
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise RowError("wrong_type", "'annotations' must be a list")
    if not annotations:
        return [(None, "unlabeled", f"task {task.get('id')} has no annotation")]
    out: list[tuple[dict | None, str | None, str]] = []
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            out.append((None, "wrong_type", f"task {task.get('id')}, annotations[{n}] is not an object"))
            continue
        where = f"task {task.get('id')}, annotation {ann.get('id')}"
        if ann.get("was_cancelled"):
            out.append((None, "cancelled", f"{where} was cancelled (skipped)"))
            continue
        try:  # one bad annotation is quarantined on its own; the task's other annotations go on
            out.append((_annotation(task, ann), None, ""))
        except RowError as exc:
            out.append((None, exc.reason, f"{where}: {exc.detail}"))
        except ROW_ERRORS as exc:
            out.append((None, "unreadable_row", f"{where}: {unreadable(exc)}"))
    return out


convert = per_row(_task)


# ------------------------------------------------------------------------------------------------ export


def _pairwise_result(ranks: list[int]) -> list[dict[str, Any]]:
    if ranks[0] == ranks[1]:
        return [{"from_name": "tie", "to_name": "prompt", "type": "choices", "value": {"choices": ["Tie"]}}]
    selected = "left" if ranks[0] < ranks[1] else "right"
    return [
        {
            "from_name": "comparison",
            "to_name": "comparison",
            "type": "pairwise",
            "value": {"selected": selected},
        }
    ]


def _ranker_result(ranks: list[int], ids: list[str]) -> list[dict[str, Any]]:
    order = [ids[i] for i in sorted(range(len(ranks)), key=lambda i: (ranks[i], i))]
    return [
        {"from_name": "rank", "to_name": "answers", "type": "ranker", "value": {"ranker": {"rank": order}}}
    ]


def export_label_studio(
    records: Iterable[dict[str, Any]],
    path: str | Path,
    template: str = "auto",
    labels_as: str = "predictions",
) -> dict[str, Any]:
    """Write Label Studio tasks (JSON list) to ``path`` and the labeling config to ``<stem>.config.xml``.

    ``records``: dicts with ``prompt`` and ``responses`` (strings or ``{id, text}``) and optional ``id``,
    ``meta``, ``ranks``, ``rater``, ``gold``, ``time_s`` (unlabeled records from ``rewardlab sample`` work).
    ``template``: ``pairwise`` (every record has 2 responses), ``ranker`` (any K), or ``auto`` (pairwise when
    all records are pairs). ``labels_as``: put existing rankings in ``predictions`` (pre-annotations a rater
    confirms) or ``annotations``. A tie in the ranker template cannot be shown as an order: it is written in
    listed order and counted in ``ties_as_order``.
    """
    records = list(records)
    if template == "auto":
        template = "pairwise" if all(len(r["responses"]) == 2 for r in records) else "ranker"
    if template not in ("pairwise", "ranker"):
        raise UserError(f"unknown Label Studio template '{template}' (use pairwise, ranker or auto)")
    if labels_as not in ("predictions", "annotations"):
        raise UserError(f"labels_as must be predictions or annotations, got '{labels_as}'")
    tasks, labeled, ties_as_order = [], 0, 0
    for n, rec in enumerate(records):
        texts = [r["text"] if isinstance(r, dict) else r for r in rec["responses"]]
        prompt = rec["prompt"]
        data: dict[str, Any] = {"prompt": prompt if isinstance(prompt, str) else render_chat(prompt)}
        if not isinstance(prompt, str):
            data["prompt_messages"] = prompt
        if template == "pairwise":
            if len(texts) != 2:
                raise UserError(
                    f"record {rec.get('id', n)} has {len(texts)} responses; the pairwise template needs 2"
                )
            data["answer1"], data["answer2"] = texts
            ids = ["answer1", "answer2"]
        else:
            ids = [str(i + 1) for i in range(len(texts))]
            data["items"] = [
                {"id": ids[i], "title": f"Answer {ids[i]}", "body": t} for i, t in enumerate(texts)
            ]
        data["rewardlab_id"] = rec.get("id")
        if rec.get("meta"):
            data["meta"] = rec["meta"]
        task: dict[str, Any] = {"data": data}
        ranks = rec.get("ranks")
        if ranks:
            labeled += 1
            if template == "pairwise":
                result = _pairwise_result(ranks)
            else:
                result = _ranker_result(ranks, ids)
                ties_as_order += len(ranks) - len(set(ranks)) > 0
            if labels_as == "predictions":
                task["predictions"] = [{"model_version": "rewardlab", "result": result}]
            else:
                ann = {"result": result, "ground_truth": bool(rec.get("gold")), "was_cancelled": False}
                if rec.get("rater") is not None:
                    ann["completed_by"] = rec["rater"]
                if rec.get("time_s") is not None:
                    ann["lead_time"] = rec["time_s"]
                task["annotations"] = [ann]
        tasks.append(task)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    config = path.with_name(path.stem + ".config.xml")
    config.write_text(PAIRWISE_CONFIG if template == "pairwise" else RANKER_CONFIG, encoding="utf-8")
    return {
        "tasks": len(tasks),
        "labeled": labeled,
        "template": template,
        "ties_as_order": ties_as_order,
        "out": str(path),
        "config": str(config),
    }
