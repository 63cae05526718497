"""HelpSteer2: one row per (prompt, response) with attribute ratings 0-4; several responses per prompt.

Rows are grouped by prompt text over the whole file into one K-wise record per prompt, in file order.
Ranks come from ``helpfulness`` (higher is better, equal ratings are ties); every attribute becomes a
``scores`` rubric. A prompt with a single response is quarantined (``too_few_responses``) like any record
with fewer than two responses. The item's line is the line of the prompt's first row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rewardlab.data.formats import ROW_ERRORS, Item, RowError, number, ranks_from_scores, unreadable

NAME = "helpsteer2"
STATEFUL = True
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return {"prompt", "response", "helpfulness"} <= keys


def _rating(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):  # CSV/TSV cells
        try:
            value = float(value)
        except ValueError:
            raise RowError("wrong_type", f"field '{key}' must be a number, got {value[:40]!r}") from None
    return number(value, key)


def convert(items: Iterable[Item]) -> Iterator[Item]:
    groups: dict[str, list[Item]] = {}
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
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not isinstance(row.get("response"), str):
            yield item._replace(
                record=None,
                reason="missing_field" if prompt is None or row.get("response") is None else "wrong_type",
                detail="each row needs string 'prompt' and 'response'",
                raw=row,
            )
            continue
        groups.setdefault(prompt, []).append(item)
    for prompt, rows in groups.items():
        yield _group(prompt, rows)


def _group(prompt: str, rows: list[Item]) -> Item:
    """One record of a prompt's rows. A rejected group keeps every row and its line in the quarantine."""
    first = rows[0]
    raw = {"lines": [r.line for r in rows], "rows": [r.record for r in rows]}
    try:
        ratings = {a: [_rating(r.record, a) for r in rows] for a in ATTRIBUTES}
    except RowError as exc:
        return first._replace(
            record=None,
            reason=exc.reason,
            detail=f"attribute ratings must be finite numbers ({exc.detail})",
            raw=raw,
        )
    except ROW_ERRORS as exc:
        return first._replace(record=None, reason="unreadable_row", detail=unreadable(exc), raw=raw)
    helpful = ratings["helpfulness"]
    if any(h is None for h in helpful):
        return first._replace(
            record=None,
            reason="missing_field",
            detail="a row has no 'helpfulness' rating",
            raw=raw,
        )
    rec = {
        "prompt": prompt,
        "responses": [r.record["response"] for r in rows],
        "ranks": ranks_from_scores(helpful),
        "scores": {a: v for a, v in ratings.items() if any(x is not None for x in v)},
        "meta": {"rows": [r.line for r in rows]},
    }
    return first._replace(record=rec, raw=raw)
