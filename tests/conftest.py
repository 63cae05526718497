"""Shared test setup: offline, CPU, in-process CLI runner."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DISABLE_TQDM", "1")

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402


class CLIResult:
    def __init__(self, result):
        self.exit_code = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.exception = result.exception

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"CLIResult(exit={self.exit_code}, stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-2000:]!r})"


def run_cli(*args: str) -> CLIResult:
    """Run the rewardlab CLI in this process (no 7 s interpreter start-up per call)."""
    from rewardlab.cli import app

    return CLIResult(CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def script():
    """``script("bench_real")``: a file of scripts/ imported as a module (benchmarks are scripts, not package
    code, so tests reach their helpers this way). Registered in sys.modules, as dataclasses need; scripts/ goes
    on sys.path for scripts that import their siblings."""
    import importlib.util
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parent.parent / "scripts"

    def load(name: str):  # noqa: ANN202
        if str(scripts) not in sys.path:
            sys.path.insert(0, str(scripts))
        spec = importlib.util.spec_from_file_location(name, scripts / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def arithmetic_pairs():
    """Write a dataset of ``n`` easy pairs ("What is n + 1?": the right sum beats "No idea.") to ``path``;
    a reward model learns it in a few steps. Returns the dataset folder."""
    from rewardlab.data.dataset import write_dataset
    from rewardlab.data.schema import normalize

    def make(path, n: int):
        rows = [
            normalize(
                {
                    "prompt": f"What is {k} + 1?",
                    "responses": [f"It is {k + 1}.", "No idea."],
                    "ranks": [1, 2],
                },
                source=f"t:{k}",
            )
            for k in range(n)
        ]
        write_dataset(rows, path)
        return path

    return make
