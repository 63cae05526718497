"""Every importer in every container: valid rows are all accepted as written; mutated rows and damaged
files never raise (a whole-file problem is a one-line UserError) and every row is accounted for."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from _formats import PAIRS, Case, case
from _fuzz import (
    JUNK,
    check_import,
    csv_bytes,
    examples,
    json_bytes,
    jsonl_bytes,
    jsonl_lines,
    mutate_bytes,
    mutate_tree,
    parquet_bytes,
    write,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st

TABULAR = ("csv", "tsv", "parquet")


def serialize(rows: list[Any], container: str, tmp: Path, ensure_ascii: bool = True) -> tuple[Path, set[int]]:
    """Write rows as ``container``; return the file and the lines/positions that hold a row."""
    if container == "jsonl":
        data = jsonl_bytes(rows, ensure_ascii)
        rows_at = jsonl_lines(data)
    elif container == "json":
        data, rows_at = json_bytes(rows, ensure_ascii), set(range(1, len(rows) + 1))
    elif container in ("csv", "tsv"):
        data, starts = csv_bytes(rows, "\t" if container == "tsv" else ",")
        rows_at = set(starts)
    else:
        data, rows_at = parquet_bytes(rows), set(range(1, len(rows) + 1))
    return write(tmp, f"input.{container}", data), rows_at


def rows_after_damage(data: bytes, container: str) -> set[int] | None:
    """The row positions of a damaged file, where they can still be known."""
    if container == "jsonl":
        return jsonl_lines(data)
    if container == "json":
        try:
            doc = json.loads(data.decode("utf-8").removeprefix("\ufeff"))
        except (ValueError, RecursionError):
            return None
        return set(range(1, len(doc) + 1)) if isinstance(doc, list) else None
    return None


@pytest.mark.parametrize(("fmt", "container"), PAIRS)
@settings(max_examples=examples(8))
@given(data=st.data())
def test_valid_rows_are_all_accepted_as_written(fmt: str, container: str, data: Any) -> None:
    c: Case = data.draw(case(fmt, container), label="case")
    with tempfile.TemporaryDirectory() as tmp:
        path, rows_at = serialize(c.rows, container, Path(tmp), ensure_ascii=data.draw(st.booleans()))
        res = check_import(path, data.draw(st.sampled_from(["auto", fmt]), label="format"), rows_at)
    assert res.error is None, res.error
    assert res.report.quarantined == 0, res.rejects[:2]
    assert res.report.to_json()["format"] == fmt
    assert len(res.records) == len(c.expected)
    for rec, exp in zip(res.records, c.expected):
        got = {k: rec[k] for k in exp}
        assert got == exp


@pytest.mark.parametrize(("fmt", "container"), PAIRS)
@settings(max_examples=examples(12))
@given(data=st.data())
def test_mutated_rows_and_damaged_files_never_crash(fmt: str, container: str, data: Any) -> None:
    c: Case = data.draw(case(fmt, container), label="case")
    rows = list(c.rows)
    touched = data.draw(st.sets(st.integers(0, len(rows) - 1), min_size=1), label="mutated rows")
    for i in touched:
        rows[i] = data.draw(mutate_tree(rows[i]), label=f"row {i}")
    if container in ("jsonl", "json") and data.draw(st.booleans()):
        rows.insert(data.draw(st.integers(0, len(rows))), data.draw(JUNK, label="junk row"))
    if container in TABULAR:
        rows = [r if isinstance(r, dict) else {"_junk": r} for r in rows]
    fmt_arg = data.draw(st.sampled_from(["auto", fmt]), label="format")
    with tempfile.TemporaryDirectory() as tmp:
        path, rows_at = serialize(rows, container, Path(tmp), ensure_ascii=data.draw(st.booleans()))
        damaged = data.draw(st.integers(0, 2)) == 0
        if damaged:
            raw = data.draw(mutate_bytes(path.read_bytes()), label="damaged bytes")
            path.write_bytes(raw)
            rows_at = rows_after_damage(raw, container)
        res = check_import(path, fmt_arg, rows_at)
    if res.error is not None:
        event(f"refused: {res.error.split(': ')[1] if ': ' in res.error else res.error}"[:60])
        return
    for reason in res.report.by_reason:
        event(f"reason: {reason}")
    assert "unreadable_row" not in res.report.by_reason, [
        r for r in res.rejects if r["reason"] == "unreadable_row"
    ][:1]
    # a bad row never takes good ones with it (when rows stay independent: not grouped, not retyped)
    if not damaged and fmt_arg != "auto" and container != "parquet" and fmt != "helpsteer2":
        untouched = sum(1 for i in range(len(c.rows)) if i not in touched)
        per_row = len(c.expected) // len(c.rows) if fmt not in ("label-studio", "argilla") else 1
        assert res.report.accepted >= untouched * per_row, (res.report.to_json(), res.rejects[:3])
