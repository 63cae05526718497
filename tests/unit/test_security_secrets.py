"""Secrets stay out of run folders and tracking; rater pseudonyms and their salt behave as documented."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path

import pytest

from rewardlab.errors import UserError
from rewardlab.raters import pseudonym
from rewardlab.redact import MASK, redact, redact_argv, secret_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name, secret",
    [("WANDB_API_KEY", True), ("HF_TOKEN", True), ("OPENAI_API_KEY", True), ("tracking.api_key", True),
     ("password", True), ("db_secret", True), ("REWARDLAB_PSEUDONYM_SALT", True), ("--hf-token", True),
     ("key", True), ("max_new_tokens", False), ("pad_token", False), ("salt_file", False),
     ("TOKENIZERS_PARALLELISM", False), ("train.lr", False), ("HF_TOKEN_PATH", False)],
)  # fmt: skip
def test_secret_names(name, secret):
    assert secret_name(name) is secret


def test_redact_masks_secret_keys_and_env_values():
    secrets = ["s3cr3t-value-123"]
    cfg = {"tracking": {"api_key": "abc", "run_name": "run-s3cr3t-value-123", "entity": None},
           "train": {"lr": 0.1}, "tags": ["x", "s3cr3t-value-123"]}  # fmt: skip
    assert redact(cfg, secrets) == {
        "tracking": {"api_key": MASK, "run_name": f"run-{MASK}", "entity": None},
        "train": {"lr": 0.1},
        "tags": ["x", MASK],
    }
    argv = ["rewardlab", "train", "rm", "c.yaml", "hf_token=abc", "--api-key", "xyz", "--token=q",
            "tracking.run_name=s3cr3t-value-123", "train.lr=0.1"]  # fmt: skip
    assert redact_argv(argv, secrets) == ["rewardlab", "train", "rm", "c.yaml", f"hf_token={MASK}",
                                          "--api-key", MASK, f"--token={MASK}", f"tracking.run_name={MASK}",
                                          "train.lr=0.1"]  # fmt: skip


FAKE = {
    "WANDB_API_KEY": "wandbfake" + "7" * 31,  # wandb keys are 40 characters
    "HF_TOKEN": "hf_FAKEtokenQz81xkv",
    "OPENAI_API_KEY": "sk-FAKEopenaiWq93mz",
}


def test_train_rm_writes_no_secret(cli, tmp_path, monkeypatch):
    """Fake keys in the environment, one typed into an override and one on the recorded command line:
    none may appear in any file of the run folder (binary wandb files too) or in stdout/stderr."""
    for k, v in FAKE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    args = ["train", "rm", str(ROOT / "configs/rm/tiny.yaml"), f"output_dir={out}", "train.max_steps=2",
            f"data.train={ROOT / 'data/sample'}", "tracking.backend=wandb",
            f"tracking.run_name=rm-{FAKE['OPENAI_API_KEY']}"]  # fmt: skip
    # What a user's shell would have recorded in sys.argv (the in-process runner does not set it).
    monkeypatch.setattr(sys, "argv", ["rewardlab", *args, f"--hf-token={FAKE['HF_TOKEN']}"])
    res = cli(*args)
    assert res.exit_code == 0, res
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and (out / "metrics.jsonl").is_file()
    leaks = [f"{p}: {k}" for p in files for k, v in FAKE.items() if v.encode() in p.read_bytes()]
    leaks += [k for k, v in FAKE.items() if v in res.stdout + res.stderr]
    assert leaks == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"--hf-token={MASK}" in manifest["command"] and "tracking.run_name=rm-***" in manifest["command"]
    assert "rm-***" in (out / "config.yaml").read_text()
    # the wandb file does hold the (redacted) command line, so the scan above looked at real metadata
    assert any(b"tracking.backend=wandb" in p.read_bytes() for p in files if p.suffix == ".wandb")


# ---------------------------------------------------------------- pseudonyms and salt


def test_pseudonym_is_hmac_sha256_prefix_and_scrubs_whole_ids_only():
    pz = pseudonym.Pseudonymizer(b"k" * 20)
    expected = "r-" + hmac.new(b"k" * 20, b"r-1", hashlib.sha256).hexdigest()[:10]
    assert pz("r-1") == expected and pseudonym.PSEUDONYM.match(expected)
    assert pz(None) is None and pz("") == ""
    pz("r-10")
    assert pz.scrub("r-1 and r-10, not xr-1") == f"{expected} and {pz('r-10')}, not xr-1"
    assert pz.listed(expected) == expected and pz.listed("r-1") == expected  # reports' ids and real ids
    assert pseudonym.Pseudonymizer(b"j" * 20)("r-1") != expected


def test_salt_from_env_then_file(tmp_path, monkeypatch):
    monkeypatch.delenv(pseudonym.SALT_ENV, raising=False)
    salt_file = tmp_path / "cfg" / "salt"
    first = pseudonym.load_salt(salt_file)
    assert len(first) == 64 and (salt_file.stat().st_mode & 0o777) == 0o600
    assert pseudonym.load_salt(salt_file) == first  # created once, then reused
    with pytest.raises(UserError, match="inside the output"):
        pseudonym.load_salt(tmp_path / "run" / "salt", outputs=[tmp_path / "run"])
    monkeypatch.setenv(pseudonym.SALT_ENV, "from-the-environment-0123")
    assert pseudonym.load_salt(salt_file) == b"from-the-environment-0123"
    monkeypatch.setenv(pseudonym.SALT_ENV, "short")
    with pytest.raises(UserError, match="too short"):
        pseudonym.load_salt(salt_file)


def test_pseudonymize_record_rewrites_ids_inside_fields_and_hash():
    from rewardlab.data.schema import content_hash

    pz = pseudonym.Pseudonymizer(b"k" * 20)
    rec = {"id": "p-7-ann.lee@vendor.example", "prompt": "q", "responses": ["a", "b"], "ranks": [1, 2],
           "rater": "ann.lee@vendor.example", "meta": {"annotator": "ann.lee@vendor.example", "n": 1},
           "source": "export.jsonl:3", "strength": None}  # fmt: skip
    rec["hash"] = content_hash(rec)
    out = pseudonym.pseudonymize_record(rec, pz)
    p = pz("ann.lee@vendor.example")
    assert out["rater"] == p and out["id"] == f"p-7-{p}" and out["meta"] == {"annotator": p, "n": 1}
    assert (
        out["hash"] == content_hash(out) != rec["hash"]
    )  # an unsalted hash of the raw id would confirm guesses
    assert "ann.lee" not in json.dumps(out)


def test_dataset_copy_matches_record_rule(tmp_path):
    """The columnar dataset rewrite does exactly what pseudonymize_record does, chat prompts and aggregated
    ``raters`` lists included."""
    from rewardlab.data.dataset import iter_records, load_dataset, write_dataset
    from rewardlab.data.schema import content_hash

    recs = [
        {"id": "a-bo@x.example", "prompt": [{"role": "user", "content": "hi"}], "responses": ["x", "y"],
         "ranks": [1, 2], "rater": "bo@x.example", "meta": {"who": "bo@x.example"}, "source": "f.jsonl:1"},
        {"id": "agg-1", "prompt": "q", "responses": ["x", "y"], "ranks": [2, 1], "rater": None,
         "raters": ["bo@x.example", 'al "q" 7'], "meta": None, "source": None, "weight": 0.5},
        {"id": "g-1", "prompt": "q", "responses": ["x", "y"], "ranks": [1, 2], "rater": None, "gold": True},
    ]  # fmt: skip
    for rec in recs:
        rec["hash"] = content_hash(rec)
    write_dataset(recs, tmp_path / "raw")
    pz = pseudonym.Pseudonymizer(b"k" * 20)
    meta = pseudonym.pseudonymize_dataset(tmp_path / "raw", tmp_path / "out", pz)
    assert meta["pseudonymized"] is True and meta["records"] == 3
    expected = [pseudonym.pseudonymize_record(r, pz) for r in iter_records(load_dataset(tmp_path / "raw"))]
    got = list(iter_records(load_dataset(tmp_path / "out")))
    assert got == expected
    assert got[1]["raters"] == [pz("bo@x.example"), pz('al "q" 7')] and got[2]["rater"] is None
    assert "bo@x.example" not in json.dumps(got)
