"""Records drawn at random survive the exporters: canonical JSONL/CSV/Parquet exactly, and Label Studio,
Argilla and TRL exports come back with the same judgments (ties as far as the tool can hold them)."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from _formats import canonical_row
from _fuzz import check_import, examples, jsonl_bytes, write
from hypothesis import given, settings
from hypothesis import strategies as st

from rewardlab.data.schema import implied_pairs, prompt_text

KEYS = ("id", "prompt", "responses", "ranks", "rater", "strength", "scores", "gold", "time_s", "meta", "hash")
ROWS = st.lists(canonical_row(), min_size=1, max_size=4).map(lambda pairs: [row for row, _ in pairs])


def imported(tmp: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = check_import(write(tmp, "src.jsonl", jsonl_bytes(rows)), "canonical")
    assert res.report.quarantined == 0, res.rejects[:2]
    return res.records


def strict_order_kept(before: list[int], after: list[int]) -> bool:
    """A tool that cannot store ties writes them in listed order: every strict preference must survive."""
    n = len(before)
    return all(after[i] < after[j] for i in range(n) for j in range(n) if before[i] < before[j])


@settings(max_examples=examples(10))
@given(rows=ROWS, suffix=st.sampled_from([".jsonl", ".csv", ".parquet"]))
def test_canonical_export_round_trips_exactly(rows: list[dict[str, Any]], suffix: str) -> None:
    from rewardlab.data.formats.canonical import export_canonical

    with tempfile.TemporaryDirectory() as tmp:
        records = imported(Path(tmp), rows)
        export_canonical(records, Path(tmp) / f"out{suffix}")
        back = check_import(Path(tmp) / f"out{suffix}", "auto")
    assert back.report.quarantined == 0, back.rejects[:2]
    assert [{k: r[k] for k in KEYS} for r in back.records] == [{k: r[k] for k in KEYS} for r in records]


@settings(max_examples=examples(10))
@given(rows=ROWS)
def test_label_studio_export_round_trips(rows: list[dict[str, Any]]) -> None:
    from rewardlab.data.formats.label_studio import export_label_studio

    with tempfile.TemporaryDirectory() as tmp:
        records = imported(Path(tmp), rows)
        result = export_label_studio(records, Path(tmp) / "ls.json", labels_as="annotations")
        back = check_import(Path(tmp) / "ls.json", "auto")
    assert back.report.quarantined == 0 and len(back.records) == len(records), back.rejects[:2]
    for before, after in zip(records, back.records):
        assert after["prompt"] == before["prompt"] and after["responses"] == before["responses"]
        assert (after["rater"], after["gold"], after["time_s"]) == (
            before["rater"],
            before["gold"],
            before["time_s"],
        )
        if result["template"] == "pairwise":
            # the pairwise template stores ties: the same judgment ([2, 2] and [1, 1] are both a tie)
            assert implied_pairs(after["ranks"]) == implied_pairs(before["ranks"])
        else:
            assert strict_order_kept(before["ranks"], after["ranks"])


@settings(max_examples=examples(10))
@given(rows=ROWS)
def test_argilla_export_round_trips(rows: list[dict[str, Any]]) -> None:
    from rewardlab.data.formats.argilla import export_argilla

    with tempfile.TemporaryDirectory() as tmp:
        records = imported(Path(tmp), rows)
        export_argilla(records, Path(tmp) / "argilla.json")
        back = check_import(Path(tmp) / "argilla.json", "argilla")
    rated = [r for r in records if r["rater"] is not None]
    # a record without a rater is exported as a suggestion, which is no one's judgment: read, skipped
    assert back.report.by_reason == (
        {"unlabeled": len(records) - len(rated)} if len(rated) < len(records) else {}
    )
    assert len(back.records) == len(rated)
    for before, after in zip(rated, back.records):
        assert (after["prompt"], after["responses"], after["rater"]) == (
            before["prompt"],
            before["responses"],
            before["rater"],
        )
        assert strict_order_kept(before["ranks"], after["ranks"])


@settings(max_examples=examples(10))
@given(rows=ROWS.filter(lambda rs: len({isinstance(r["prompt"], str) for r in rs}) == 1))
def test_trl_export_round_trips_every_strict_pair(rows: list[dict[str, Any]]) -> None:
    from rewardlab.data.formats.trl import export_trl

    with tempfile.TemporaryDirectory() as tmp:
        records = imported(Path(tmp), rows)
        expected = Counter(
            (prompt_text(r["prompt"]), r["responses"][i], r["responses"][j])
            for r in records
            for i, j, tie in implied_pairs(r["ranks"])
            if not tie
        )
        result = export_trl(records, Path(tmp) / "trl.jsonl")
        assert result["pairs"] == sum(expected.values())
        if not expected:  # only ties: nothing to export, and an empty file is refused on import
            return
        back = check_import(Path(tmp) / "trl.jsonl", "trl")
    assert back.report.quarantined == 0, back.rejects[:2]
    got = Counter((prompt_text(r["prompt"]), *r["responses"]) for r in back.records)
    assert got == expected
    assert all(r["ranks"] == [1, 2] for r in back.records)
