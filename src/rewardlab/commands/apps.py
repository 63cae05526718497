"""The command tree (docs/design.md, "CLI contract") and the helpers every command uses for exit codes and JSON."""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from rewardlab.errors import UserError

# `rewardlab --help` lists commands in the order of the loop they run, not alphabetically.
LOOP_ORDER = (
    "data",
    "raters",
    "train",
    "eval",
    "score",
    "export",
    "sample",
    "simulate",
    "pipeline",
    "compare",
    "config",
)


class LoopOrderGroup(TyperGroup):
    """The top-level group: commands listed in LOOP_ORDER, any other after them by name."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(LOOP_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(LOOP_ORDER)), n))


_settings = {"no_args_is_help": True, "add_completion": False, "pretty_exceptions_enable": False}
app = typer.Typer(
    help="rewardlab: from human rankings to reward models and tuned policies.",
    cls=LoopOrderGroup,
    **_settings,
)
data_app = typer.Typer(help="Import, validate, audit and export ranking data.", **_settings)
raters_app = typer.Typer(help="Rater quality report and aggregation of repeated judgments.", **_settings)
train_app = typer.Typer(help="Train a reward model or tune a policy from a YAML config.", **_settings)
eval_app = typer.Typer(help="Evaluate a reward model or a policy run.", **_settings)
config_app = typer.Typer(help="Inspect configs.", **_settings)
app.add_typer(data_app, name="data")
app.add_typer(raters_app, name="raters")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(config_app, name="config")


def fail(message: str, code: int = 2) -> None:
    """Print a one-line reason on stderr and exit (2: bad input or config; 1: internal failure)."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Map UserError to exit 2 with its one-line message, other exceptions to exit 1.

    A disk that cannot take our files (full, quota, read-only, permission, a path through a regular file)
    is the user's to fix, not a bug: exit 2 with ``cannot write <path>: <reason>``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except UserError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 2)
        except Exception as exc:  # noqa: BLE001 - the CLI boundary
            disk = _disk_error(exc) if isinstance(exc, OSError) else None
            if disk is not None:
                fail(disk, 2)
            if os.environ.get("REWARDLAB_DEBUG"):
                traceback.print_exc()
            fail(f"internal error: {type(exc).__name__}: {exc} (set REWARDLAB_DEBUG=1 for the traceback)", 1)

    return wrapper


def _disk_error(exc: OSError) -> str | None:
    """The one-line message for a disk error (``cannot write ...`` / ``cannot access ...``), else None."""
    from rewardlab import runs

    if exc.errno not in runs.WRITE_ERRNOS:
        return None
    reason = runs.WRITE_ERRNOS[exc.errno]
    path = exc.filename or runs.last_run_dir() or "(path not reported)"
    # Full, over quota or read-only can only be a write; a permission or path error may be a read too.
    verb = "write" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "access"
    return f"cannot {verb} {path}: {reason}"


def emit_json(obj: Any) -> None:
    """The --json contract: one JSON object on stdout and nothing else there."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()
