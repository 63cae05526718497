"""Each crash the fuzzers found, pinned as one small input: it now ends in the quarantine with a reason
(or a one-line UserError for a whole-file problem) instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _fuzz import check_import, nested, to_json

from rewardlab import config as cfglib
from rewardlab.data import importing

V = {"prompt": "p", "responses": ["a", "b"], "ranks": [1, 2]}


def jl(*rows: object) -> bytes:
    return "".join(r if isinstance(r, str) else to_json(r) + "\n" for r in rows).encode()


LS_TASK = {"data": {"prompt": "p", "answer1": "a", "answer2": "b"}}
TOLOKA = "INPUT:prompt\tINPUT:left\tINPUT:right\tOUTPUT:result\tASSIGNMENT:started\tASSIGNMENT:submitted\n"
CASES = {
    # name: (file name, bytes, format, {reason: count} expected in the quarantine, accepted)
    "rank_beyond_int32": ("a.jsonl", jl({**V, "ranks": [1, 10**12]}, V), "auto", {"invalid_rank": 1}, 1),
    "meta_nested_990_deep": ("a.jsonl", jl({**V, "meta": nested(990)}, V), "auto", {"wrong_type": 1}, 1),
    "rank_nested_1000_deep": (
        "a.jsonl",
        jl({**V, "ranks": [nested(1000), 1]}),
        "auto",
        {"invalid_rank": 1},
        0,
    ),
    "json_nested_100k_deep": ("a.json", b"[" * 100_000 + b"]" * 100_000, "canonical", {"invalid_json": 1}, 0),
    "surrogate_escape_in_json": (
        "a.json",
        b'[{"prompt": "p\\ud800", "responses": ["a", "b"], "ranks": [1, 2]}]',
        "auto",
        {"invalid_utf8": 1},
        0,
    ),
    "surrogate_escape_in_csv_cell": (
        "a.csv",
        b'prompt,responses,ranks\np,"[""a\\ud800"",""b""]","[1,2]"\n',
        "auto",
        {"invalid_utf8": 1},
        0,
    ),
    "bom_jsonl": ("a.jsonl", b"\xef\xbb\xbf" + jl(V, {**V, "prompt": "q"}), "auto", {}, 2),
    "bom_json": ("a.json", b"\xef\xbb\xbf" + json.dumps([V]).encode(), "auto", {}, 1),
    "array_first_line_jsonl": ("a.jsonl", jl("[1, 2]\n", V), "auto", {"not_an_object": 1}, 1),
    "ls_annotations_string": (
        "a.json",
        json.dumps([{**LS_TASK, "annotations": "xx"}]).encode(),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "ls_annotation_not_object": (
        "a.json",
        json.dumps([{**LS_TASK, "annotations": [5]}]).encode(),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "arena_winner_list": (
        "a.jsonl",
        jl({"winner": ["x"], "conversation_a": [], "conversation_b": []}),
        "auto",
        {"unknown_choice": 1},
        0,
    ),
    "toloka_naive_and_aware_times": (
        "a.tsv",
        (TOLOKA + "p\ta\tb\tleft\t2026-01-01T10:00:00+00:00\t2026-01-01T10:00:05\n").encode(),
        "auto",
        {},
        1,
    ),
    "toloka_golden_list": (
        "a.jsonl",
        jl(
            {
                "INPUT:prompt": "p",
                "INPUT:left": "a",
                "INPUT:right": "b",
                "OUTPUT:result": "left",
                "GOLDEN:result": ["x"],
            }
        ),
        "auto",
        {"unknown_choice": 1},
        1,
    ),
    "toloka_non_object_line": (
        "a.jsonl",
        jl({"INPUT:prompt": "p", "INPUT:left": "a", "INPUT:right": "b", "OUTPUT:result": "left"}, [1]),
        "auto",
        {"not_an_object": 1},
        1,
    ),
    "shp_ratio_text": (
        "a.jsonl",
        jl({"history": "h", "human_ref_A": "a", "human_ref_B": "b", "labels": 1, "score_ratio": "x"}),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "ultrafeedback_annotations_list": (
        "a.jsonl",
        jl({"instruction": "i", "completions": [{"response": "a", "annotations": [1]}, {"response": "b"}]}),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "argilla_users_not_list": (
        "a.jsonl",
        jl(
            {
                "prompt": "p",
                "response1": "a",
                "response2": "b",
                "ranking.responses": [["response1", "response2"]],
                "ranking.responses.users": 5,
            }
        ),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "argilla_users_shorter": (
        "a.jsonl",
        jl(
            {
                "prompt": "p",
                "response1": "a",
                "response2": "b",
                "ranking.responses": [["response1", "response2"], ["response2", "response1"]],
                "ranking.responses.users": ["u1"],
            }
        ),
        "auto",
        {"length_mismatch": 1},
        0,
    ),
    "argilla_value_list": (
        "a.jsonl",
        jl(
            {
                "prompt": "p",
                "response1": "a",
                "response2": "b",
                "ranking.responses": [[["response1"], "response2"]],
            }
        ),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "argilla_v1_response_int": (
        "a.json",
        json.dumps([{"fields": {"prompt": "p", "r1": "a"}, "responses": [5]}]).encode(),
        "auto",
        {"wrong_type": 1},
        0,
    ),
    "argilla_status_newline": (
        "a.jsonl",
        jl(
            {
                "prompt": "p",
                "response1": "a",
                "response2": "b",
                "ranking.responses": [["response1", "response2"]],
                "ranking.responses.status": ["\n"],
            }
        ),
        "auto",
        {"not_submitted": 1},
        0,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_found_crash_is_quarantined(name: str, tmp_path: Path) -> None:
    fname, data, fmt, reasons, accepted = CASES[name]
    path = tmp_path / fname
    path.write_bytes(data)
    res = check_import(path, fmt, max_line_bytes=importing.MAX_LINE_BYTES)
    assert res.error is None, res.error
    assert dict(res.report.by_reason) == reasons and res.report.accepted == accepted


def test_duplicate_csv_column_is_a_whole_file_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text('prompt,responses,ranks,prompt\np,"[""a"",""b""]","[1,2]",q\n')
    res = check_import(path)  # the second 'prompt' column would silently replace the first
    assert res.error is not None and "column 'prompt' twice" in res.error


@pytest.mark.parametrize(
    ("overrides", "path_in_message"),
    [
        (["train.lr=[1"], "train.lr"),  # YAML parse error in an override value: was a ParserError
        (["Foo=1"], "'Foo'"),  # a key starting uppercase was taken for a pydantic tag: IndexError
        (["list=1"], "'list'"),  # ... and so was a key named like a type
        (["model.lora={Foo: 1}"], "model.lora.Foo"),  # was reported as 'model.lora'
        (["train.lr=&a [*a]"], "train.lr"),  # a self-referencing alias: 'Circular reference' ValueError
        (["train..lr=1"], "train..lr"),
    ],
)
def test_config_errors_name_the_key(overrides: list[str], path_in_message: str) -> None:
    with pytest.raises(cfglib.ConfigError) as err:
        cfglib.load(Path(__file__).resolve().parents[2] / "configs/rm/tiny.yaml", overrides)
    assert path_in_message in str(err.value) and "\n" not in str(err.value)
