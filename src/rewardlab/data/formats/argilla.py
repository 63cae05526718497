"""Argilla ranking data (a RankingQuestion) in, Argilla records out.

In, three shapes:

- v2 flattened (``records.to_list(flatten=True)``, ``to_datasets()``): fields at the top level and, per
  question ``q``, ``q.responses`` (one ranking per user: option values best first), ``q.responses.users`` and
  ``q.responses.status``. The v2 SDK keeps no rank numbers there, so ties cannot appear.
- v2 nested (``records.to_json`` / ``Record.to_dict``): ``{"id", "fields": {...}, "responses": {q: [{"value":
  [...], "user_id"}]}, "metadata", ...}``.
- v1 FeedbackDataset: ``{"fields": {...}, "responses": [{"user_id", "values": {q: {"value": [{"value",
  "rank"}]}}, "status"}], ...}``: equal ranks are ties and are kept.

One record per user response. The ranking's option values name the response fields (``response1``...); a
value that is not a field name falls back to its trailing number (``reply-2`` -> the 2nd response field).
Responses keep the order of the fields (the order raters saw them), not the ranked order. Drafts and
discarded responses are read and skipped (``not_submitted``).

Out: ``export_argilla(records, path)`` writes v2 records (``Record.from_dict`` shape) and
``<name>.settings.json`` describing the fields and the RankingQuestion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardlab.data.formats import ROW_ERRORS, RowError, per_row, render_chat, unreadable

NAME = "argilla"
STATEFUL = False
PROMPT_KEYS = ("prompt", "instruction", "question", "input", "query", "text", "context")
_SKIP = {
    "id",
    "status",
    "_server_id",
    "inserted_at",
    "updated_at",
    "external_id",
    "fields",
    "metadata",
    "responses",
    "suggestions",
    "vectors",
}
_NUMBER = re.compile(r"(\d+)$")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    if any(k.endswith(".responses") for k in keys):
        return True
    return isinstance(first.get("fields"), dict) and isinstance(first.get("responses"), (dict, list))


def _question(candidates: list[str], preferred: str = "ranking") -> str:
    if preferred in candidates:
        return preferred
    if len(candidates) == 1:
        return candidates[0]
    raise RowError("missing_field", f"cannot tell the ranking question among {sorted(candidates)}")


def _prompt(fields: dict[str, Any], response_keys: set[str]) -> Any:
    for key in PROMPT_KEYS:
        if fields.get(key) is not None and key not in response_keys:
            return fields[key]
    rest = [
        k
        for k, v in fields.items()
        if k not in response_keys and k not in _SKIP and "." not in k and isinstance(v, str)
    ]
    if len(rest) == 1:
        return fields[rest[0]]
    raise RowError("missing_field", "no prompt field (prompt, instruction, question, ...) in the record")


def _resolve(values: list[str], fields: dict[str, Any]) -> list[str]:
    """Option values -> field names, by name or by trailing number over the non-prompt text fields."""
    text_fields = [
        k
        for k, v in fields.items()
        if isinstance(v, str) and k not in _SKIP and "." not in k and k not in PROMPT_KEYS
    ]
    names = []
    for value in values:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise RowError("wrong_type", f"ranking value {value!r} is not an option name"[:200])
        if value in fields:
            names.append(value)
            continue
        m = _NUMBER.search(str(value))
        if m and 1 <= int(m.group(1)) <= len(text_fields):
            names.append(text_fields[int(m.group(1)) - 1])
            continue
        raise RowError("unknown_ranking_value", f"ranking value {value!r} names no field of the record")
    return names


def _record(fields: dict[str, Any], ranked: list[tuple[str, int]], user: Any, rid: Any, meta: Any) -> dict:
    """ranked: (option value, rank) pairs -> canonical dict with responses in field order."""
    names = _resolve([v for v, _ in ranked], fields)
    if len(set(names)) < len(names):
        raise RowError("duplicate_responses", "the ranking names the same response twice")
    order = list(fields)
    pos = sorted(range(len(names)), key=lambda i: order.index(names[i]))
    meta = dict(meta) if isinstance(meta, dict) else {}
    prompt = meta.pop("prompt_messages", None) or _prompt(fields, set(names))
    rec = {
        "prompt": prompt,
        "responses": [{"id": names[i], "text": fields[names[i]]} for i in pos],
        "ranks": [ranked[i][1] for i in pos],
        "rater": None if user is None else str(user),
        "meta": {"argilla_id": rid, **meta},
    }
    if rid is not None and user is not None:
        rec["id"] = f"argilla-{rid}-{user}"
    return rec


def _flattened(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    question = _question([k[: -len(".responses")] for k in obj if k.endswith(".responses")])
    rankings = obj.get(f"{question}.responses") or []
    users = obj.get(f"{question}.responses.users") or [None] * len(rankings)
    statuses = obj.get(f"{question}.responses.status") or ["submitted"] * len(rankings)
    for key, value in (("", rankings), (".users", users), (".status", statuses)):
        if not isinstance(value, list):
            raise RowError("wrong_type", f"field '{question}.responses{key}' must be a list")
        if len(value) != len(rankings):  # zip() would drop the rankings past the shorter list
            raise RowError(
                "length_mismatch",
                f"field '{question}.responses{key}' has {len(value)} entries for {len(rankings)} rankings",
            )
    if not rankings:
        return [(None, "unlabeled", f"record {obj.get('id')} has no '{question}' response")]
    out: list[tuple[dict | None, str | None, str]] = []
    fields = {k: v for k, v in obj.items() if "." not in k and k not in _SKIP}
    for ranking, user, status in zip(rankings, users, statuses):
        if status not in (None, "submitted"):
            out.append((None, "not_submitted", f"response by {user} has status {status} (skipped)"))
            continue
        try:
            if not isinstance(ranking, list):
                raise RowError("wrong_type", f"'{question}.responses' entries must be lists of option values")
            ranked = [
                (v.get("value"), v.get("rank")) if isinstance(v, dict) else (v, n + 1)
                for n, v in enumerate(ranking)
            ]
            out.append((_record(fields, ranked, user, obj.get("id"), None), None, ""))
        except RowError as exc:
            out.append((None, exc.reason, exc.detail))
        except ROW_ERRORS as exc:
            out.append((None, "unreadable_row", unreadable(exc)))
    return out


def _nested(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    fields, responses = obj["fields"], obj["responses"]
    rid = obj.get("id") or obj.get("external_id")
    entries: list[tuple[Any, Any, Any]] = []  # (user, status, value)
    if isinstance(responses, dict):  # v2: {question: [{"value", "user_id"}]}
        questions = [q for q, v in responses.items() if isinstance(v, list) and v]
        for resp in responses.get(_question(questions), []) if questions else []:
            if not isinstance(resp, dict):
                raise RowError("wrong_type", "each entry of 'responses' must be an object")
            entries.append((resp.get("user_id"), resp.get("status"), resp.get("value")))
    else:  # v1: [{"user_id", "values": {question: {"value": [...]}}, "status"}]
        if not all(isinstance(r, dict) and isinstance(r.get("values") or {}, dict) for r in responses):
            raise RowError("wrong_type", "each entry of 'responses' must be an object with 'values'")
        names = {q for resp in responses for q in (resp.get("values") or {})}
        question = _question(sorted(names)) if names else "ranking"
        for resp in responses:
            answer = (resp.get("values") or {}).get(question) or {}
            value = answer.get("value") if isinstance(answer, dict) else answer
            entries.append((resp.get("user_id"), resp.get("status"), value))
    if not entries:
        return [(None, "unlabeled", f"record {rid} has no ranking response")]
    out: list[tuple[dict | None, str | None, str]] = []
    for user, status, value in entries:
        if status not in (None, "submitted"):
            out.append((None, "not_submitted", f"response by {user} has status {status} (skipped)"))
            continue
        try:
            if not isinstance(value, list):
                raise RowError("wrong_type", "a ranking response value must be a list")
            ranked = []
            for n, v in enumerate(value):
                if isinstance(v, dict):
                    if v.get("rank") is None:
                        raise RowError("missing_field", f"ranking value {v.get('value')!r} has no rank")
                    ranked.append((v.get("value"), v["rank"]))
                else:
                    ranked.append((v, n + 1))
            out.append((_record(fields, ranked, user, rid, obj.get("metadata")), None, ""))
        except RowError as exc:
            out.append((None, exc.reason, exc.detail))
        except ROW_ERRORS as exc:
            out.append((None, "unreadable_row", unreadable(exc)))
    return out


def _one(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    if isinstance(obj.get("fields"), dict) and isinstance(obj.get("responses"), (dict, list)):
        return _nested(obj)
    return _flattened(obj)


convert = per_row(_one)


def argilla_settings(max_k: int, question: str = "ranking") -> dict[str, Any]:
    """Dataset settings in the shape argilla 2.x writes and ``argilla.Settings.from_json`` reads.

    Fields and questions carry their type under ``settings`` (the SDK's models); the ranking options are
    ``{value, text, description}`` entries. Checked against argilla 2.8 in tests/unit/test_formats_hub.py.
    """
    fields = [{"name": "prompt", "title": "Prompt", "required": True, "description": None,
               "settings": {"type": "text", "use_markdown": False}}]  # fmt: skip
    fields += [
        {
            "name": f"response{i + 1}",
            "title": f"Response {i + 1}",
            "required": i < 2,
            "description": None,
            "settings": {"type": "text", "use_markdown": False},
        }
        for i in range(max_k)
    ]
    options = [
        {"value": f"response{i + 1}", "text": f"Response {i + 1}", "description": None} for i in range(max_k)
    ]
    return {
        "guidelines": "Rank the responses from best (first) to worst.",
        "allow_extra_metadata": True,  # records carry rewardlab's meta (batch, task, chat prompt)
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "fields": fields,
        "questions": [
            {
                "name": question,
                "title": "Rank the responses",
                "description": None,
                "required": True,
                "settings": {"type": "ranking", "options": options},
            }
        ],
        "metadata": [],
        "vectors": [],
        "mapping": None,
    }


def export_argilla(
    records: Iterable[dict[str, Any]],
    path: str | Path,
    question: str = "ranking",
) -> dict[str, Any]:
    """Write Argilla v2 records (JSON list, ``Record.from_dict`` shape) and ``<stem>.settings.json``.

    ``records``: dicts with ``prompt`` and ``responses`` and optional ``id``, ``meta``, ``ranks``, ``rater``.
    Fields are ``prompt`` and ``response1..responseK``; the RankingQuestion's option values are those field
    names. A ranked record carries its ranking as a response of user ``rater`` (Argilla wants a user UUID
    there: map rater ids to Argilla users before logging) or, with no rater, as a suggestion. The v2 SDK
    keeps no rank numbers, so a tie is written as listed order and counted in ``ties_as_order``.
    """
    out, max_k, labeled, ties_as_order = [], 0, 0, 0
    for n, rec in enumerate(records):
        texts = [r["text"] if isinstance(r, dict) else r for r in rec["responses"]]
        max_k = max(max_k, len(texts))
        prompt = rec["prompt"]
        fields = {"prompt": prompt if isinstance(prompt, str) else render_chat(prompt)}
        fields.update({f"response{i + 1}": t for i, t in enumerate(texts)})
        metadata = dict(rec.get("meta") or {})
        if not isinstance(prompt, str):
            metadata["prompt_messages"] = prompt
        row: dict[str, Any] = {
            "id": str(rec.get("id") or n),
            "fields": fields,
            "metadata": metadata,
            "suggestions": {},
            "responses": {},
            "vectors": {},
        }
        ranks = rec.get("ranks")
        if ranks:
            labeled += 1
            ties_as_order += len(set(ranks)) < len(ranks)
            order = [f"response{i + 1}" for i in sorted(range(len(ranks)), key=lambda i: (ranks[i], i))]
            if rec.get("rater") is not None:
                row["responses"] = {question: [{"value": order, "user_id": str(rec["rater"])}]}
            else:
                row["suggestions"] = {question: {"value": order, "score": None, "agent": "rewardlab"}}
        out.append(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    settings = argilla_settings(max_k, question)
    settings_path = path.with_name(path.stem + ".settings.json")
    settings_path.write_text(json.dumps(settings, indent=1), encoding="utf-8")
    return {
        "records": len(out),
        "labeled": labeled,
        "ties_as_order": ties_as_order,
        "out": str(path),
        "settings": str(settings_path),
    }
