"""Rater pseudonymization end to end: no raw rater id in any file written or any line printed.

A small simulated campaign gets distinctive rater ids (emails, as rating vendors export them; the
simulator's own ids like ``r-01`` would also match inside unrelated text), is written as a raw canonical
export with one bad row, and then goes through every command that reads rater ids with pseudonymization
on. Every file the commands wrote (binary wandb files too, as bytes) and all their stdout/stderr are
scanned for each raw id and for the salt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rewardlab import config as cfglib
from rewardlab.data.dataset import iter_records, load_dataset
from rewardlab.data.schema import to_json
from rewardlab.data.simulate import simulate_campaign
from rewardlab.raters.pseudonym import PSEUDONYM, Pseudonymizer

ROOT = Path(__file__).resolve().parents[2]
SALT = "test-salt-9f1c2b7a5e3d4c6b8a0f"


def vendor_id(sim_id: str) -> str:
    return f"{sim_id.replace('-', '')}.jones@rating-vendor.example"


@pytest.fixture(scope="module")
def raw_export(tmp_path_factory):
    """A raw canonical JSONL export with email rater ids (ids embedded in record ids too) + 1 bad row."""
    cfg = cfglib.load(ROOT / "configs/simulate/default.yaml", ["prompts=24", "raters=6"])
    records, truth = simulate_campaign(cfg)
    ids = sorted({r["rater"] for r in records if r.get("rater")})
    folder = tmp_path_factory.mktemp("privacy-input")
    path = folder / "export.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            line = to_json(rec)
            if rec.get("rater"):
                line["id"] = rec["id"].replace(rec["rater"], vendor_id(rec["rater"]))
                line["rater"] = vendor_id(rec["rater"])
                line["meta"] = {**(rec.get("meta") or {}), "annotator": vendor_id(rec["rater"])}
            fh.write(json.dumps(line) + "\n")
        bad = {"prompt": "p", "responses": ["only one"], "ranks": [1], "rater": vendor_id(ids[0])}
        fh.write(json.dumps(bad) + "\n")
    return path, [vendor_id(i) for i in ids]


def scan(paths: list[Path], texts: list[str], needles: list[str]) -> list[str]:
    """Every (file or output, needle) where a needle appears, reading files as bytes."""
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            data = file.read_bytes()
            hits += [f"{file}: {n}" for n in needles if n.encode() in data]
    for n, text in enumerate(texts):
        hits += [f"output #{n}: {needle}" for needle in needles if needle in text]
    return hits


def test_pseudonymized_campaign_leaks_no_rater_id(cli, raw_export, tmp_path, monkeypatch):
    export, raw_ids = raw_export
    assert scan([export], [], raw_ids)  # the scan finds ids where they are
    monkeypatch.setenv("REWARDLAB_PSEUDONYM_SALT", SALT)
    pz = Pseudonymizer(SALT.encode())
    listed = raw_ids[1]  # excluded by its real id
    outputs: list[str] = []

    def run(*args):
        res = cli(*args)
        assert res.exit_code == 0, res
        outputs.extend([res.stdout, res.stderr])
        return res

    data = tmp_path / "data"
    imported = run("data", "import", export, "--out", data, "--pseudonymize", "--json").json()
    assert imported["quarantined"] == 1 and imported["accepted"] == imported["read"] - 1
    records = list(iter_records(load_dataset(data)))
    raters = {r["rater"] for r in records if r["rater"]}
    assert raters == {pz(i) for i in raw_ids} and all(PSEUDONYM.match(r) for r in raters)
    assert json.loads((data / "rewardlab.json").read_text())["pseudonymized"] is True
    quarantine = (tmp_path / "data.quarantine.jsonl").read_text()
    assert "raw" not in json.loads(quarantine)  # the raw row held the rater id

    stats = run("data", "stats", data, "--pseudonymize", "--json").json()
    run("data", "stats", data, "--pseudonymize")  # the table output too
    assert set(stats["pairs_by_rater"]) <= raters  # same salt, same pseudonyms: outputs join

    html = tmp_path / "report" / "raters.html"
    over = ["pseudonymize=true", f"exclude_list=[{listed}]"]
    report = run("raters", "report", data, *over, "--html", html, "--json").json()
    run("raters", "report", data, *over)  # the printed table
    assert {r["rater"] for r in report["raters"]} == raters

    agg = tmp_path / "agg"
    summary = run("raters", "aggregate", data, "--out", agg, *over, "--json").json()
    run("raters", "aggregate", data, "--out", tmp_path / "agg2", *over)  # the printed summary
    assert pz(listed) in summary["excluded_raters"]  # the real id in exclude_list still excludes
    excluded = [json.loads(line) for line in (agg / "excluded.jsonl").read_text().splitlines()]
    assert pz(listed) in {e["rater"] for e in excluded}

    rm_dir = tmp_path / "rm"
    run("train", "rm", ROOT / "configs/rm/tiny.yaml", f"output_dir={rm_dir}", f"data.train={agg}",
        "train.max_steps=2", "tracking.backend=wandb")  # fmt: skip
    manifest = json.loads((rm_dir / "manifest.json").read_text())
    assert pz(listed) in json.dumps(manifest)  # excluded raters are recorded, as pseudonyms
    assert list(rm_dir.rglob("*.wandb"))

    written = [data, tmp_path / "data.quarantine.jsonl", html, agg, tmp_path / "agg2", rm_dir]
    assert scan(written, outputs, [*raw_ids, SALT]) == []


def test_pipeline_data_raters_rm_sample_pseudonymized(cli, raw_export, tmp_path, monkeypatch):
    export, raw_ids = raw_export
    salt_file = tmp_path / "secrets" / "salt"  # made on first use, outside the run folder
    monkeypatch.delenv("REWARDLAB_PSEUDONYM_SALT", raising=False)
    cfg = {
        "stage": "pipeline",
        "name": "private",
        "output_dir": str(tmp_path / "runs"),
        "stages": ["data", "raters", "rm", "sample"],
        "data": {"inputs": [str(export)], "pseudonymize": True, "salt_file": str(salt_file)},
        "raters": {"pseudonymize": True, "salt_file": str(salt_file), "exclude_list": [raw_ids[2]]},
        "rm": {"base": str(ROOT / "configs/rm/tiny.yaml"), "train": {"max_steps": 2}},
        "sample": {
            "base": str(ROOT / "configs/sample/tiny.yaml"),
            "num_prompts": 3,
            "k": 2,
            "budget": 2,
            "max_new_tokens": 4,
        },  # fmt: skip
        "tracking": {"backend": "wandb"},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = cli("pipeline", path, "--json")
    assert res.exit_code == 0, res
    salt = salt_file.read_text().strip()
    assert len(salt) >= 32 and (salt_file.stat().st_mode & 0o777) == 0o600
    pz = Pseudonymizer(salt.encode())
    root = tmp_path / "runs" / "private"
    raters = json.loads((root / "raters" / "rater_report.json").read_text())["raters"]
    assert {r["rater"] for r in raters} == {pz(i) for i in raw_ids}
    assert pz(raw_ids[2]) in json.loads((root / "raters" / "metrics.json").read_text())["excluded_raters"]
    assert (root / "sample" / "batch.jsonl").is_file()
    assert scan([tmp_path / "runs"], [res.stdout, res.stderr], [*raw_ids, salt]) == []


def test_different_salt_gives_different_pseudonyms(cli, raw_export, tmp_path, monkeypatch):
    export, raw_ids = raw_export
    seen = []
    for salt in ("first-salt-0123456789", "second-salt-0123456789"):
        monkeypatch.setenv("REWARDLAB_PSEUDONYM_SALT", salt)
        out = tmp_path / salt
        assert cli("data", "import", export, "--out", out, "--pseudonymize").exit_code == 0
        seen.append({r["rater"] for r in iter_records(load_dataset(out)) if r["rater"]})
    assert len(seen[0]) == len(raw_ids) and not seen[0] & seen[1]
    monkeypatch.setenv("REWARDLAB_PSEUDONYM_SALT", "short")
    res = cli("data", "import", export, "--out", tmp_path / "weak", "--pseudonymize")
    assert res.exit_code == 2 and "REWARDLAB_PSEUDONYM_SALT is too short" in res.stderr


def test_real_ids_in_exclude_list_need_pseudonymize_on_a_pseudonymized_dataset(
    cli, raw_export, tmp_path, monkeypatch
):
    export, raw_ids = raw_export
    monkeypatch.setenv("REWARDLAB_PSEUDONYM_SALT", SALT)
    assert cli("data", "import", export, "--out", tmp_path / "d", "--pseudonymize").exit_code == 0
    res = cli("raters", "aggregate", tmp_path / "d", "--out", tmp_path / "a", f"exclude_list=[{raw_ids[0]}]")
    assert res.exit_code == 2 and "set pseudonymize=true" in res.stderr, res
    assert raw_ids[0] not in res.stderr
    assert not (tmp_path / "a").exists()
