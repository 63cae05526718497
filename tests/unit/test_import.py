"""The bad-input corpus: one test per case, each with its own reason code, and counts that always add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardlab.data import importing
from rewardlab.data.dataset import dataset_meta, iter_records, load_dataset
from rewardlab.errors import UserError

GOOD = {"prompt": "What is 2+2?", "responses": ["4", "5"], "ranks": [1, 2], "rater": "r1"}


def good(n: int) -> bytes:
    return (json.dumps({**GOOD, "id": f"g{n}", "prompt": f"What is {n}+2?"}) + "\n").encode()


def check(tmp_path: Path, middle: bytes, reason: str, name: str = "bad.jsonl", tail: bytes | None = None):
    """good line, the bad line, good line -> 2 accepted, 1 quarantined at line 2 with `reason`."""
    path = tmp_path / name
    path.write_bytes(good(1) + middle + (good(3) if tail is None else tail))
    qpath = tmp_path / "q.jsonl"
    report = importing.run([path], out=tmp_path / "ds", quarantine=qpath)
    assert report.accepted + report.quarantined == report.read
    assert report.by_reason == {reason: 1}, report.by_reason
    entry = json.loads(qpath.read_text().splitlines()[0])
    assert entry["reason"] == reason and entry["line"] == 2 and entry["source"] == str(path)
    assert entry["detail"]
    assert len(list(iter_records(load_dataset(tmp_path / "ds")))) == report.accepted
    return report, entry


def record_line(**changes) -> bytes:
    rec = {**GOOD, **changes}
    return (json.dumps({k: v for k, v in rec.items() if v is not None}) + "\n").encode()


def test_truncated_last_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(good(1) + good(2) + b'{"prompt": "cut", "responses": ["a", "b"], "ra')
    report = importing.run([path], quarantine=tmp_path / "q.jsonl")
    assert (report.read, report.accepted, report.by_reason) == (3, 2, {"truncated_line": 1})
    assert report.first_bad["line"] == 3


def test_invalid_json(tmp_path):
    _, entry = check(tmp_path, b'{"prompt": "x", "responses": ["a", "b"], ranks: [1, 2]}\n', "invalid_json")
    assert entry["raw"].startswith('{"prompt": "x"')


def test_missing_ranks(tmp_path):
    _, entry = check(tmp_path, record_line(ranks=None), "missing_field")
    assert "ranks" in entry["detail"] and json.loads(entry["raw"])["responses"] == ["4", "5"]


def test_ranks_responses_length_mismatch(tmp_path):
    check(tmp_path, record_line(ranks=[1, 2, 3]), "ranks_length_mismatch")


@pytest.mark.parametrize("bad_rank", [0, -1, 1.5, "1", True])
def test_rank_zero_negative_or_not_integer(tmp_path, bad_rank):
    check(tmp_path, record_line(ranks=[bad_rank, 2]), "invalid_rank")


def test_single_response(tmp_path):
    check(tmp_path, record_line(responses=["only one"], ranks=[1]), "too_few_responses")


def test_empty_response(tmp_path):
    check(tmp_path, record_line(responses=["4", "   "]), "empty_response")


def test_duplicate_responses(tmp_path):
    check(tmp_path, record_line(responses=["4", "4 "]), "duplicate_responses")


def test_invalid_utf8_bytes_lose_one_line_only(tmp_path):
    bad = b'{"prompt": "caf\xe9 \xff", "responses": ["a", "b"], "ranks": [1, 2]}\n'
    _, entry = check(tmp_path, bad, "invalid_utf8")
    assert "\\xff" in entry["raw"]  # the raw bytes are kept, escaped


def test_5mb_line_is_rejected_without_losing_the_next_lines(tmp_path):
    huge = record_line(responses=["x" * (5 * 1024 * 1024), "y"])
    report, entry = check(tmp_path, huge, "line_too_long", tail=good(3) + good(4))
    assert report.accepted == 3 and "max_line_bytes" in entry["detail"]
    assert len(entry["raw"]) <= 200  # a prefix: the 5 MB are not copied into the quarantine


def test_5mb_line_is_accepted_under_a_larger_limit(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(good(1) + record_line(responses=["x" * (5 * 1024 * 1024), "y"]))
    report = importing.run([path], max_line_bytes=8 * 1024 * 1024)
    assert (report.read, report.accepted) == (2, 2)


def test_unknown_format(tmp_path):
    odd = tmp_path / "notes.txt"
    odd.write_text("hello\n")
    with pytest.raises(UserError, match="unknown_format"):
        importing.run([odd])
    keys = tmp_path / "other.jsonl"
    keys.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(UserError, match=r"unknown_format.*\[answer, question\]"):
        importing.run([keys])
    with pytest.raises(UserError, match="unknown_format"):
        importing.run([keys], fmt="excel")


@pytest.mark.parametrize(
    "name,content",
    [("e.jsonl", b""), ("w.jsonl", b"\n  \n"), ("e.json", b"[]"), ("h.csv", b"prompt,responses,ranks\n")],
)
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match="empty_file"):
        importing.run([path], out=tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_unreadable_path(tmp_path):
    with pytest.raises(UserError, match="unreadable"):
        importing.run([tmp_path / "missing.jsonl"])


def test_csv_with_quoted_newlines_and_a_bad_row(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "prompt,responses,ranks\n"
        '"Write a poem\nabout the sea","[""Waves\\nand foam"", ""No.""]","[1, 2]"\n'
        '"two cells only","[""a"", ""b""]"\n'
        'plain,"[""c"", ""d""]","[2, 1]"\n',
        encoding="utf-8",
    )
    qpath = tmp_path / "q.jsonl"
    report = importing.run([path], out=tmp_path / "ds", quarantine=qpath)
    assert (report.read, report.accepted, report.by_reason) == (3, 2, {"csv_bad_row": 1})
    assert json.loads(qpath.read_text())["line"] == 4  # the first row spans lines 2-3
    recs = list(iter_records(load_dataset(tmp_path / "ds")))
    assert recs[0]["prompt"] == "Write a poem\nabout the sea" and recs[0]["responses"][0] == "Waves\nand foam"


def test_whole_corpus_counts_add_up_and_each_reason_is_distinct(tmp_path):
    lines = [
        good(1),
        b"not json\n",
        record_line(ranks=None),
        record_line(ranks=[1]),
        record_line(ranks=[0, 1]),
        record_line(responses=["one"], ranks=[1]),
        record_line(responses=["", "b"]),
        record_line(responses=["same", "same"]),
        b'{"prompt": "\xc3\x28", "responses": ["a", "b"], "ranks": [1, 2]}\n',
        b"[1, 2, 3]\n",
        good(2),
        b'{"prompt": "end", "responses": ["a", "b"], "ranks": [1,',
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"".join(lines))
    qpath = tmp_path / "q.jsonl"
    report = importing.run([path], out=tmp_path / "ds", quarantine=qpath)
    assert report.read == len(lines) and report.accepted == 2
    assert report.accepted + report.quarantined == report.read
    assert report.by_reason == {
        "invalid_json": 1,
        "missing_field": 1,
        "ranks_length_mismatch": 1,
        "invalid_rank": 1,
        "too_few_responses": 1,
        "empty_response": 1,
        "duplicate_responses": 1,
        "invalid_utf8": 1,
        "not_an_object": 1,
        "truncated_line": 1,
    }
    entries = [json.loads(x) for x in qpath.read_text().splitlines()]
    assert [e["line"] for e in entries] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    meta = dataset_meta(tmp_path / "ds")
    assert meta["records"] == 2 and meta["import"]["quarantined"] == 10


def test_strict_writes_no_dataset_but_keeps_the_quarantine(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(good(1) + b"oops\n")
    report = importing.import_paths([path], tmp_path / "ds", strict=True)
    assert report.invalid == 1 and not (tmp_path / "ds").exists()
    assert not (tmp_path / "ds.tmp").exists()
    assert json.loads((tmp_path / "ds.quarantine.jsonl").read_text())["reason"] == "invalid_json"


def test_parallel_chunks_match_the_serial_import(tmp_path):
    lines = []
    for n in range(3000):
        if n % 97 == 5:
            lines.append(b"{broken\n")
        elif n % 89 == 7:
            lines.append(record_line(prompt=f"p{n}", ranks=[1]))
        else:
            lines.append(good(n))
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"".join(lines))
    serial = importing.run(
        [path], out=tmp_path / "s", quarantine=tmp_path / "qs.jsonl", workers=1, chunk_bytes=20_000
    )
    parallel = importing.run(
        [path],
        out=tmp_path / "p",
        quarantine=tmp_path / "qp.jsonl",
        workers=2,
        chunk_bytes=20_000,
        parallel_min_bytes=0,
    )
    assert (
        serial.to_json()["by_reason"]
        == parallel.to_json()["by_reason"]
        == {"invalid_json": 31, "ranks_length_mismatch": 34}
    )
    assert (tmp_path / "qs.jsonl").read_text() == (tmp_path / "qp.jsonl").read_text()
    assert dataset_meta(tmp_path / "s")["fingerprint"] == dataset_meta(tmp_path / "p")["fingerprint"]
    recs = list(iter_records(load_dataset(tmp_path / "p")))
    assert len(recs) == serial.accepted and recs[-1]["source"] == f"{path}:3000"


def test_several_files_mixed_formats_and_skips(tmp_path):
    canon = tmp_path / "a.jsonl"
    canon.write_bytes(good(1) + b"x\n")
    trl = tmp_path / "b.jsonl"
    trl.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    ls = tmp_path / "c.json"
    ls.write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "data": {"prompt": "p", "answer1": "a", "answer2": "b"},
                    "annotations": [{"id": 1, "was_cancelled": True, "result": []}],
                }
            ]
        )
    )
    report = importing.run([canon, trl, ls], out=tmp_path / "ds")
    assert report.to_json()["format"] == "canonical,trl,label-studio"
    assert [(f["read"], f["accepted"]) for f in report.files] == [(2, 1), (1, 1), (1, 0)]
    assert (
        report.skipped == 1
        and report.invalid == 1
        and report.by_reason == {"invalid_json": 1, "cancelled": 1}
    )


def test_truncated_json_document_is_one_quarantined_item(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('[{"id": 1, "data": {"prompt": "p", "answer1": "a"')
    report = importing.run([path], quarantine=tmp_path / "q.jsonl")
    assert (report.read, report.accepted, report.by_reason) == (1, 0, {"truncated_json": 1})
