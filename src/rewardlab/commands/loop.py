"""`rewardlab sample`, `rewardlab pipeline`, `rewardlab compare`: closing the loop back to the raters."""

from __future__ import annotations

from pathlib import Path

import typer

from rewardlab.commands.apps import app, emit_json, handle_errors


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
    print_tables(found)
    if html is not None:
        typer.echo(f"report: {payload['html']}")
