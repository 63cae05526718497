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
    """Print the resolved config: code defaults < YAML file < overrides, validated.

    A pipeline config is checked as `rewardlab pipeline` checks it before any work: each stage's own
    section against that stage's schema, so a bad key in `rm:` fails here, not an hour into the run.
    """
    cfg = cfglib.load(config, overrides or [], stage=stage)
    if cfg.stage == "pipeline":
        from rewardlab.recipes.pipeline import validate_plan

        validate_plan(cfg)
    if as_json:
        emit_json(cfg.model_dump(mode="json"))
    else:
        typer.echo(cfglib.to_yaml(cfg), nl=False)
