"""`rewardlab train rm`, `rewardlab eval rm` and `rewardlab score`."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import typer

from rewardlab import config as cfglib
from rewardlab.commands.apps import app, emit_json, eval_app, handle_errors, train_app
from rewardlab.commands.launcher import LAUNCHER_OPT, relaunch
from rewardlab.devices import DEVICE_HELP, DTYPE_HELP
from rewardlab.errors import UserError

# The headline metrics printed as a table (all of them go to metrics.json and --json).
HEADLINE = (
    "accuracy",
    "n_pairs",
    "agreement_ceiling",
    "accuracy_on_ceiling_pairs",
    "tie_accuracy",
    "n_tie_pairs",
    "ece",
    "reward_mean",
    "reward_std",
    "rankings_per_s",
    "padding_ratio",
    "truncated_prompt_records",
    "truncated_response_records",
)

PICKLE_HELP = "Load a model folder whose weights are pickle files (can run code; default: safetensors only)."
CODE_HELP = "Run Python code shipped in the model folder (auto_map); off by default."
DEVICE_OPT = typer.Option("auto", "--device", help=DEVICE_HELP)
DTYPE_OPT = typer.Option("float32", "--dtype", help=DTYPE_HELP)


def _quiet_transformers() -> None:
    """Model-load reports and progress bars of transformers would bury our one-line summaries."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """A human-readable view: headline numbers, then the breakdowns."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in HEADLINE:
        if key in metrics:
            table.add_row(key, _fmt(metrics[key]))
    for key in ("accuracy_by_head", "accuracy_by_strength", "accuracy_by_k", "accuracy_by_agreement"):
        for sub, value in (metrics.get(key) or {}).items():
            table.add_row(escape(f"{key.removeprefix('accuracy_')}[{sub}]"), _fmt(value))
    Console(file=sys.stdout, width=100).print(table)


@train_app.command("rm")
@handle_errors
def train_rm(
    config: str = typer.Argument(..., help="A YAML config file (see configs/rm/)."),
    overrides: list[str] = typer.Argument(None, help="Dotted key=value overrides, e.g. train.max_steps=20."),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as one JSON object."),
    launcher: str = LAUNCHER_OPT,
) -> None:
    """Train a reward model from rankings (K-wise, ties, margins, soft labels, rubric heads)."""
    cfg = cfglib.load(config, overrides or [], stage="rm")
    from rewardlab.models import check_quantization

    check_quantization(cfg.model.quantization, cfg.model.lora)  # before a launch, a run folder or a model
    if launcher:
        relaunch(launcher, "rm", config, overrides, as_json)
    _quiet_transformers()
    from rewardlab import devices
    from rewardlab.recipes import rm as recipe

    devices.use_tf32()  # float32 matmuls on CUDA in TF32 (docs/scaling.md, "Devices")

    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for our report / --json
        metrics = recipe.run(cfg)
    if not metrics:  # a non-main accelerate process: the main one reports
        return
    if as_json:
        emit_json({"output_dir": cfg.output_dir, **metrics})
    else:
        print_metrics(metrics, f"reward model {cfg.output_dir}")
        typer.echo(f"run folder: {cfg.output_dir}")


def _read_eval_records(path: str, use_gold: bool = False) -> tuple[list[dict], dict, int]:
    """Records to evaluate on, without the gold answer key unless ``use_gold`` (count returned)."""
    from rewardlab.data.dataset import iter_records, set_aside_gold
    from rewardlab.recipes.rm import read_dataset

    ds, meta = read_dataset(path)
    records, n_gold = set_aside_gold(list(iter_records(ds)), use_gold)
    if not records:
        raise UserError(f"{path}: no records to evaluate" + (f" ({n_gold} gold set aside)" if n_gold else ""))
    return records, meta, n_gold


