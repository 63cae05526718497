"""The run folder contract (DESIGN.md, "Run folder"): config.yaml, manifest.json, metrics, model/, checkpoints/.

Why atomic writes: a killed run must never leave a checkpoint that looks complete. Every checkpoint is
written into ``<name>.tmp`` and renamed; a ``COMPLETE`` marker inside is the last file written.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from rewardlab.config import fingerprint
from rewardlab.redact import redact, redact_argv

PACKAGES = (
    "rewardlab",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "peft",
    "crowd-kit",
    "wandb",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def prepare_run(cfg, extra_manifest: dict[str, Any] | None = None, run_dir: str | Path | None = None) -> Path:
    """Create the run folder, write the resolved config.yaml and manifest.json; return the folder.

    Secrets never land here: secret-named config values and the values of secret environment variables are
    masked as *** in config.yaml, manifest.json and the recorded command line (rewardlab/redact.py).
    """
    out = Path(run_dir or cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False))
    update_manifest(
        out,
        {
            "stage": getattr(cfg, "stage", None),
            "config_fingerprint": fingerprint(cfg),
            "packages": package_versions(),
            "git_sha": git_sha(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "command": " ".join(redact_argv(sys.argv)),
            **(extra_manifest or {}),
        },
    )
    return out


def update_manifest(run_dir: str | Path, fields: dict[str, Any]) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest.update(redact(fields))
    write_json_atomic(path, manifest)
    return manifest


def write_metrics(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / "metrics.json", metrics)


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def begin_checkpoint(run_dir: str | Path, step: int) -> Path:
    """A fresh temporary folder to write a checkpoint into; pass it to ``commit_checkpoint``."""
    tmp = checkpoint_dir(run_dir, step).with_suffix(".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(tmp: Path, keep: int = 2) -> Path:
    (tmp / "COMPLETE").write_text("ok\n")
    final = tmp.with_suffix("")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    done = sorted(p for p in final.parent.glob("step-*") if p.suffix == "" and (p / "COMPLETE").exists())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (ignores half-written ``.tmp`` folders)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if p.suffix == "" and (p / "COMPLETE").exists())
    return done[-1] if done else None
