"""Sources as users hold them: compressed files, `datasets` folders and `hf:` ids (from a local cache only)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest

from rewardlab.data import importing
from rewardlab.data.dataset import dataset_meta, iter_records, load_dataset
from rewardlab.errors import UserError

HH = [
    {"chosen": f"\n\nHuman: What is {i} + 1?\n\nAssistant: {i + 1}.", "rejected": f"\n\nHuman: What is {i} + 1?\n\nAssistant: No idea."}
    for i in range(5)
]  # fmt: skip
BAD = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: ",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.",
}  # empty answer


def compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.compress(data)
    if suffix == ".bz2":
        return bz2.compress(data)
    if suffix == ".xz":
        return lzma.compress(data)
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def lines(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_jsonl_imports_like_the_plain_file(tmp_path, suffix):
    plain = tmp_path / "hh.jsonl"
    plain.write_bytes(lines([*HH[:2], BAD, *HH[2:]]))
    packed = tmp_path / f"hh.jsonl{suffix}"
    packed.write_bytes(compress(plain.read_bytes(), suffix))
    a = importing.run([plain], out=tmp_path / "a", quarantine=tmp_path / "qa.jsonl")
    b = importing.run([packed], out=tmp_path / "b", quarantine=tmp_path / "qb.jsonl")
    assert (b.read, b.accepted, b.quarantined, dict(b.by_reason)) == (6, 5, 1, {"empty_response": 1})
    assert (a.read, a.accepted, a.quarantined) == (b.read, b.accepted, b.quarantined)
    assert b.formats == ["hh-rlhf"]
    # line numbers of the decompressed file
    assert json.loads((tmp_path / "qb.jsonl").read_text())["line"] == 3
    assert dataset_meta(tmp_path / "a")["fingerprint"] == dataset_meta(tmp_path / "b")["fingerprint"]


def test_compressed_csv_and_json_documents(tmp_path):
    csv_text = "prompt,chosen,rejected\nWhat is 1+1?,2,3\nName a colour,Blue,Seven\n"
    (tmp_path / "pairs.csv.gz").write_bytes(gzip.compress(csv_text.encode()))
    doc = [{"prompt": "Q?", "responses": ["a", "b"], "ranks": [1, 2]}]
    (tmp_path / "doc.json.xz").write_bytes(lzma.compress(json.dumps(doc).encode()))
    report = importing.run([tmp_path / "pairs.csv.gz", tmp_path / "doc.json.xz"], out=tmp_path / "ds")
    assert (report.read, report.accepted) == (3, 3)
    assert [f["container"] for f in report.files] == ["csv", "json"]


def test_truncated_gzip_is_a_file_error_not_silent_loss(tmp_path):
    big = lines(HH * 400)
    cut = gzip.compress(big)[: len(gzip.compress(big)) // 2]
    (tmp_path / "cut.jsonl.gz").write_bytes(cut)
    with pytest.raises(UserError, match="cut.jsonl.gz: unreadable: .*corrupt or truncated"):
        importing.run([tmp_path / "cut.jsonl.gz"], out=tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_rm_data_train_reads_a_compressed_file(tmp_path):
    from rewardlab.recipes.policy_common import read_dataset

    (tmp_path / "hh.jsonl.gz").write_bytes(gzip.compress(lines(HH)))
    ds, info = read_dataset(str(tmp_path / "hh.jsonl.gz"))
    assert len(ds) == 5 and info["fingerprint"]


def test_datasets_save_to_disk_folder(tmp_path):
    import datasets

    d = datasets.Dataset.from_list([*HH, BAD])
    d.save_to_disk(str(tmp_path / "disk"))
    datasets.DatasetDict(train=d, test=d.select(range(2))).save_to_disk(str(tmp_path / "dict"))
    report = importing.run([tmp_path / "disk"], out=tmp_path / "ds", quarantine=tmp_path / "q.jsonl")
    assert (report.read, report.accepted, report.quarantined) == (6, 5, 1)
    assert json.loads((tmp_path / "q.jsonl").read_text())["line"] == 6  # the row number
    with pytest.raises(UserError, match="splits train, test: give one split's folder"):
        importing.run([tmp_path / "dict"], out=tmp_path / "x")
    assert importing.run([tmp_path / "dict" / "test"], out=tmp_path / "y").accepted == 2


def fake_hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> None:
    """A Hugging Face hub cache holding one dataset snapshot, as `huggingface_hub` lays it out."""
    folder = root / f"datasets--{repo.replace('/', '--')}"
    sha = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(sha)
    for name, data in files.items():
        path = folder / "snapshots" / sha / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_hf_id_with_subset_and_split_from_the_local_cache(tmp_path, monkeypatch):
    fake_hub_cache(
        tmp_path / "hub",
        "someorg/prefs",
        {
            "helpful-base/train.jsonl.gz": gzip.compress(lines(HH)),
            "helpful-base/test.jsonl.gz": gzip.compress(lines([*HH[:2], BAD])),
        },
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = "hf:someorg/prefs:helpful-base:test"
    report = importing.import_paths([spec], tmp_path / "ds")
    assert (report.read, report.accepted, report.quarantined) == (3, 2, 1)
    assert report.formats == ["hh-rlhf"]
    meta = dataset_meta(tmp_path / "ds")
    assert meta["hub_datasets"] == ["someorg/prefs"] and meta["sources"] == [spec]
    assert [r["responses"][0] for r in iter_records(load_dataset(tmp_path / "ds"))] == ["1.", "2."]
    with pytest.raises(UserError, match="hf:other/x: offline .* neither the datasets cache nor"):
        importing.import_paths(["hf:other/x"], tmp_path / "ds2")
    with pytest.raises(UserError, match="hf:<repo id>"):
        importing.parse_hf_id("hf:a/b:c:d:e")
    assert importing.parse_hf_id("hf:a/b") == ("a/b", None, "train")
    assert importing.parse_hf_id("hf:a/b:test") == ("a/b", None, "test")
