"""Every shipped YAML config validates against its stage schema and starts with a usage comment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rewardlab import config as cfglib

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "accelerate" not in p.parts)


def test_there_are_configs():
    assert len(CONFIGS) >= 1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_validates(path: Path):
    cfg = cfglib.load(path)
    assert cfg.stage in cfglib.SCHEMAS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_starts_with_command_and_override(path: Path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# rewardlab "), f"{path}: first line must name its command"
    assert re.search(r"\w[\w.]*=\S+", first), f"{path}: first line must show one key=value override example"
