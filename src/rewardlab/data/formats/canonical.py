"""The canonical record itself (docs/design.md) in JSONL, CSV or Parquet, and the canonical exporter.

In CSV every cell is a string: list and object fields (``responses``, ``ranks``, ``scores``, ``meta``, ...)
are JSON in their cell, a chat prompt is the JSON list of messages, ``gold`` is true/false. Parquet written
from a rewardlab dataset stores the chat prompt, ``scores`` and ``meta`` as JSON strings beside a ``chat``
flag; both are decoded here so they round-trip.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardlab.data.formats import RowError, per_row
from rewardlab.data.schema import FIELDS, to_json

NAME = "canonical"
STATEFUL = False

_JSON_FIELDS = ("responses", "ranks", "scores", "meta", "soft_pairs", "raters", "response_ids")
_NUMBER_FIELDS = ("time_s", "weight", "agreement")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
# CSV columns of the exporter: every stored field but the content hash (recomputed on import).
COLUMNS = tuple(f for f in FIELDS if f != "hash")


def looks_like(keys: set[str], first: dict[str, Any]) -> bool:
    return "responses" in keys and ("ranks" in keys or "prompt" in keys)


def _prepare(obj: dict[str, Any]) -> list[tuple[dict | None, str | None, str]]:
    """Decode the JSON-in-a-string cells of CSV and of rewardlab Parquet; JSONL rows pass through."""
    needs = False
    for key in _JSON_FIELDS:
        if isinstance(obj.get(key), str):
            needs = True
            break
    if not needs and not isinstance(obj.get("gold"), str) and "chat" not in obj:
        return [(obj, None, "")]
    out = dict(obj)
    for key in _JSON_FIELDS:
        value = out.get(key)
        if isinstance(value, str):
            if not value.strip():
                out[key] = None
                continue
            out[key] = _cell_json(value, key)
    chat = out.pop("chat", None)
    prompt = out.get("prompt")
    if isinstance(prompt, str) and (chat is True or str(chat).lower() == "true" or prompt.startswith('[{"')):
        try:
            out["prompt"] = _cell_json(prompt, "prompt")
        except RowError as exc:
            if chat or exc.reason == "invalid_utf8":
                raise
    gold = out.get("gold")
    if isinstance(gold, str):
        if gold.strip().lower() in _TRUE:
            out["gold"] = True
        elif gold.strip().lower() in _FALSE:
            out["gold"] = False
        else:
            raise RowError("wrong_type", f"field 'gold' must be true or false, got {gold!r}")
    for key in _NUMBER_FIELDS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = float(value) if value.strip() else None
            except ValueError:
                raise RowError("wrong_type", f"field '{key}' must be a number, got {value!r}") from None
    for key in ("id", "rater", "strength"):
        if out.get(key) == "":
            out[key] = None
    return [(out, None, "")]


def _cell_json(value: str, key: str) -> Any:
    """A JSON cell's value. JSON escapes can spell lone surrogates ("\\ud800") that no UTF-8 store holds,
    and a runaway nesting overflows the parser: both are a bad cell, not a crash."""
    try:
        parsed = json.loads(value, strict=False)  # spreadsheets keep raw newlines in strings
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RowError("invalid_utf8", f"field '{key}' holds a lone surrogate escape (not UTF-8)") from None
    except (ValueError, RecursionError):
        raise RowError("invalid_cell_json", f"field '{key}' is not valid JSON: {value[:60]!r}") from None
    return parsed


convert = per_row(_prepare)


def export_canonical(records: Iterable[dict[str, Any]], path: str | Path) -> dict[str, Any]:
    """Write records as canonical JSONL (default), CSV (``.csv``) or Parquet (``.parquet``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    n = 0
    if suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for rec in records:
                row = to_json(rec)
                writer.writerow([_cell(row.get(col)) for col in COLUMNS])
                n += 1
    elif suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        from rewardlab.data.dataset import ARROW_SCHEMA, encode

        rows = [encode(rec) for rec in records]
        n = len(rows)
        pq.write_table(pa_table(rows, ARROW_SCHEMA), path)
    else:
        with path.open("w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(to_json(rec), ensure_ascii=False) + "\n")
                n += 1
    return {"records": n, "out": str(path)}


def pa_table(rows: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist([{k: row.get(k) for k in schema.names} for row in rows], schema=schema)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
