"""Toloka results TSV of a side-by-side task: ``INPUT:`` columns, an ``OUTPUT:`` choice, ``ASSIGNMENT:`` info.

Columns: the prompt (``INPUT:prompt``, ``INPUT:question``, ...), the two answers (``INPUT:left``/``INPUT:right``,
``INPUT:answer1``/``INPUT:answer2``, ``INPUT:response_a``/``INPUT:response_b``, ...), the choice
(``OUTPUT:result`` or the single ``OUTPUT:`` column: left/right/a/b/1/2, or tie/equal/same/both),
``ASSIGNMENT:worker_id`` (the rater) and ``ASSIGNMENT:status``. REJECTED assignments are read and skipped
(``rejected_assignment``); rows of rejected work are not judgments anyone stands behind.

Control tasks (``GOLDEN:result`` filled): the worker's answer stays an ordinary judgment, and the known answer
becomes one extra gold record per distinct control task (``gold: true``, no rater), so rater quality can be
scored against it. The gold record is counted as read once, at the line where the task first appears.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from rewardlab.data.formats import ROW_ERRORS, Item, RowError, unreadable

NAME = "toloka"
STATEFUL = True
PROMPT_COLUMNS = ("prompt", "question", "query", "instruction", "text", "context")
PAIR_COLUMNS = (
    ("left", "right"),
    ("answer1", "answer2"),
    ("answer_a", "answer_b"),
    ("response1", "response2"),
    ("response_a", "response_b"),
    ("a", "b"),
    ("first", "second"),
)
FIRST = {"left", "a", "1", "first", "answer1", "response1", "response_a", "answer_a"}
SECOND = {"right", "b", "2", "second", "answer2", "response2", "response_b", "answer_b"}
TIE = {"tie", "equal", "same", "both", "draw", "none", "equally good", "equally bad"}


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return any(k.startswith("INPUT:") for k in keys) and any(
        k.startswith(("OUTPUT:", "GOLDEN:")) for k in keys
    )


def _columns(row: dict[str, Any]) -> tuple[str | None, tuple[str, str], str]:
    inputs = {k[len("INPUT:") :]: k for k in row if k.startswith("INPUT:")}
    prompt = next((inputs[c] for c in PROMPT_COLUMNS if c in inputs), None)
    pair = next(((inputs[a], inputs[b]) for a, b in PAIR_COLUMNS if a in inputs and b in inputs), None)
    if pair is None:
        raise RowError(
            "missing_field", f"no pair of answer columns among {sorted(inputs)} (INPUT:left/INPUT:right, ...)"
        )
    outputs = [k[len("OUTPUT:") :] for k in row if k.startswith("OUTPUT:")]
    output = "result" if "result" in outputs else (outputs[0] if len(outputs) == 1 else None)
    if output is None:
        raise RowError("missing_field", f"cannot tell the choice among OUTPUT columns {outputs}")
    return prompt, pair, output


def _ranks(choice: Any) -> list[int]:
    value = str(choice).strip().lower()
    if value in FIRST:
        return [1, 2]
    if value in SECOND:
        return [2, 1]
    if value in TIE:
        return [1, 1]
    if not value:
        raise RowError("no_choice", "the choice cell is empty")
    raise RowError("unknown_choice", f"choice {choice!r} is not left/right/tie")


def _time(row: dict[str, Any]) -> float | None:
    started, submitted = row.get("ASSIGNMENT:started"), row.get("ASSIGNMENT:submitted")
    if not started or not submitted:
        return None
    try:
        seconds = (datetime.fromisoformat(submitted) - datetime.fromisoformat(started)).total_seconds()
    except (ValueError, TypeError):  # not ISO text, or one stamp has a time zone and the other not
        return None
    return seconds if seconds >= 0 else None  # a clock skew is no time measurement


def convert(items: Iterable[Item]) -> Iterator[Item]:
    seen_gold: set[tuple] = set()
    for item in items:
        if item.reason is not None:
            yield item
            continue
        row = item.record
        if not isinstance(row, dict):
            yield item._replace(
                record=None, reason="not_an_object", detail="a row must be a JSON object", raw=row
            )
            continue
        try:
            prompt_col, (left_col, right_col), output = _columns(row)
            status = str(row.get("ASSIGNMENT:status") or "").upper()
            if status == "REJECTED":
                raise RowError(
                    "rejected_assignment",
                    f"assignment {row.get('ASSIGNMENT:assignment_id')} was REJECTED (skipped)",
                )
            prompt = row.get(prompt_col) if prompt_col else None
            base = {"prompt": prompt, "responses": [row.get(left_col), row.get(right_col)]}
            golden = row.get(f"GOLDEN:{output}")
            if golden not in (None, ""):
                key = repr((prompt, *base["responses"], golden))  # cells of a JSONL row may be lists
                if key not in seen_gold:
                    seen_gold.add(key)
                    try:
                        yield item._replace(
                            record={
                                **base,
                                "ranks": _ranks(golden),
                                "gold": True,
                                "meta": {"toloka": "golden"},
                            }
                        )
                    except RowError as exc:
                        yield item._replace(
                            record=None, reason=exc.reason, detail=f"GOLDEN: {exc.detail}", raw=row
                        )
            rec = {
                **base,
                "ranks": _ranks(row.get(f"OUTPUT:{output}")),
                "rater": row.get("ASSIGNMENT:worker_id") or None,
                "time_s": _time(row),
                "meta": {
                    k: row[k]
                    for k in ("ASSIGNMENT:assignment_id", "ASSIGNMENT:status", "ASSIGNMENT:link")
                    if row.get(k)
                }
                | ({"control": True} if golden not in (None, "") else {}),
            }
            if row.get("ASSIGNMENT:assignment_id"):
                rec["id"] = f"toloka-{row['ASSIGNMENT:assignment_id']}-{item.line}"
            yield item._replace(record=rec)
        except RowError as exc:
            yield item._replace(record=None, reason=exc.reason, detail=exc.detail, raw=row)
        except ROW_ERRORS as exc:
            yield item._replace(record=None, reason="unreadable_row", detail=unreadable(exc), raw=row)