@eval_app.command("rm")
@handle_errors
def eval_rm(
    run_dir: str = typer.Argument(..., help="An RM run folder (or its model/ folder)."),
    data: str = typer.Option(..., "--data", help="A dataset folder (or a file in a known format)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Responses scored per forward pass."),
    device: str = DEVICE_OPT,
    dtype: str = DTYPE_OPT,
    out: str = typer.Option(
        None, "--out", help="Where to write the metrics JSON (default RUN/evals/<data>.json)."
    ),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=CODE_HELP),
    use_gold: bool = typer.Option(
        False,
        "--use-gold",
        help="Also evaluate on gold records (the raters' answer key; set aside by default).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Pairwise accuracy (by strength, K, rater agreement, head), ties, calibration, agreement ceiling."""
    from rewardlab import devices
    from rewardlab.scoring import RewardScorer, resolve_model_dir

    device, dtype = devices.resolve_device(device), devices.parse_dtype(dtype)  # refused before any work
    _quiet_transformers()
    from rewardlab.eval.rm import evaluate_scorer

    folder = resolve_model_dir(run_dir)
    records, meta, n_gold = _read_eval_records(data, use_gold)
    scorer = RewardScorer.from_path(
        folder,
        device=device,
        dtype=dtype,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        where="--",
    )
    metrics = evaluate_scorer(scorer, records, batch_size=batch_size, progress=True)
    metrics.update(
        {
            "data": data,
            "data_fingerprint": meta.get("fingerprint"),
            "model": str(folder),
            "gold_set_aside": n_gold,
        }
    )
    target = Path(out) if out else None
    if target is None and folder.name == "model" and (folder.parent / "config.yaml").exists():
        target = folder.parent / "evals" / f"{Path(data).name}.json"
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(metrics, indent=2, default=str))
    if as_json:
        emit_json(metrics)
    else:
        print_metrics(metrics, f"eval rm {run_dir} on {data}")
        if target is not None:
            typer.echo(f"written: {target}")


def read_score_input(path: str) -> list[dict[str, Any]]:
    """JSONL lines with `prompt` and `response` (one) or `responses` (several); bad lines fail with file:line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: input file not found")
    rows = []
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{n}: invalid JSON ({err.msg})") from None
            rows.append(_check_score_row(obj, f"{path}:{n}"))
    return rows


def _check_score_row(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: each line must be a JSON object")
    prompt = obj.get("prompt")
    ok_chat = (
        isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "content" in m for m in prompt)
    )
    if not (isinstance(prompt, str) or ok_chat):
        raise UserError(f"{where}: field 'prompt' must be a string or a list of {{role, content}} messages")
    if "responses" in obj:
        resp = obj["responses"]
        if not isinstance(resp, list) or not resp or not all(isinstance(r, str) for r in resp):
            raise UserError(f"{where}: field 'responses' must be a non-empty list of strings")
    elif not isinstance(obj.get("response"), str):
        raise UserError(f"{where}: needs a string field 'response' (or a list 'responses')")
    return obj


@app.command("score")
@handle_errors
def score(
    run_dir: str = typer.Argument(..., help="An RM run folder (or its model/ folder)."),
    input: str = typer.Option(..., "--input", help="JSONL: prompt + response, or prompt + responses."),
    output: str = typer.Option(..., "--output", help="JSONL: the same lines with a `rewards` dict per head."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Responses scored per forward pass."),
    device: str = DEVICE_OPT,
    dtype: str = DTYPE_OPT,
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help=PICKLE_HELP),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help=CODE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as one JSON object."),
) -> None:
    """Score prompt/response pairs with a reward model (every head), in the RM's own chat format."""
    from rewardlab import devices

    device, dtype = devices.resolve_device(device), devices.parse_dtype(dtype)  # refused before any work
    rows = read_score_input(input)
    _quiet_transformers()
    from rewardlab.scoring import RewardScorer

    scorer = RewardScorer.from_path(
        run_dir,
        device=device,
        dtype=dtype,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        where="--",
    )
    prompts, responses, owner = [], [], []
    for n, row in enumerate(rows):
        for resp in row["responses"] if "responses" in row else [row["response"]]:
            prompts.append(row["prompt"])
            responses.append(resp)
            owner.append(n)
    values = scorer.score(prompts, responses, batch_size=batch_size, progress=True)
    per_row: list[list[Any]] = [[] for _ in rows]
    for i, n in enumerate(owner):
        per_row[n].append(values[i])
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row, vals in zip(rows, per_row, strict=True):
            if "responses" in row:
                rewards = {h: [float(v[k]) for v in vals] for k, h in enumerate(scorer.heads)}
            else:
                rewards = {h: float(vals[0][k]) for k, h in enumerate(scorer.heads)}
            fh.write(json.dumps({**row, "rewards": rewards}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    summary = {"rows": len(rows), "responses": len(responses), "heads": scorer.heads, "output": str(out)}
    if as_json:
        emit_json(summary)
    else:
        typer.echo(
            f"scored {len(responses)} responses in {len(rows)} rows ({', '.join(scorer.heads)}) -> {out}"
        )
