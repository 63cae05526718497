"""Collect run folders and compare them: final metrics side by side, and the config keys that differ.

Why flattened dotted keys: two runs usually differ in two or three settings (``train.lr``, ``loss.kind``);
showing only those keys, in the same spelling the CLI overrides use, tells the reader what to rerun.
A pipeline folder (``<output_dir>/<pipeline id>``) expands into its stage run folders, in stage order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rewardlab.errors import UserError

RUN_FILES = ("config.yaml", "metrics.json", "metrics.jsonl", "manifest.json")
# The metrics a reader looks for first (docs/design.md JSON fields), in this order.
KEY_METRICS = [
    "accuracy", "n_pairs", "ece", "agreement_ceiling", "rm_truth_accuracy", "alpha", "agreement", "flagged",
    "judgments_excluded", "records", "prompts", "train_loss", "win_rate_vs_ref", "rm_score_mean",
    "ref_rm_score_mean", "truth_score_mean", "ref_truth_score_mean", "kl_to_ref", "response_length_mean",
    "selected", "selection_score_mean", "judgments", "steps",
]  # fmt: skip
MAX_TERMINAL_ROWS = 30


@dataclass
class RunInfo:
    """What the report needs from one run folder (everything optional but the path)."""

    path: Path
    name: str
    stage: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line is an error naming file and line (a half-written last line is skipped)."""
    rows: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):  # a run killed mid-write leaves a partial last line
                break
            raise UserError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
        if isinstance(row, dict):
            rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in RUN_FILES)


def _pipeline_stage_dirs(path: Path) -> list[Path] | None:
    """The stage folders of a pipeline folder, in stage order; None when ``path`` is not a pipeline folder."""
    manifest = path / "manifest.json"
    stages: list[str] | None = None
    if manifest.is_file():
        data = _read_json(manifest)
        if data.get("stage") == "pipeline":
            stages = list(data.get("stages") or [])
    subdirs = sorted(p for p in path.iterdir() if is_run_dir(p)) if path.is_dir() else []
    if stages is None:
        if is_run_dir(path) or not subdirs:
            return None
        return subdirs
    stages = [s for s in stages if s != "report"]  # the report folder holds the page, not a run
    ordered = [path / s for s in stages if is_run_dir(path / s)]
    return ordered + [p for p in subdirs if p not in ordered and p.name != "report"]


def load_run(path: str | Path, name: str | None = None) -> RunInfo:
    """Read one run folder; missing files give empty fields (a run that is still going is comparable)."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{path}: not a folder")
    if not is_run_dir(p):
        raise UserError(f"{path}: not a run folder (none of {', '.join(RUN_FILES)})")
    run = RunInfo(path=p, name=name or p.name)
    if (p / "config.yaml").is_file():
        try:
            run.config = yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{p / 'config.yaml'}: invalid YAML ({exc})") from None
    if (p / "metrics.json").is_file():
        run.metrics = _read_json(p / "metrics.json") or {}
    if (p / "metrics.jsonl").is_file():
        run.history = read_jsonl(p / "metrics.jsonl")
    if (p / "manifest.json").is_file():
        run.manifest = _read_json(p / "manifest.json") or {}
    run.stage = run.config.get("stage") or run.manifest.get("stage")
    return run


def collect_runs(paths: list[str | Path]) -> list[RunInfo]:
    """Run folders from the command line; pipeline folders expand into their stages. Names are made unique."""
    if not paths:
        raise UserError("compare: give at least one run folder")
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"{raw}: no such run folder")
        stage_dirs = _pipeline_stage_dirs(p) if p.is_dir() else None
        found.extend(stage_dirs if stage_dirs else [p])
    names = [p.name for p in found]
    runs = []
    for p in found:
        name = p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}"
        runs.append(load_run(p, name))
    return runs


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-5}}`` -> ``{"train.lr": 1e-5}``; lists stay values."""
    if not isinstance(obj, dict):
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


_MISSING = "—"


