"""The installed console script itself (a real process: the entry point and exit codes cross it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "rewardlab"
COMMANDS = ["data", "simulate", "raters", "train", "eval", "score", "sample", "pipeline", "compare", "config"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_help_lists_every_command():
    res = run("--help")
    assert res.returncode == 0, res.stderr
    for name in COMMANDS:
        assert f" {name} " in res.stdout, f"`rewardlab --help` does not list {name}"


def test_config_show_override_and_bad_key():
    ok = run("config", "show", "configs/rm/tiny.yaml", "train.lr=1e-5")
    assert ok.returncode == 0 and "lr: 1.0e-05" in ok.stdout
    bad = run("config", "show", "configs/rm/tiny.yaml", "train.lrr=1")
    assert bad.returncode == 2
    assert "train.lrr" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
