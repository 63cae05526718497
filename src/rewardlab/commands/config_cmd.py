"""`rewardlab config show`."""

from __future__ import annotations

import typer

from rewardlab import config as cfglib
from rewardlab.commands.apps import config_app, emit_json, handle_errors


@config_app.command("show")
@handle_errors
def show(
    config: str = typer.Argument(..., help="A YAML config file."),
    overrides: list[str] = typer.Argument(None, help="Dotted key=value overrides, e.g. train.lr=1e-5."),
    stage: str = typer.Option(
        None, help="The stage schema to use (default: the file's `stage:` or its folder)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the resolved config as one JSON object."),
) -> None:
    """Print the resolved config: code defaults < YAML file < overrides, validated."""
    cfg = cfglib.load(config, overrides or [], stage=stage)
    if as_json:
        emit_json(cfg.model_dump(mode="json"))
    else:
        typer.echo(cfglib.to_yaml(cfg), nl=False)
