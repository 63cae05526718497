"""Round trips with the tools raters use: Argilla 2.x settings (checked with the argilla package itself) and
Label Studio tasks (our id kept, an ambiguous ranker result quarantined, never read as all ties)."""

from __future__ import annotations

import json

import pytest

from rewardlab.data import importing
from rewardlab.data.dataset import iter_records, load_dataset
from rewardlab.data.formats.argilla import export_argilla
from rewardlab.data.formats.label_studio import export_label_studio

RECS = [
    {"id": "x-1", "prompt": "Q1?", "responses": ["a", "b", "c"], "ranks": [2, 1, 3], "rater": "r1"},
    {"id": "x-2", "prompt": [{"role": "user", "content": "Hi"}], "responses": ["d", "e"]},
]


@pytest.fixture
def argilla_client(monkeypatch):
    """An argilla client that never connects: the SDK builds fields and questions through a client."""
    import argilla as rg  # in the dev extra
    from argilla._api._client import APIClient

    monkeypatch.setattr(APIClient, "_validate_connection", lambda self: None)
    return rg.Argilla(api_url="http://127.0.0.1:9", api_key="offline-test")


def test_argilla_settings_load_with_argilla_2(tmp_path, argilla_client):
    import argilla as rg

    assert rg.__version__.startswith("2.")
    result = export_argilla(RECS, tmp_path / "batch.json")
    settings = rg.Settings.from_json(result["settings"])
    assert [f.name for f in settings.fields] == ["prompt", "response1", "response2", "response3"]
    assert [f.required for f in settings.fields] == [True, True, True, False]
    (question,) = settings.questions
    assert isinstance(question, rg.RankingQuestion) and question.values == [
        "response1",
        "response2",
        "response3",
    ]
    dataset = rg.Dataset(name="batch", settings=settings, client=argilla_client)
    rows = json.loads((tmp_path / "batch.json").read_text())
    records = [rg.Record.from_dict(row, dataset=dataset) for row in rows]
    assert records[0].responses["ranking"][0].value == ["response2", "response1", "response3"]
    assert records[1].fields["response2"] == "e"


def ranker_task(result_value: dict, from_name: str = "rank", to_name: str = "answers") -> dict:
    return {
        "id": 7,
        "data": {
            "prompt": "Which is best?",
            "items": [{"id": i, "title": i, "body": f"answer {i}"} for i in ("a", "b", "c")],
            "rewardlab_id": "batch-3-p-0007",
        },
        "annotations": [
            {
                "id": 70,
                "completed_by": 4,
                "result": [
                    {"from_name": from_name, "to_name": to_name, "type": "ranker", "value": result_value}
                ],
            }
        ],
    }


def test_label_studio_ranker_keyed_by_the_list_name_is_a_strict_order(tmp_path):
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([ranker_task({"ranker": {"answers": ["c", "a", "b"]}})]))
    report = importing.run([path], out=tmp_path / "ds")
    assert report.accepted == 1
    (rec,) = iter_records(load_dataset(tmp_path / "ds"))
    assert rec["ranks"] == [2, 3, 1]  # c > a > b, not three ties
    assert rec["meta"]["rewardlab_id"] == "batch-3-p-0007"


def test_label_studio_unmatched_single_bucket_is_quarantined(tmp_path):
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([ranker_task({"ranker": {"ranked": ["c", "a", "b"]}})]))
    report = importing.run([path], out=tmp_path / "ds", quarantine=tmp_path / "q.jsonl")
    assert (report.accepted, report.quarantined) == (0, 1)
    assert dict(report.by_reason) == {"unmatched_ranker_key": 1}
    assert "'ranked'" in json.loads((tmp_path / "q.jsonl").read_text())["detail"]


def test_label_studio_round_trip_keeps_our_id(tmp_path):
    export_label_studio(RECS[:1], tmp_path / "ls.json", labels_as="annotations")
    report = importing.run([tmp_path / "ls.json"], out=tmp_path / "ds")
    (rec,) = iter_records(load_dataset(tmp_path / "ds"))
    assert report.accepted == 1 and rec["ranks"] == [2, 1, 3] and rec["meta"]["rewardlab_id"] == "x-1"
