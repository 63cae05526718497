"""`rewardlab sample`, `rewardlab pipeline`, `rewardlab compare`: closing the loop back to the raters."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import typer

from rewardlab import config as cfglib
from rewardlab.commands.apps import app, emit_json, handle_errors
from rewardlab.devices import DEVICE_HELP, DTYPE_HELP

OVERRIDES_ARG = typer.Argument(None, help="Dotted key=value overrides, e.g. budget=20 select=random.")
JSON_OPT = typer.Option(False, "--json", help="Print the result as one JSON object.")


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if isinstance(v, (int, float, str))
    )
    typer.echo(f"{title}: {shown}")


@app.command("sample")
@handle_errors
def sample(
    config: str = typer.Argument(..., help="A sample config (see configs/sample/)."),
    overrides: list[str] = OVERRIDES_ARG,
    device: str = typer.Option(None, "--device", help=DEVICE_HELP + " Same as device=... (default: auto)."),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP + " Same as dtype=... (default: float32)."),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Answers generated (and scored) per call; same as batch_size=..."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Next round: K answers per prompt from a policy, select items for the raters, export the batch."""
    flags = {"device": device, "dtype": dtype, "batch_size": batch_size}
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    cfg = cfglib.load(config, [*(overrides or []), *extra], stage="sample")
    from rewardlab.recipes import sample as recipe

    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for our report (libraries print there)
        metrics = recipe.run(cfg)
    if as_json:
        emit_json(
            {"output_dir": cfg.output_dir, "batch": str(Path(cfg.output_dir) / "batch.jsonl"), **metrics}
        )
        return
    _print_metrics("sample", metrics)
    typer.echo(f"batch for the raters: {Path(cfg.output_dir) / 'batch.jsonl'}")


@app.command("compare")
@handle_errors
def compare(
    runs: list[str] = typer.Argument(..., help="Run folders (a pipeline folder expands into its stages)."),
    html: Path = typer.Option(
        None, "--html", help="Also write a self-contained HTML report with plots here."
    ),
    score: bool = typer.Option(
        True, "--score/--no-score", help="Score RM eval pairs with the RM when a run saved no eval rewards."
    ),
    show_all: bool = typer.Option(False, "--all", help="Show every metric in the terminal table."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: runs, metrics, config_diff."),
) -> None:
    """Final metrics side by side and the config keys that differ; optionally an HTML report."""
    from rewardlab.report.compare import collect_runs, compare_payload, print_tables

    found = collect_runs(runs)
    payload = compare_payload(found)
    if html is not None:
        from rewardlab.report.html import write_report

        payload["html"] = str(write_report(found, html, compute=score))
    if as_json:
        emit_json(payload)
        return
    print_tables(found, show_all=show_all)
    if html is not None:
        typer.echo(f"report: {payload['html']}")


@app.command("pipeline")
@handle_errors
def pipeline(
    config: str = typer.Argument(..., help="A pipeline config (see configs/pipeline/)."),
    overrides: list[str] = typer.Argument(
        None, help="Dotted key=value overrides, e.g. rm.train.max_steps=5 (a stage given as a path too)."
    ),
    force: list[str] = typer.Option(
        None, "--force", help="Rerun this stage even when unchanged (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Run the stages a pipeline config names, in order; unchanged complete stages are skipped."""
    from rewardlab.recipes import pipeline as recipe

    cfg = load_pipeline(config, overrides or [])
    echo = (lambda line: print(line, file=sys.stderr)) if as_json else typer.echo
    summary = recipe.run(cfg, echo=echo, force=tuple(force or ()))
    if as_json:
        emit_json(summary)
        return
    ran = [r["stage"] for r in summary["stages"] if r["status"] != "skip"]
    typer.echo(
        f"pipeline {cfg.name}: {len(ran)} stage(s) ran, {len(summary['stages']) - len(ran)} skipped; "
        f"folder {summary['dir']}"
    )
    if summary.get("report"):
        typer.echo(f"report: {summary['report']}")
    if cfg.tracking.backend == "wandb":
        typer.echo(
            f"wandb: runs grouped as '{cfg.tracking.group or cfg.name}'; offline runs upload with: "
            f"wandb sync {summary['dir']}/*/wandb/offline-run-*"
        )


def load_pipeline(config: str, overrides: list[str]) -> Any:
    """The pipeline config with overrides; ``rm.train.lr=...`` also works when ``rm:`` is a path."""
    from rewardlab.recipes.pipeline import STAGES

    raw = cfglib.read_yaml(config)
    for key in cfglib.parse_overrides(overrides):
        if key in STAGES and isinstance(raw.get(key), str):
            raw[key] = {"base": raw[key]}
    try:
        return cfglib.load(None, overrides, stage="pipeline", base=raw)
    except cfglib.ConfigError as err:
        raise cfglib.ConfigError(str(err).replace("<overrides>", config)) from None
