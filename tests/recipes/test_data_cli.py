"""`rewardlab data validate|import|stats|export` through the real CLI (in-process): exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rewardlab.data.dataset import dataset_meta, is_dataset_dir

ROOT = Path(__file__).resolve().parents[2]
GOOD = [
    {"id": "a", "prompt": "2+2?", "responses": ["4", "5"], "ranks": [1, 2], "rater": "r1"},
    {
        "id": "b",
        "prompt": "Capital of France?",
        "responses": ["Paris", "Rome", "Nice"],
        "ranks": [1, 3, 2],
        "rater": "r2",
    },
    {"id": "c", "prompt": "Best color?", "responses": ["blue", "red"], "ranks": [1, 1], "rater": "r1"},
]


def write(path: Path, rows: list, extra: bytes = b"") -> Path:
    path.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode() + extra)
    return path


def test_validate_good_file_json_contract(cli, tmp_path):
    res = cli("data", "validate", write(tmp_path / "good.jsonl", GOOD), "--json")
    assert res.exit_code == 0, res
    out = res.json()
    assert {k: out[k] for k in ("read", "accepted", "quarantined", "by_reason", "format")} == {
        "read": 3,
        "accepted": 3,
        "quarantined": 0,
        "by_reason": {},
        "format": "canonical",
    }


def test_validate_bad_file_exits_2_naming_file_line_reason(cli, tmp_path):
    path = write(tmp_path / "bad.jsonl", GOOD, b'{"prompt": "x", "responses": ["only"], "ranks": [1]}\n')
    qpath = tmp_path / "q.jsonl"
    res = cli("data", "validate", path, "--quarantine", qpath, "--json")
    assert res.exit_code == 2
    assert res.json()["by_reason"] == {"too_few_responses": 1} and res.json()["quarantined"] == 1
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and f"{path}:4" in err and "too_few_responses" in err
    assert json.loads(qpath.read_text())["line"] == 4
    assert not (tmp_path / "bad").exists()  # validate writes no dataset


def test_validate_skips_by_design_do_not_fail(cli, tmp_path):
    tasks = [
        {
            "id": 1,
            "data": {"prompt": "p", "answer1": "a", "answer2": "b"},
            "annotations": [
                {"id": 1, "completed_by": 3, "was_cancelled": True, "result": []},
                {
                    "id": 2,
                    "completed_by": 4,
                    "was_cancelled": False,
                    "lead_time": 2.0,
                    "result": [
                        {
                            "from_name": "comparison",
                            "to_name": "comparison",
                            "type": "pairwise",
                            "value": {"selected": "right"},
                        }
                    ],
                },
            ],
        }
    ]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(tasks))
    res = cli("data", "validate", path, "--json")
    assert res.exit_code == 0, res
    assert res.json()["by_reason"] == {"cancelled": 1} and res.json()["skipped"] == 1


def test_import_keeps_good_records_and_quarantines_the_rest(cli, tmp_path):
    path = write(tmp_path / "in.jsonl", GOOD, b"{not json}\n")
    out = tmp_path / "ds"
    res = cli("data", "import", path, "--out", out, "--json")
    assert res.exit_code == 0, res
    report = res.json()
    assert (report["read"], report["accepted"], report["quarantined"]) == (4, 3, 1)
    assert report["out"] == str(out) and report["format"] == "canonical"
    assert is_dataset_dir(out) and dataset_meta(out)["records"] == 3
    quarantine = Path(report["quarantine"])
    assert quarantine == tmp_path / "ds.quarantine.jsonl"
    assert json.loads(quarantine.read_text())["reason"] == "invalid_json"


def test_import_strict_exits_2_and_writes_no_dataset(cli, tmp_path):
    path = write(tmp_path / "in.jsonl", GOOD, b'{"prompt": "x", "responses": ["a", "b"], "ranks": [0, 1]}\n')
    res = cli("data", "import", path, "--out", tmp_path / "ds", "--strict")
    assert res.exit_code == 2 and "invalid_rank" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ds").exists() and (tmp_path / "ds.quarantine.jsonl").exists()


def test_file_level_errors_exit_2_with_one_line(cli, tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    for args, code in [
        (("data", "import", tmp_path / "empty.jsonl", "--out", tmp_path / "o"), "empty_file"),
        (("data", "validate", tmp_path / "notes.txt"), "unknown_format"),
        (("data", "validate", tmp_path / "nope.jsonl"), "unreadable"),
        (("data", "validate", write(tmp_path / "g.jsonl", GOOD), "--format", "excel"), "unknown_format"),
    ]:
        res = cli(*args)
        assert res.exit_code == 2, res
        assert code in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_stats_json_fields(cli, tmp_path):
    cli("data", "import", write(tmp_path / "in.jsonl", GOOD), "--out", tmp_path / "ds")
    res = cli("data", "stats", tmp_path / "ds", "--json")
    assert res.exit_code == 0, res
    s = res.json()
    for key in (
        "records",
        "prompts",
        "responses",
        "raters",
        "pairs",
        "ties",
        "gold",
        "k_histogram",
        "position_bias",
        "length_bias",
        "duplicates",
        "contradictions",
        "position_bias_by_rater",
        "prompt_overlap",
    ):
        assert key in s
    assert (s["records"], s["pairs"], s["ties"], s["k_histogram"]) == (3, 5, 1, {"2": 2, "3": 1})
    human = cli("data", "stats", tmp_path / "ds")
    assert human.exit_code == 0 and "K=3: 1" in human.stdout
    assert cli("data", "stats", tmp_path).exit_code == 2  # not a dataset folder


def test_stats_on_the_bundled_sample(cli):
    res = cli("data", "stats", ROOT / "data" / "sample", "--json")
    assert res.exit_code == 0, res
    s = res.json()
    assert s["records"] == dataset_meta(ROOT / "data" / "sample")["records"] and s["prompt_overlap"] == 0
    assert s["gold"] > 0 and s["raters"] > 1


def test_export_every_target(cli, tmp_path):
    cli("data", "import", write(tmp_path / "in.jsonl", GOOD), "--out", tmp_path / "ds")
    res = cli("data", "export", tmp_path / "ds", "--to", "trl", "--out", tmp_path / "trl.jsonl", "--json")
    assert res.exit_code == 0, res
    assert (res.json()["pairs"], res.json()["ties_not_exported"]) == (4, 1)
    assert len((tmp_path / "trl.jsonl").read_text().splitlines()) == 4
    res = cli("data", "export", tmp_path / "ds", "--to", "label-studio", "--out", tmp_path / "ls.json")
    assert res.exit_code == 0 and (tmp_path / "ls.config.xml").exists()
    assert "<Ranker" in (tmp_path / "ls.config.xml").read_text()  # one record has K=3
    res = cli("data", "export", tmp_path / "ds", "--to", "argilla", "--out", tmp_path / "ar.json")
    assert res.exit_code == 0 and (tmp_path / "ar.settings.json").exists()
    res = cli("data", "export", tmp_path / "ds", "--to", "canonical", "--out", tmp_path / "c.csv")
    assert res.exit_code == 0
    back = cli("data", "validate", tmp_path / "c.csv", "--json")
    assert back.exit_code == 0 and back.json()["accepted"] == 3
    bad = cli("data", "export", tmp_path / "ds", "--to", "excel", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "unknown export target" in bad.stderr
