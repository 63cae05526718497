"""Wide "one column per annotator" exports: the column mapping, its errors, and the PandaLM preset."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rewardlab.data.dataset import iter_records, load_dataset
from rewardlab.data.formats import wide

ROOT = Path(__file__).resolve().parents[2]
# The first 60 rows of PandaLM's testset-v1 (Apache-2.0), committed so a fresh checkout runs this test
# (tests/data/README.md says where they come from).
PANDALM = ROOT / "tests" / "data" / "pandalm-testset-v1-first60.json.gz"

CSV = """item,question,left,right,ann_a,ann_b,ann_c,domain
1,What is 2+2?,4,5,A,A,=,math
2,Capital of France?,Lyon,Paris,B,B,,geo
3,Say hi,hello,bye,A,maybe,A,chat
"""
MAPPING = """# a team's spreadsheet export
prompt: question
responses: [left, right]
raters: {ann_a: alice, ann_b: bob, ann_c: carol}
verdicts: {A: 1, B: 2, "=": tie}
id: item
meta: [domain]
"""


def test_a_csv_export_imports_with_a_mapping_file(cli, tmp_path):
    (tmp_path / "export.csv").write_text(CSV)
    (tmp_path / "map.yaml").write_text(MAPPING)
    q = tmp_path / "q.jsonl"
    res = cli("data", "import", tmp_path / "export.csv", "--format", f"wide:{tmp_path / 'map.yaml'}",
              "--out", tmp_path / "ds", "--quarantine", q, "--json")  # fmt: skip
    assert res.exit_code == 0, res
    rep = res.json()
    # 9 cells: 7 verdicts, 1 empty (carol on item 2: not judged, no record), 1 unknown value ("maybe")
    assert rep["accepted"] == 7 and rep["quarantined"] == 1 and rep["by_reason"] == {"unknown_choice": 1}
    bad = json.loads(q.read_text())
    assert bad["line"] == 4 and "ann_b" in bad["detail"] and "maybe" in bad["detail"]
    recs = {r["id"]: r for r in iter_records(load_dataset(tmp_path / "ds"))}
    assert recs["1-alice"]["ranks"] == [1, 2] and recs["1-carol"]["ranks"] == [1, 1]
    assert recs["2-bob"]["ranks"] == [2, 1] and recs["2-bob"]["rater"] == "bob"
    assert recs["1-alice"]["meta"] == {"domain": "math", "row_id": "1"}
    assert "2-carol" not in recs


def test_kwise_verdicts_map_to_ranks_lists(tmp_path):
    rows = [{"p": "q", "r1": "x", "r2": "y", "r3": "z", "judge1": "xyz", "judge2": "yxz"}]
    mapping = {"prompt": "p", "responses": ["r1", "r2", "r3"], "raters": ["judge1", "judge2"],
               "verdicts": {"xyz": [1, 2, 3], "yxz": [2, 1, 3]}}  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    mod = wide.module_for(str(tmp_path / "m.json"))
    from rewardlab.data.formats import Item

    out = list(mod.convert([Item("f", 1, rows[0])]))
    assert [o.record["ranks"] for o in out] == [[1, 2, 3], [2, 1, 3]]


@pytest.mark.parametrize(
    "mapping,needle",
    [
        (
            {"prompt": "p", "responses": ["a", "b"], "raters": ["x"], "verdicts": {1: 1}, "colour": 1},
            "'colour'",
        ),
        ({"prompt": "p", "responses": ["a", "b"], "raters": ["x"]}, "'verdicts': required"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "raters": ["x"], "verdicts": {1: 1}}, "'verdicts.1'"),
        (
            {"prompt": "p", "responses": ["a", "b"], "raters": ["x"], "verdicts": {1: 3}},
            "winner must be 1 or 2",
        ),
        ({"prompt": "p", "responses": "a", "raters": ["x"], "verdicts": {1: 1}}, "'responses'"),
    ],
)
def test_a_bad_mapping_is_one_line_exit_2_naming_file_and_field(cli, tmp_path, mapping, needle):
    (tmp_path / "m.yaml").write_text(json.dumps(mapping))
    (tmp_path / "d.jsonl").write_text('{"p": "q", "a": "1", "b": "2", "x": 1}\n')
    res = cli(
        "data",
        "import",
        tmp_path / "d.jsonl",
        "--format",
        f"wide:{tmp_path / 'm.yaml'}",
        "--out",
        tmp_path / "ds",
    )
    assert res.exit_code == 2 and needle in res.stderr and "m.yaml" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_mapping_file_and_bad_yaml(cli, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"p": "q"}\n')
    res = cli("data", "import", tmp_path / "d.jsonl", "--format", "wide:nope.yaml", "--out", tmp_path / "ds")
    assert res.exit_code == 2 and "nope.yaml" in res.stderr and "pandalm" in res.stderr
    (tmp_path / "bad.yaml").write_text("prompt: [a\nresponses: b\n")
    res = cli(
        "data",
        "import",
        tmp_path / "d.jsonl",
        "--format",
        f"wide:{tmp_path / 'bad.yaml'}",
        "--out",
        tmp_path / "ds",
    )
    assert res.exit_code == 2 and "bad.yaml:" in res.stderr


def test_pandalm_preset_imports_the_real_file_and_aggregates(cli, tmp_path):
    with gzip.open(PANDALM, "rt", encoding="utf-8") as fh:
        rows = json.load(fh)
    assert len(rows) == 60
    (tmp_path / "pandalm.json").write_text(json.dumps(rows))
    res = cli(
        "data",
        "import",
        tmp_path / "pandalm.json",
        "--format",
        "wide:pandalm",
        "--out",
        tmp_path / "ds",
        "--json",
    )
    assert res.exit_code == 0, res
    rep = res.json()
    assert rep["read"] == 180 and rep["accepted"] + rep["quarantined"] == 180
    assert set(rep["by_reason"]) <= {"empty_response", "wrong_type"}  # some models answered nothing
    first = next(iter_records(load_dataset(tmp_path / "ds")))
    assert first["rater"] == "annotator1" and first["meta"]["cmp_key"] == rows[0]["cmp_key"]
    assert first["prompt"] == rows[0]["instruction"] + "\n\n" + rows[0]["input"]
    assert first["ranks"] == {1: [1, 2], 2: [2, 1], 0: [1, 1]}[rows[0]["annotator1"]]
    res = cli("raters", "aggregate", tmp_path / "ds", "--out", tmp_path / "agg", "exclude=none", "--json")
    assert res.exit_code == 0, res
    comparisons = {
        (r["prompt"], tuple(sorted(r["responses"]))) for r in iter_records(load_dataset(tmp_path / "ds"))
    }
    assert res.json()["method"] == "ds3" and res.json()["groups"] == len(
        comparisons
    )  # a few rows repeat a pair
