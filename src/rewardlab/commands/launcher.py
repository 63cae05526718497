"""`rewardlab train STAGE CONFIG --launcher ACCELERATE.yaml`: the same command, re-run under accelerate.

Saves typing the `accelerate launch --config_file ... -m rewardlab.cli` prefix and, on a machine without a
GPU, sets ACCELERATE_USE_CPU=true (without it the launched processes would not join one gloo group), or for
a DeepSpeed config DS_ACCELERATOR=cpu (accelerate would drop DeepSpeed under ACCELERATE_USE_CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from rewardlab.errors import UserError

LAUNCHER_OPT = typer.Option(
    None,
    "--launcher",
    help="An accelerate config (configs/accelerate/*.yaml): run under `accelerate launch --config_file`.",
)


def launch_command(launcher: str, stage: str, config: str, overrides: list[str], as_json: bool) -> list[str]:
    """The `accelerate launch` command line for this training command; checks the accelerate config."""
    from accelerate.commands.config.config_args import ClusterConfig

    path = Path(launcher)
    if not path.is_file():
        raise UserError(f"--launcher {launcher}: no such file (see configs/accelerate/)")
    try:
        ClusterConfig.from_yaml_file(path)
    except (ValueError, TypeError, AttributeError) as err:  # accelerate's own checks, yaml shape
        raise UserError(f"--launcher {launcher}: not an accelerate config ({err})") from None
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
        "-m", "rewardlab.cli", "train", stage, config, *overrides, *(["--json"] if as_json else []),
    ]  # fmt: skip


def _is_deepspeed(launcher: str) -> bool:
    from accelerate.commands.config.config_args import ClusterConfig

    return str(ClusterConfig.from_yaml_file(Path(launcher)).distributed_type).endswith("DEEPSPEED")


def relaunch(launcher: str, stage: str, config: str, overrides: list[str] | None, as_json: bool) -> None:
    """Run the command under `accelerate launch` and exit with its exit code (never returns)."""
    import torch

    cmd = launch_command(launcher, stage, config, overrides or [], as_json)
    env = dict(os.environ)
    if not torch.cuda.is_available():
        if _is_deepspeed(launcher):  # accelerate drops DeepSpeed under ACCELERATE_USE_CPU (engines.py)
            env.setdefault("DS_ACCELERATOR", "cpu")
        else:
            env.setdefault("ACCELERATE_USE_CPU", "true")
    print(f"launching: {' '.join(cmd[1:])}", file=sys.stderr)
    raise typer.Exit(subprocess.call(cmd, env=env))
