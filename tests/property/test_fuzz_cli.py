"""The CLI over mutated files: `data validate` and `data import` exit 0 or 2 (never 1), print one error
line, and their --json report keeps accepted + quarantined == read; one real process for the boundary."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from _formats import PAIRS, case
from _fuzz import examples, jsonl_bytes, mutate_bytes, mutate_tree, nested, to_json, write
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rewardlab.cli import app

ROOT = Path(__file__).resolve().parents[2]
JSONL_FORMATS = sorted({fmt for fmt, container in PAIRS if container == "jsonl"})


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def check_cli(result: Any, quarantine: Path | None) -> dict[str, Any] | None:
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    if result.exit_code == 2:
        assert err.startswith("error: "), err
    if not result.stdout.strip():  # refused before reading: a whole-file problem
        assert result.exit_code == 2
        return None
    report = json.loads(result.stdout)
    assert report["accepted"] + report["quarantined"] == report["read"], report
    assert sum(report["by_reason"].values()) == report["quarantined"], report
    if quarantine is not None and report["quarantined"]:
        assert len(quarantine.read_text(encoding="utf-8").split("\n")[:-1]) == report["quarantined"]
    return report


@pytest.mark.parametrize("fmt", JSONL_FORMATS)
@settings(max_examples=examples(3))
@given(data=st.data())
def test_validate_and_import_on_mutated_files(fmt: str, data: Any) -> None:
    c = data.draw(case(fmt, "jsonl"), label="case")
    rows = [data.draw(mutate_tree(r)) if data.draw(st.booleans()) else r for r in c.rows]
    raw = jsonl_bytes(rows)
    if data.draw(st.booleans()):
        raw = data.draw(mutate_bytes(raw), label="damaged bytes")
    with tempfile.TemporaryDirectory() as tmp:
        path, q = write(Path(tmp), "in.jsonl", raw), Path(tmp) / "q.jsonl"
        report = check_cli(invoke("data", "validate", path, "--json", "--quarantine", q), q)
        if report is not None:
            assert report["format"] == fmt or report["format"] is not None
        out = Path(tmp) / "ds"
        imported = check_cli(invoke("data", "import", path, "--out", out, "--format", fmt, "--json"), None)
        if imported is not None:
            assert imported["out"] == str(out) and out.is_dir()
            quarantine = Path(f"{out}.quarantine.jsonl")
            assert len(quarantine.read_text(encoding="utf-8").split("\n")[:-1]) == imported["quarantined"]


def test_console_script_on_a_file_of_every_accident(tmp_path: Path) -> None:
    """The real process: exit codes and stdout/stderr cross it. One file holds one of each bug this suite
    found: a BOM, CRLF, a lone-surrogate escape, nesting past the JSON parsers' limits, a rank too large
    for the store, a non-object line first, bad UTF-8, and a truncated last line."""
    good = {"prompt": "p", "responses": ["a", "b"], "ranks": [1, 2]}
    lines = [
        b"[1, 2]",  # a JSON array as the first line: once read the whole .jsonl as one JSON document
        json.dumps(good).encode(),
        json.dumps({**good, "prompt": "q", "ranks": [1, 10**12]}).encode(),  # once an ArrowInvalid crash
        b'{"prompt": "x\\ud800", "responses": ["a", "b"], "ranks": [1, 2]}',  # orjson refuses: invalid_json
        to_json({**good, "prompt": "deep", "meta": nested(990)}).encode(),  # once a RecursionError
        b'{"prompt": "\xff\xfe", "responses": ["a", "b"], "ranks": [1, 2]}',
        json.dumps({**good, "prompt": "r"}).encode(),
        b'{"prompt": "cut", "respon',
    ]
    path = tmp_path / "accidents.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines))
    script = Path(sys.executable).parent / "rewardlab"
    q = tmp_path / "q.jsonl"
    res = subprocess.run(
        [str(script), "data", "validate", str(path), "--json", "--quarantine", str(q)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert res.returncode == 2, res.stderr  # invalid records: reported, exit 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    assert (report["read"], report["accepted"]) == (8, 2)
    assert report["by_reason"] == {
        "invalid_json": 1,
        "invalid_rank": 1,
        "invalid_utf8": 1,
        "not_an_object": 1,
        "truncated_line": 1,
        "wrong_type": 1,
    }
    assert len(q.read_text(encoding="utf-8").split("\n")[:-1]) == 6
