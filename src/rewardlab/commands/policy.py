"""`rewardlab train sft|dpo|ppo|grpo|rloo|rs` and `rewardlab eval policy`."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import typer

from rewardlab import config as cfglib
from rewardlab.commands.apps import emit_json, eval_app, handle_errors, train_app
from rewardlab.commands.launcher import LAUNCHER_OPT, relaunch
from rewardlab.devices import DEVICE_HELP, DTYPE_HELP

CONFIG_ARG = typer.Argument(..., help="A YAML config file (see configs/<stage>/).")
OVERRIDES_ARG = typer.Argument(
    None, help="Dotted key=value overrides, e.g. train.lr=1e-5 train.max_steps=10."
)
JSON_OPT = typer.Option(False, "--json", help="Print the final metrics as one JSON object.")


def _report(stage: str, metrics: dict[str, Any], output_dir: str, as_json: bool) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, the main process reports
        return
    if as_json:
        emit_json({"output_dir": output_dir, **metrics})
        return
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if isinstance(v, (int, float, str))
    )
    typer.echo(f"{stage}: {shown}")
    typer.echo(f"run folder: {output_dir}")


def _train(
    stage: str, config: str, overrides: list[str] | None, as_json: bool, launcher: str | None = None
) -> None:
    cfg = cfglib.load(config, overrides or [], stage=stage)
    from rewardlab.models import check_quantization

    check_quantization(cfg.model.quantization, cfg.model.lora)  # before a launch, a run folder or a model
    if launcher:
        relaunch(launcher, stage, config, overrides, as_json)
    from rewardlab import devices

    devices.use_tf32()  # float32 matmuls on CUDA in TF32 (docs/scaling.md, "Devices")
    # Libraries print to stdout (transformers' log dicts, wandb notices): keep stdout for our report.
    with contextlib.redirect_stdout(sys.stderr):
        if stage == "sft":
            from rewardlab.recipes import sft as recipe
        elif stage == "dpo":
            from rewardlab.recipes import dpo as recipe
        elif stage == "ppo":
            from rewardlab.recipes import ppo as recipe
        elif stage == "rs":
            from rewardlab.recipes import rs as recipe
        else:
            from rewardlab.recipes import online as recipe
        metrics = recipe.run(cfg)
    _report(stage, metrics, cfg.output_dir, as_json)


@train_app.command("sft")
@handle_errors
def train_sft(
    config: str = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    as_json: bool = JSON_OPT,
    launcher: str = LAUNCHER_OPT,
) -> None:
    """Supervised fine-tuning on demonstrations (TRL SFTTrainer): the starting policy."""
    _train("sft", config, overrides, as_json, launcher)


@train_app.command("dpo")
@handle_errors
def train_dpo(
    config: str = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    as_json: bool = JSON_OPT,
    launcher: str = LAUNCHER_OPT,
) -> None:
    """Direct preference optimization on the dataset's ranked pairs (TRL DPOTrainer)."""
    _train("dpo", config, overrides, as_json, launcher)


@train_app.command("ppo")
@handle_errors
def train_ppo(
    config: str = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    as_json: bool = JSON_OPT,
    launcher: str = LAUNCHER_OPT,
) -> None:
    """PPO against a trained reward model (rewardlab's own recipe)."""
    _train("ppo", config, overrides, as_json, launcher)


@train_app.command("grpo")
@handle_errors
def train_grpo(
    config: str = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    as_json: bool = JSON_OPT,
    launcher: str = LAUNCHER_OPT,
) -> None:
    """GRPO against a trained reward model (TRL GRPOTrainer)."""
    _train("grpo", config, overrides, as_json, launcher)


@train_app.command("rloo")
@handle_errors
def train_rloo(
    config: str = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    as_json: bool = JSON_OPT,
    launcher: str = LAUNCHER_OPT,
) -> None:
    """RLOO against a trained reward model (TRL RLOOTrainer)."""
    _train("rloo", config, overrides, as_json, launcher)


@train_app.command("rs")
@handle_errors
def train_rs(
    config: str = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    as_json: bool = JSON_OPT,
    launcher: str = LAUNCHER_OPT,
) -> None:
    """Rejection-sampling fine-tuning: n answers per prompt, the RM keeps the best, SFT on them, per round."""
    _train("rs", config, overrides, as_json, launcher)


@eval_app.command("policy")
@handle_errors
def eval_policy(
    run_dir: str = typer.Argument(..., help="A policy run folder (sft, dpo, ppo, grpo, rloo)."),
    prompts: str = typer.Option(
        None, help="Held-out prompts: a dataset folder or a JSONL file of {prompt, meta}."
    ),
    n: int = typer.Option(None, help="Evaluate on at most N prompts."),
    samples_per_prompt: int = typer.Option(
        1, "--samples-per-prompt", min=1, help="Answers per prompt and model."
    ),
    reward_model: str = typer.Option(
        None, "--reward-model", help="RM to judge with (default: the run's RM)."
    ),
    max_new_tokens: int = typer.Option(None, help="Response length limit (default: the run's)."),
    seed: int = typer.Option(0, help="Sampling seed (same for policy and reference)."),
    greedy: bool = typer.Option(False, help="Greedy decoding instead of seeded sampling."),
    best_of: int = typer.Option(
        0, "--best-of", min=0, help="Also judge best-of-N decoding of the reference (the run's RM picks)."
    ),
    reference_from: str = typer.Option(
        None,
        "--reference-from",
        help="Reuse the reference answers of an earlier eval of this run folder (same settings only).",
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", min=1, help="Prompts sampled per generate call (part of the sampling seed)."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=DTYPE_HELP),
    as_json: bool = JSON_OPT,
) -> None:
    """Policy vs its reference on held-out prompts: RM score, win rate, KL, length, truth score; samples file."""
    from rewardlab import devices

    device, dtype = devices.resolve_device(device), devices.parse_dtype(dtype)  # refused before any work
    with contextlib.redirect_stdout(sys.stderr):
        from rewardlab.eval import policy as evaluator

        metrics = evaluator.evaluate_run(
            run_dir,
            prompts=prompts,
            n=n,
            samples_per_prompt=samples_per_prompt,
            reward_model=reward_model,
            max_new_tokens=max_new_tokens,
            seed=seed,
            greedy=greedy,
            best_of=best_of,
            reference_from=reference_from,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
        )
    if as_json:
        emit_json(metrics)
    else:
        for key, value in metrics.items():
            typer.echo(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