def config_diff(
    runs: list[RunInfo], ignore: tuple[str, ...] = ("output_dir", "out", "tracking.run_name")
) -> dict[str, list[Any]]:
    """Dotted config keys whose values differ between runs -> one value per run (``—`` when absent)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    out: dict[str, list[Any]] = {}
    for key in keys:
        if key in ignore or any(key.startswith(i + ".") for i in ignore):
            continue
        values = [f.get(key, _MISSING) for f in flat]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            out[key] = values
    return out


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def metric_table(runs: list[RunInfo]) -> dict[str, list[Any]]:
    """Final metrics (metrics.json, nested dicts flattened) -> one value per run, keys in first-seen order."""
    flat = [{k: v for k, v in flatten(r.metrics).items() if _scalar(v)} for r in runs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    return {k: [f.get(k) for f in flat] for k in keys}


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 40 else text[:37] + "..."
    return str(value)


def compare_payload(runs: list[RunInfo]) -> dict[str, Any]:
    """The ``--json`` object: runs with their final metrics, and the config keys that differ."""
    return {
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "stage": r.stage,
                "metrics": r.metrics,
                "steps_logged": len(r.history),
            }
            for r in runs
        ],
        "metrics": metric_table(runs),
        "config_diff": config_diff(runs),
    }


def stage_groups(runs: list[RunInfo]) -> dict[str, list[RunInfo]]:
    groups: dict[str, list[RunInfo]] = {}
    for run in runs:
        groups.setdefault(run.stage or "?", []).append(run)
    return groups


def print_tables(runs: list[RunInfo], console: Any = None, show_all: bool = False) -> None:
    """The terminal view: final metrics side by side, then config differences between runs of one stage.

    Many metrics (a whole pipeline): the key metrics only, unless ``show_all``.
    """
    from rich.console import Console

    console = console or Console()
    names = [r.name for r in runs]
    metrics = metric_table(runs)
    shown = metrics
    if not show_all and len(metrics) > MAX_TERMINAL_ROWS:
        shown = {k: metrics[k] for k in KEY_METRICS if k in metrics}
    if 14 * (len(runs) + 1) > console.width:  # too many runs side by side: one line of key metrics per run
        _print_per_run(runs, shown, console)
    else:
        _print_side_by_side(names, shown, metrics, console)
    if len(shown) < len(metrics):
        console.print(f"({len(metrics) - len(shown)} more metrics: --all, --json or --html)")
    _print_config_diffs(runs, console)


def _print_per_run(runs: list[RunInfo], shown: dict[str, list[Any]], console: Any) -> None:
    from rich.table import Table

    table = Table(title="final metrics (metrics.json)")
    table.add_column("run", style="bold")
    table.add_column("stage")
    table.add_column("metrics")
    for n, run in enumerate(runs):
        cells = [f"{k}={format_value(v[n])}" for k, v in shown.items() if v[n] is not None]
        table.add_row(run.name, run.stage or "?", "  ".join(cells) or "—")
    console.print(table)


def _print_side_by_side(names: list[str], shown: dict[str, list[Any]], metrics: dict, console: Any) -> None:
    from rich.table import Table

    table = Table(title="final metrics (metrics.json)")
    table.add_column("metric", style="bold")
    for name in names:
        table.add_column(name, justify="right")
    for key, values in shown.items():
        table.add_row(key, *[format_value(v) for v in values])
    if not metrics:
        table.add_row("(no metrics.json)", *["—"] * len(names))
    console.print(table)


def _print_config_diffs(runs: list[RunInfo], console: Any) -> None:
    from rich.table import Table

    compared = False
    for stage, group in stage_groups(runs).items():
        if len(group) < 2:
            continue
        compared = True
        diff = config_diff(group)
        dt = Table(title=f"config differences ({stage} runs)")
        dt.add_column("key", style="bold")
        for run in group:
            dt.add_column(run.name)
        for key, values in diff.items():
            dt.add_row(key, *[format_value(v) for v in values])
        if not diff:
            dt.add_row("(configs identical)", *[""] * len(group))
        console.print(dt)
    if not compared and len(runs) > 1:
        console.print("(no two runs of the same stage: no config differences to show)")
