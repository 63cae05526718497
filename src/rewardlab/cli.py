"""The console script: parses arguments, loads the config, calls a recipe. No training logic lives here."""

from __future__ import annotations

import importlib

from rewardlab.commands.apps import app

# Each module registers its commands on the shared apps (see commands/apps.py).
COMMAND_MODULES = ["config_cmd", "loop", "policy", "simulate", "rm", "data", "raters"]
for _name in COMMAND_MODULES:
    importlib.import_module(f"rewardlab.commands.{_name}")


def main() -> None:
    app(prog_name="rewardlab")


if __name__ == "__main__":
    main()
