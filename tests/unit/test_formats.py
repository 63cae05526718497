"""Each importer on a small file written in its tool's real export shape, and the exporters' round trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rewardlab.data import importing
from rewardlab.data.dataset import iter_records, load_dataset


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(tmp_path: Path, path: Path, fmt: str = "auto", expect_format: str | None = None):
    """Import `path`; check the counts identity and the quarantine file; return (report, records, rejects)."""
    out = tmp_path / "ds"
    qpath = tmp_path / "q.jsonl"
    report = importing.run([path], fmt=fmt, out=out, quarantine=qpath)
    assert report.accepted + report.quarantined == report.read
    rejects = [json.loads(line) for line in qpath.read_text().splitlines()]
    assert len(rejects) == report.quarantined
    assert sum(report.by_reason.values()) == report.quarantined
    if expect_format:
        assert report.to_json()["format"] == expect_format
    records = list(iter_records(load_dataset(out)))
    assert len(records) == report.accepted
    return report, records, rejects


# ------------------------------------------------------------------------------------------- canonical


def test_canonical_jsonl_kwise_ties_chat_scores_gold(tmp_path):
    rows = [
        {
            "id": "c-1",
            "prompt": "How do I reset my router?",
            "responses": ["Unplug it for 30 seconds.", "Call your ISP.", "Routers cannot be reset."],
            "ranks": [1, 2, 2],
            "rater": "r-17",
            "strength": "better",
            "scores": {"helpfulness": [4, 2, 1]},
            "time_s": 41.5,
            "meta": {"batch": "round-1"},
        },
        {
            "prompt": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "2+2?"},
            ],
            "responses": ["4", "5"],
            "ranks": [1, 2],
            "gold": True,
        },
    ]
    report, recs, _ = run(tmp_path, write_jsonl(tmp_path / "c.jsonl", rows), expect_format="canonical")
    assert report.accepted == 2
    first, second = recs
    assert first["ranks"] == [1, 2, 2] and first["rater"] == "r-17" and first["strength"] == "better"
    assert first["scores"] == {"helpfulness": [4.0, 2.0, 1.0]} and first["meta"] == {"batch": "round-1"}
    assert first["source"].endswith("c.jsonl:1")
    assert second["prompt"][2] == {"role": "user", "content": "2+2?"} and second["gold"] is True
    assert second["id"].startswith("c-")  # made from the content hash


def test_canonical_csv_json_cells_and_quoted_newlines(tmp_path):
    path = tmp_path / "c.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "responses", "ranks", "rater", "gold", "time_s", "meta"])
        # a spreadsheet keeps real newlines, in plain cells and inside the JSON strings of list cells
        w.writerow(
            [
                "a",
                "Write a haiku\nabout spring",
                '["line one\nline two", "no"]',
                "[1, 2]",
                "r1",
                "false",
                "12.5",
                '{"k": 1}',
            ]
        )
        w.writerow(
            ["b", json.dumps([{"role": "user", "content": "hi"}]), '["x", "y"]', "[2, 1]", "", "true", "", ""]
        )
    report, recs, _ = run(tmp_path, path, expect_format="canonical")
    assert report.accepted == 2
    assert recs[0]["prompt"] == "Write a haiku\nabout spring"
    assert recs[0]["responses"][0] == "line one\nline two"
    assert recs[0]["time_s"] == 12.5 and recs[0]["meta"] == {"k": 1} and recs[0]["gold"] is False
    assert recs[1]["prompt"] == [{"role": "user", "content": "hi"}] and recs[1]["rater"] is None
    assert recs[1]["gold"] is True
    # the second row starts on line 5: the first row spans lines 2-4 (two cells hold a newline)
    assert recs[1]["source"].endswith("c.csv:5")


def test_canonical_parquet_lists(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "prompt": ["p1", "p2"],
            "responses": [["a", "b", "c"], ["d", "e"]],
            "ranks": [[1, 1, 2], [2, 1]],
            "rater": ["r1", None],
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    report, recs, _ = run(tmp_path, tmp_path / "c.parquet", expect_format="canonical")
    assert [r["ranks"] for r in recs] == [[1, 1, 2], [2, 1]]
    assert recs[0]["source"].endswith("c.parquet:1")


# ------------------------------------------------------------------------------------------- TRL


def test_trl_explicit_implicit_conversational_margin(tmp_path):
    rows = [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "margin": 2.0},
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},  # implicit prompt
        {
            "prompt": [{"role": "user", "content": "What color is the sky?"}],
            "chosen": [{"role": "assistant", "content": "It is blue."}],
            "rejected": [{"role": "assistant", "content": "It is green."}],
        },
        {
            "chosen": [
                {"role": "user", "content": "Where is the sun?"},
                {"role": "assistant", "content": "In the sky."},
            ],
            "rejected": [
                {"role": "user", "content": "Where is the sun?"},
                {"role": "assistant", "content": "In the sea."},
            ],
        },
        {"chosen": "Same", "rejected": "Different"},  # no shared prefix
    ]
    report, recs, rejects = run(tmp_path, write_jsonl(tmp_path / "t.jsonl", rows), expect_format="trl")
    assert report.accepted == 4
    assert recs[0]["responses"] == [" blue.", " green."] and recs[0]["strength"] == "2.0"
    assert recs[1]["prompt"] == "The sky is" and recs[1]["responses"] == [" blue.", " green."]
    assert recs[2]["prompt"] == [{"role": "user", "content": "What color is the sky?"}]
    assert recs[3]["prompt"] == [{"role": "user", "content": "Where is the sun?"}]
    assert recs[3]["responses"] == ["In the sky.", "In the sea."]
    assert all(r["ranks"] == [1, 2] for r in recs)
    assert [r["reason"] for r in rejects] == ["no_shared_prompt"] and rejects[0]["line"] == 5


# ------------------------------------------------------------------------------------------- HH-RLHF


def test_hh_rlhf_split_at_last_shared_assistant_turn(tmp_path):
    shared = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant:"
    rows = [
        {"chosen": shared + " It is 4.", "rejected": shared + " It is 5."},
        # the rejected transcript goes on with extra turns after its answer
        {
            "chosen": "\n\nHuman: Name a color\n\nAssistant: Blue.",
            "rejected": "\n\nHuman: Name a color\n\nAssistant: Red.\n\nHuman: Why?\n\nAssistant: I like it.",
        },
        # the shared text ends inside an answer: the split falls back to the last marker in the common prefix
        {
            "chosen": "\n\nHuman: Say hi\n\nAssistant: Hi friend",
            "rejected": "\n\nHuman: Say hi\n\nAssistant: Hi foe",
        },
        {"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: b"},
    ]
    report, recs, rejects = run(tmp_path, write_jsonl(tmp_path / "hh.jsonl", rows), expect_format="hh-rlhf")
    assert report.accepted == 3
    assert recs[0]["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert recs[0]["responses"] == ["It is 4.", "It is 5."]
    assert recs[1]["responses"] == ["Blue.", "Red.\n\nHuman: Why?\n\nAssistant: I like it."]
    assert recs[2]["responses"] == ["Hi friend", "Hi foe"]
    assert [r["reason"] for r in rejects] == ["no_shared_assistant_turn"]


# ------------------------------------------------------------------------------------------- SHP / UF / HS2


def test_shp_labels_and_strength_buckets(tmp_path):
    base = {
        "post_id": "p1",
        "domain": "askscience_train",
        "upvote_ratio": 0.99,
        "history": "Why is the sky blue?",
        "c_root_id_A": "ca",
        "c_root_id_B": "cb",
        "created_at_utc_A": 1,
        "created_at_utc_B": 2,
        "human_ref_A": "Rayleigh scattering.",
        "human_ref_B": "Because it reflects the sea.",
        "seconds_difference": 1.0,
    }
    rows = [
        {**base, "score_A": 50, "score_B": 10, "labels": 1, "score_ratio": 5.0},
        {**base, "c_root_id_B": "cc", "score_A": 10, "score_B": 13, "labels": 0, "score_ratio": 1.3},
        {**base, "c_root_id_B": "cd", "score_A": 3, "score_B": 9, "labels": 0},  # ratio from scores: 3.0
    ]
    report, recs, _ = run(tmp_path, write_jsonl(tmp_path / "shp.jsonl", rows), expect_format="shp")
    assert [r["ranks"] for r in recs] == [[1, 2], [2, 1], [2, 1]]
    assert [r["strength"] for r in recs] == ["significantly better", "slightly better", "better"]
    assert recs[0]["response_ids"] == ["ca", "cb"]


def test_ultrafeedback_aspect_scores_and_tied_ranks(tmp_path):
    def comp(model, text, overall, help_):
        notes = {
            a: {"Rating": help_, "Rationale": "..."}
            for a in ("instruction_following", "honesty", "helpfulness")
        }
        notes["truthfulness"] = {
            "Type": ["0"],
            "Rationale": "...",
            "Rating": "N/A",
            "Rationale For Rating": "...",
        }
        return {
            "model": model,
            "principle": "helpfulness",
            "custom_system_prompt": "",
            "response": text,
            "annotations": notes,
            "fine-grained_score": 4.0,
            "overall_score": overall,
            "critique": "...",
        }

    row = {
        "source": "evol_instruct",
        "instruction": "Explain recursion.",
        "models": ["m1", "m2", "m3", "m4"],
        "completions": [
            comp("m1", "A function calling itself.", 8.0, "5"),
            comp("m2", "A loop.", 4.0, "2"),
            comp("m3", "Self reference.", 8.0, "4"),
            comp("m4", "No idea.", 1.0, "1"),
        ],
        "correct_answers": ["None"],
        "incorrect_answers": ["None"],
    }
    report, recs, _ = run(tmp_path, write_jsonl(tmp_path / "uf.jsonl", [row]), expect_format="ultrafeedback")
    rec = recs[0]
    assert rec["ranks"] == [1, 3, 1, 4]  # equal overall scores tie
    assert rec["scores"]["helpfulness"] == [5.0, 2.0, 4.0, 1.0]
    assert "truthfulness" not in rec["scores"]  # all N/A
    assert rec["response_ids"] == ["m1", "m2", "m3", "m4"]


def test_helpsteer2_groups_rows_by_prompt(tmp_path):
    def row(prompt, response, h, c=3):
        return {
            "prompt": prompt,
            "response": response,
            "helpfulness": h,
            "correctness": c,
            "coherence": 4,
            "complexity": 2,
            "verbosity": 1,
        }

    rows = [
        row("P1", "good", 4),
        row("P1", "bad", 1, 1),
        row("P2", "x", 2),
        row("P3", "lonely", 3),
        row("P2", "y", 2),
    ]
    report, recs, rejects = run(
        tmp_path, write_jsonl(tmp_path / "hs.jsonl", rows), expect_format="helpsteer2"
    )
    assert report.read == 3  # one item per prompt group
    assert recs[0]["responses"] == ["good", "bad"] and recs[0]["ranks"] == [1, 2]
    assert recs[0]["scores"]["correctness"] == [3.0, 1.0]
    assert recs[1]["responses"] == ["x", "y"] and recs[1]["ranks"] == [1, 1]
    assert [r["reason"] for r in rejects] == ["too_few_responses"] and rejects[0]["line"] == 4


# ------------------------------------------------------------------------------------------- Label Studio


def ls_annotation(aid, result, user=1, cancelled=False, gold=False, lead=12.5):
    return {
        "id": aid,
        "completed_by": user,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": gold,
        "created_at": "2026-01-01T10:00:00Z",
        "updated_at": "2026-01-01T10:00:00Z",
        "lead_time": lead,
        "prediction": {},
        "result_count": 0,
        "task": 0,
        "project": 1,
    }


def pairwise(selected):
    return [
        {
            "id": "x1",
            "from_name": "comparison",
            "to_name": "comparison",
            "type": "pairwise",
            "origin": "manual",
            "value": {"selected": selected},
        }
    ]


def test_label_studio_pairwise_and_ranker_exports(tmp_path):
    tasks = [
        {
            "id": 1,
            "data": {"prompt": "Capital of France?", "answer1": "Paris", "answer2": "Lyon"},
            "annotations": [
                ls_annotation(11, pairwise("left"), user=1),
                ls_annotation(12, pairwise("right"), user=2, gold=True),
                ls_annotation(13, [], user=3, cancelled=True),
                ls_annotation(
                    14,
                    [
                        {
                            "from_name": "tie",
                            "to_name": "prompt",
                            "type": "choices",
                            "value": {"choices": ["Tie"]},
                        }
                    ],
                    user={"id": 4, "email": "d@x.org"},
                ),
            ],
            "predictions": [],
        },
        {
            "id": 2,
            "data": {
                "prompt": "Best answer?",
                "items": [
                    {"id": "a", "title": "A", "body": "alpha"},
                    {"id": "b", "title": "B", "body": "beta"},
                    {"id": "c", "title": "C", "body": "gamma"},
                ],
            },
            "annotations": [
                ls_annotation(
                    21,
                    [
                        {
                            "from_name": "rank",
                            "to_name": "answers",
                            "type": "ranker",
                            "value": {"ranker": {"rank": ["b", "c", "a"]}},
                        }
                    ],
                ),
                ls_annotation(
                    22,
                    [
                        {
                            "from_name": "rank",
                            "to_name": "answers",
                            "type": "ranker",
                            "value": {"ranker": ["c", "a", "b"]},
                        }
                    ],
                ),  # older export
                ls_annotation(
                    23,
                    [
                        {
                            "from_name": "rank",
                            "to_name": "answers",
                            "type": "ranker",
                            "value": {"ranker": {"good": ["a", "b"], "bad": ["c"], "_": []}},
                        }
                    ],
                ),  # buckets
                ls_annotation(
                    24,
                    [
                        {
                            "from_name": "rank",
                            "to_name": "answers",
                            "type": "ranker",
                            "value": {"ranker": {"good": ["a"], "_": ["b", "c"]}},
                        }
                    ],
                ),  # unplaced items
            ],
        },
        {"id": 3, "data": {"prompt": "Unlabeled", "answer1": "x", "answer2": "y"}, "annotations": []},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, indent=2))
    report, recs, rejects = run(tmp_path, path, expect_format="label-studio")
    assert report.read == 9 and report.accepted == 6
    assert report.by_reason == {"cancelled": 1, "incomplete_ranking": 1, "unlabeled": 1}
    assert report.skipped == 2 and report.invalid == 1
    by_id = {r["id"]: r for r in recs}
    assert by_id["ls-1-11"]["ranks"] == [1, 2] and by_id["ls-1-11"]["rater"] == "1"
    assert by_id["ls-1-11"]["time_s"] == 12.5 and by_id["ls-1-11"]["gold"] is False
    assert by_id["ls-1-12"]["ranks"] == [2, 1] and by_id["ls-1-12"]["gold"] is True
    assert by_id["ls-1-14"]["ranks"] == [1, 1] and by_id["ls-1-14"]["rater"] == "d@x.org"
    assert by_id["ls-2-21"]["responses"] == ["alpha", "beta", "gamma"] and by_id["ls-2-21"]["ranks"] == [
        3,
        1,
        2,
    ]
    assert by_id["ls-2-22"]["ranks"] == [2, 3, 1]
    assert by_id["ls-2-23"]["ranks"] == [1, 1, 3]
    assert by_id["ls-2-21"]["response_ids"] == ["a", "b", "c"]
    cancelled = next(r for r in rejects if r["reason"] == "cancelled")
    assert cancelled["line"] == 1 and "annotation 13" in cancelled["detail"]


def test_label_studio_ground_truth_strings_are_read_as_flags(tmp_path):
    """CSV-converted exports carry "false"/"true": bool("false") would have made every annotation gold."""
    data = {"prompt": "Capital of France?", "answer1": "Paris", "answer2": "Lyon"}
    anns = [
        ls_annotation(n, pairwise("left"), user=n, gold=g)
        for n, g in enumerate(["false", "true", "maybe"], 1)
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"id": 1, "data": data, "annotations": anns}]))
    report, recs, rejects = run(tmp_path, path, expect_format="label-studio")
    assert {r["id"]: r["gold"] for r in recs} == {"ls-1-1": False, "ls-1-2": True}
    assert report.by_reason == {"wrong_type": 1} and "maybe" in rejects[0]["detail"]


# ------------------------------------------------------------------------------------------- Argilla


def test_argilla_v2_flattened_with_users_and_status(tmp_path):
    rows = [
        {
            "id": "rec-1",
            "status": "completed",
            "_server_id": "s1",
            "inserted_at": "t",
            "updated_at": "t",
            "prompt": "Pick the best",
            "response1": "one",
            "response2": "two",
            "response3": "three",
            "ranking.responses": [
                ["response2", "response1", "response3"],
                ["response1", "response2", "response3"],
                ["response3", "response2", "response1"],
            ],
            "ranking.responses.users": ["u-1", "u-2", "u-3"],
            "ranking.responses.status": ["submitted", "submitted", "draft"],
        }
    ]
    report, recs, rejects = run(tmp_path, write_jsonl(tmp_path / "a.jsonl", rows), expect_format="argilla")
    assert report.read == 3 and report.accepted == 2 and report.by_reason == {"not_submitted": 1}
    assert recs[0]["responses"] == ["one", "two", "three"]  # field order, not ranked order
    assert recs[0]["ranks"] == [2, 1, 3] and recs[0]["rater"] == "u-1"
    assert recs[1]["ranks"] == [1, 2, 3] and recs[1]["rater"] == "u-2"


def test_argilla_v1_ranks_keep_ties_and_v2_nested(tmp_path):
    v1 = {
        "fields": {"prompt": "Q?", "reply-1": "first", "reply-2": "second", "reply-3": "third"},
        "responses": [
            {
                "user_id": "u-9",
                "status": "submitted",
                "values": {
                    "ranking": {
                        "value": [
                            {"value": "reply-1", "rank": 1},
                            {"value": "reply-2", "rank": 1},
                            {"value": "reply-3", "rank": 2},
                        ]
                    }
                },
            },
            {"user_id": "u-8", "status": "discarded", "values": {}},
        ],
        "metadata": {"src": "x"},
        "external_id": "e1",
    }
    v2 = {
        "id": "r2",
        "fields": {"instruction": "Say hi", "response1": "hi", "response2": "yo"},
        "metadata": {},
        "suggestions": {},
        "responses": {"ranking": [{"value": ["response2", "response1"], "user_id": "u-1"}]},
        "vectors": {},
        "_server_id": None,
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps([v1, v2]))
    report, recs, rejects = run(tmp_path, path, expect_format="argilla")
    assert report.accepted == 2 and report.by_reason == {"not_submitted": 1}
    assert recs[0]["ranks"] == [1, 1, 2] and recs[0]["meta"]["src"] == "x"
    assert recs[1]["prompt"] == "Say hi" and recs[1]["ranks"] == [2, 1]


# ------------------------------------------------------------------------------------------- Toloka


def test_toloka_tsv_rejected_skipped_and_golden_becomes_gold_record(tmp_path):
    header = [
        "INPUT:prompt",
        "INPUT:left",
        "INPUT:right",
        "OUTPUT:result",
        "GOLDEN:result",
        "HINT:text",
        "ASSIGNMENT:link",
        "ASSIGNMENT:assignment_id",
        "ASSIGNMENT:worker_id",
        "ASSIGNMENT:status",
        "ASSIGNMENT:started",
    ]
    rows = [
        ["2+2?", "4", "5", "left", "", "", "https://toloka/1", "a1", "w1", "APPROVED", "2026-01-01T10:00:00"],
        [
            "2+2?",
            "4",
            "5",
            "right",
            "",
            "",
            "https://toloka/2",
            "a2",
            "w2",
            "REJECTED",
            "2026-01-01T10:00:00",
        ],
        ["Capital?", "Paris", "Rome", "left", "left", "", "https://toloka/3", "a3", "w1", "SUBMITTED", ""],
        ["Capital?", "Paris", "Rome", "right", "left", "", "https://toloka/4", "a4", "w2", "SUBMITTED", ""],
        ["Best?", "x", "y", "tie", "", "", "https://toloka/5", "a5", "w3", "APPROVED", ""],
        ["Best?", "x", "y", "maybe", "", "", "https://toloka/6", "a6", "w3", "APPROVED", ""],
    ]
    path = tmp_path / "results.tsv"
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    report, recs, rejects = run(tmp_path, path, expect_format="toloka")
    assert report.read == 7  # 6 rows + 1 gold reference (the control task appears twice, gold once)
    assert report.by_reason == {"rejected_assignment": 1, "unknown_choice": 1}
    gold = [r for r in recs if r["gold"]]
    assert len(gold) == 1 and gold[0]["ranks"] == [1, 2] and gold[0]["rater"] is None
    judged = [r for r in recs if not r["gold"]]
    assert [(r["rater"], r["ranks"]) for r in judged] == [
        ("w1", [1, 2]),
        ("w1", [1, 2]),
        ("w2", [2, 1]),
        ("w3", [1, 1]),
    ]
    assert judged[1]["meta"]["control"] is True
    assert next(r for r in rejects if r["reason"] == "rejected_assignment")["line"] == 3


# ------------------------------------------------------------------------------------------- Arena


def test_arena_winners_judge_and_multi_turn(tmp_path):
    def battle(winner, qid, conv_b=None):
        conv_a = [
            {"role": "user", "content": "Tell a joke"},
            {"role": "assistant", "content": f"A joke {qid}"},
        ]
        return {
            "question_id": qid,
            "model_a": "gpt-x",
            "model_b": "llama-y",
            "winner": winner,
            "judge": "arena_user_7",
            "conversation_a": conv_a,
            "conversation_b": conv_b or [conv_a[0], {"role": "assistant", "content": "Another joke"}],
            "turn": 1,
            "anony": True,
            "language": "English",
            "tstamp": 1700000000.0,
        }

    multi = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello (b)"},
        {"role": "user", "content": "Tell a joke"},
        {"role": "assistant", "content": "B joke"},
    ]
    rows = [
        battle("model_a", "q1"),
        battle("model_b", "q2"),
        battle("tie", "q3"),
        battle("tie (bothbad)", "q4"),
        battle("model_a", "q5", conv_b=multi),
    ]
    report, recs, rejects = run(tmp_path, write_jsonl(tmp_path / "arena.jsonl", rows), expect_format="arena")
    assert [r["ranks"] for r in recs] == [[1, 2], [2, 1], [1, 1], [1, 1]]
    assert recs[0]["rater"] == "arena_user_7" and recs[0]["response_ids"] == ["gpt-x", "llama-y"]
    assert recs[3]["meta"]["tie"] == "bothbad"
    assert recs[0]["prompt"] == [{"role": "user", "content": "Tell a joke"}]
    # q5's turn 1 would compare answers to two different first questions: not a comparison.
    assert [r["reason"] for r in rejects] == ["prompt_mismatch"]


def mt_bench_row(turn, judge="expert_3", winner="model_a", tstamp=None, same_history=False):
    """An MT-Bench human-judgment row as LMSYS exports it: both two-turn conversations in every row, ``turn``
    saying which answer was judged, no tstamp."""
    a1 = "Paris." if not same_history else "Paris is the capital."
    b1 = "It is Paris, on the Seine." if not same_history else a1

    def conv(first, second):
        return [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "And its population?"},
            {"role": "assistant", "content": second},
        ]

    row = {
        "question_id": 81,
        "model_a": "alpaca-13b",
        "model_b": "gpt-4",
        "winner": winner,
        "judge": judge,
        "turn": turn,
        "conversation_a": conv(a1, "About 2 million."),
        "conversation_b": conv(b1, "Roughly 2.1 million in the city proper."),
    }
    if tstamp is not None:
        row["tstamp"] = tstamp
    return row


def test_arena_mt_bench_turns(tmp_path):
    rows = [
        mt_bench_row(1),
        mt_bench_row(1, judge="expert_4", winner="model_b"),
        mt_bench_row(2),  # each model answers turn 2 in its own conversation: two contexts
        mt_bench_row(2, judge="expert_4", winner="tie", same_history=True),  # one shared context
        mt_bench_row(3),  # no third answer
        mt_bench_row(1, tstamp=1687000000.5),
    ]
    report, recs, rejects = run(tmp_path, write_jsonl(tmp_path / "mt.jsonl", rows), expect_format="arena")
    # turn 1: the first answers to the first user message, later messages cut
    first = recs[0]
    assert first["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert first["responses"] == ["Paris.", "It is Paris, on the Seine."]
    assert first["ranks"] == [1, 2] and recs[1]["ranks"] == [2, 1]
    assert first["meta"]["turn"] == 1
    # turn 2 with a shared history: imported, the prompt holds the shared first exchange
    second = next(r for r in recs if r["meta"]["turn"] == 2)
    assert [m["content"] for m in second["prompt"]] == [
        "Capital of France?",
        "Paris is the capital.",
        "And its population?",
    ]
    assert second["responses"] == [
        "About 2 million.",
        "Roughly 2.1 million in the city proper.",
    ]
    assert second["ranks"] == [1, 1]
    assert len(recs) == 4
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert reasons == {3: "multi_turn_divergent", 5: "bad_turn"}
    divergent = next(r for r in rejects if r["line"] == 3)
    assert "turn 2" in divergent["detail"] and "message 2" in divergent["detail"]
    # ids unique per judgment: question, model pair, turn, judge, and the tstamp where given
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "arena-81-alpaca-13b-gpt-4-t1-expert_3"
    assert ids[-1] == "arena-81-alpaca-13b-gpt-4-t1-expert_3-1687000000.5"


# ------------------------------------------------------------------------------------------- exporters


def sample_records(tmp_path: Path) -> list[dict]:
    rows = [
        {
            "id": "a",
            "prompt": "P1",
            "responses": ["good", "bad"],
            "ranks": [1, 2],
            "rater": "r1",
            "time_s": 3.0,
        },
        {
            "id": "b",
            "prompt": "P2",
            "responses": ["x", "y", "z"],
            "ranks": [2, 1, 2],
            "rater": "r2",
            "meta": {"batch": 1},
        },
        {
            "id": "c",
            "prompt": [{"role": "user", "content": "hi"}],
            "responses": ["hey", "go away"],
            "ranks": [1, 1],
        },
    ]
    report = importing.run([write_jsonl(tmp_path / "src.jsonl", rows)], out=tmp_path / "src")
    assert report.accepted == 3
    return list(iter_records(load_dataset(tmp_path / "src")))


def test_export_trl_pairs_counts_ties(tmp_path):
    from rewardlab.data.formats.trl import export_trl

    recs = sample_records(tmp_path)
    result = export_trl(recs[:2], tmp_path / "trl.jsonl")
    # record a: 1 pair; record b: ranks [2,1,2] -> (1 beats 0), (1 beats 2), tie (0,2)
    assert result["pairs"] == 3 and result["ties_not_exported"] == 1
    lines = [json.loads(x) for x in (tmp_path / "trl.jsonl").read_text().splitlines()]
    assert lines[0] == {"prompt": "P1", "chosen": "good", "rejected": "bad"}
    assert {(row["chosen"], row["rejected"]) for row in lines[1:]} == {("y", "x"), ("y", "z")}
    chat = export_trl([{**recs[2], "ranks": [2, 1]}], tmp_path / "chat.jsonl")
    row = json.loads((tmp_path / "chat.jsonl").read_text())
    assert chat["pairs"] == 1
    assert row["chosen"] == [{"role": "assistant", "content": "go away"}]
    assert row["prompt"] == [{"role": "user", "content": "hi"}]


def test_export_label_studio_round_trip_and_config(tmp_path):
    from rewardlab.data.formats.label_studio import export_label_studio

    recs = sample_records(tmp_path)
    pair = export_label_studio([recs[0], recs[2]], tmp_path / "ls_pairs.json", labels_as="annotations")
    assert pair["template"] == "pairwise" and pair["tasks"] == 2
    config = Path(pair["config"]).read_text()
    assert '<Pairwise name="comparison" toName="answer1,answer2"' in config and 'value="$answer1"' in config
    ranker = export_label_studio(recs, tmp_path / "ls_rank.json", labels_as="annotations")
    assert ranker["template"] == "ranker" and ranker["ties_as_order"] == 2
    assert '<Ranker name="rank" toName="answers"/>' in Path(ranker["config"]).read_text()
    (tmp_path / "rt").mkdir()
    _, back, _ = run(tmp_path / "rt", tmp_path / "ls_pairs.json", expect_format="label-studio")
    assert [r["ranks"] for r in back] == [[1, 2], [1, 1]]
    assert back[0]["rater"] == "r1" and back[0]["time_s"] == 3.0
    assert back[1]["prompt"] == [{"role": "user", "content": "hi"}]
    # unlabeled records (no ranks), as the sampling step exports them
    plain = export_label_studio(
        [{"prompt": "Q", "responses": ["a", "b", "c"], "meta": {"task": "t"}}],
        tmp_path / "batch.json",
        template="ranker",
    )
    task = json.loads((tmp_path / "batch.json").read_text())[0]
    assert plain["labeled"] == 0 and "predictions" not in task and "annotations" not in task
    assert [i["body"] for i in task["data"]["items"]] == ["a", "b", "c"] and task["data"]["meta"] == {
        "task": "t"
    }


def test_export_argilla_round_trip(tmp_path):
    from rewardlab.data.formats.argilla import export_argilla

    recs = sample_records(tmp_path)
    result = export_argilla(recs, tmp_path / "argilla.json")
    assert result["records"] == 3 and result["ties_as_order"] == 2
    settings = json.loads(Path(result["settings"]).read_text())
    assert settings["questions"][0]["settings"]["type"] == "ranking"  # argilla 2.x shape
    options = settings["questions"][0]["settings"]["options"]
    assert [o["value"] for o in options] == ["response1", "response2", "response3"]
    rows = json.loads((tmp_path / "argilla.json").read_text())
    assert rows[2]["suggestions"]["ranking"]["value"] == ["response1", "response2"]  # no rater: a suggestion
    (tmp_path / "rt").mkdir()
    report, back, _ = run(tmp_path / "rt", tmp_path / "argilla.json", expect_format="argilla")
    assert report.accepted == 2 and report.by_reason == {"unlabeled": 1}
    assert [r["ranks"] for r in back] == [[1, 2], [2, 1, 3]]  # the tie (0, 2) became listed order
    assert [r["rater"] for r in back] == ["r1", "r2"] and back[0]["responses"] == ["good", "bad"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_export_canonical_round_trip(tmp_path, suffix):
    from rewardlab.data.formats.canonical import export_canonical

    recs = sample_records(tmp_path)
    export_canonical(recs, tmp_path / f"out{suffix}")
    (tmp_path / "rt").mkdir()
    _, back, _ = run(tmp_path / "rt", tmp_path / f"out{suffix}", expect_format="canonical")
    keys = ("id", "prompt", "responses", "ranks", "rater", "meta", "time_s", "hash")
    assert [{k: r[k] for k in keys} for r in back] == [{k: r[k] for k in keys} for r in recs]
