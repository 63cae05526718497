"""`rewardlab simulate CONFIG [key=value ...]` and `rewardlab simulate rate BATCH CONFIG [key=value ...]`.

One typer command with variadic arguments that dispatches on the first one being ``rate``: a positional
CONFIG and a ``rate`` subcommand cannot live side by side in a typer group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from rewardlab import config as cfglib
from rewardlab.commands.apps import app, emit_json, handle_errors
from rewardlab.errors import UserError

HELP = """A simulated rating campaign with known ground truth, or simulated raters judging a batch.

\b
  rewardlab simulate CONFIG \\[key=value ...] \\[--out DIR] \\[--json]
      writes a canonical dataset folder at `out` plus `<out>/truth.json`
      (true utilities, rater profiles, tasks). With `sweep:` in the config it
      plans a campaign instead: it runs every setting of the sweep in memory
      and prints the expected aggregated label accuracy and agreement.
  rewardlab simulate rate BATCH CONFIG \\[key=value ...] \\[--out DIR] \\[--json]
      the config's rater pool judges an exported next-round batch (JSONL of
      {"id", "prompt", "responses", "meta"} or Label Studio tasks JSON);
      writes a dataset folder (--out, or out=..., else <batch>-rated beside
      the batch) plus truth.json, and skipped.jsonl for unusable items.

\b
Examples:
  rewardlab simulate configs/simulate/default.yaml seed=1
  rewardlab simulate configs/simulate/sweep.yaml --json
  rewardlab simulate rate runs/sample/batch.jsonl configs/simulate/default.yaml --out data/round2
"""


@app.command("simulate", help=HELP, no_args_is_help=True)
@handle_errors
def simulate(
    args: list[str] = typer.Argument(
        ..., metavar="CONFIG [key=value ...] | rate BATCH CONFIG [key=value ...]", show_default=False
    ),
    out: str = typer.Option(None, "--out", help="Output dataset folder (default: the config's `out`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the summary."),
) -> None:
    if args[0] == "rate":
        if len(args) < 3:
            raise UserError("usage: rewardlab simulate rate BATCH CONFIG [key=value ...] [--out DIR]")
        summary = run_rate(args[1], args[2], args[3:], out)
    else:
        cfg = cfglib.load(args[0], args[1:], stage="simulate")
        if out:
            cfg.out = out
        if cfg.sweep:
            rows = run_sweep(cfg)
            if as_json:
                emit_json({"settings": rows, "keys": list(cfg.sweep)})
            else:
                print_sweep(rows, list(cfg.sweep))
            return
        summary = run_campaign(cfg)
    if as_json:
        emit_json(summary)
    else:
        typer.echo(_describe(summary))


def _describe(s: dict[str, Any]) -> str:
    line = f"wrote {s['records']} records ({s['prompts']} prompts, {s['raters']} raters, {s['gold']} gold) to {s['out']}"
    if s.get("skipped"):
        line += f"; skipped {s['skipped']} item(s): {s['by_reason']} (see {s['out']}/skipped.jsonl)"
    if s.get("no_task"):
        line += f"; {s['no_task']} item(s) had no task and were scored by style and safety only"
    return line + f"; truth in {s['truth']}"


def _summary(records: list[dict[str, Any]], out: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "records": len(records),
        "prompts": len({r["meta"]["item"] for r in records}),
        "raters": len({r["rater"] for r in records if r.get("rater")}),
        "gold": sum(1 for r in records if r.get("gold")),
        "judgments": sum(1 for r in records if r.get("rater")),
        "fingerprint": info["fingerprint"],
        "out": out,
        "truth": str(Path(out) / "truth.json"),
    }


def run_campaign(cfg: Any) -> dict[str, Any]:
    """Simulate the campaign of ``cfg`` and write it to ``cfg.out``; returns the --json summary."""
    from rewardlab.data.simulate import simulate_campaign, write_campaign

    records, truth = simulate_campaign(cfg)
    info = write_campaign(records, truth, cfg.out)
    return _summary(records, cfg.out, info)


def run_rate(batch: str, config: str, overrides: list[str], out: str | None) -> dict[str, Any]:
    """The pool of ``config`` judges the items of ``batch``; returns the --json summary."""
    from rewardlab.data.simulate import rate_batch, read_batch, write_campaign

    cfg = cfglib.load(config, overrides, stage="simulate")
    items, skipped, counts = read_batch(batch)
    if not items:
        raise UserError(f"{batch}: no item has 2 distinct non-empty responses ({len(skipped)} skipped)")
    if out is None and any(o.strip().startswith("out=") for o in overrides):
        out = cfg.out
    out = out or str(Path(batch).with_name(Path(batch).stem + "-rated"))
    records, truth = rate_batch(items, cfg, cfg.seed)
    truth["batch"] = str(batch)
    info = write_campaign(records, truth, out, batch=str(batch))
    if skipped:
        with open(Path(out) / "skipped.jsonl", "w", encoding="utf-8") as fh:
            for row in skipped:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    by_reason: dict[str, int] = {}
    for row in skipped:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    return {
        **_summary(records, out, info),
        "items": len(items) + len(skipped),
        "rated": len(items),
        "skipped": len(skipped),
        "by_reason": by_reason,
        **counts,
    }


def run_sweep(cfg: Any) -> list[dict[str, Any]]:
    """Every setting of ``cfg.sweep`` simulated in memory and evaluated: one row per setting."""
    from rewardlab.data.simulate import simulate_campaign, sweep_settings
    from rewardlab.raters.planning import evaluate_setting

    rows = []
    settings = sweep_settings(cfg)
    for n, (setting, sub) in enumerate(settings, start=1):
        print(f"sweep {n}/{len(settings)}: {setting}", file=sys.stderr)
        records, truth = simulate_campaign(sub)
        metrics, evaluator = evaluate_setting(records, truth), "rewardlab.raters.planning"
        rows.append(
            {
                "setting": setting,
                **metrics,
                "judgments": sum(1 for r in records if r.get("rater")),
                "gold": sum(1 for r in records if r.get("gold")),
                "evaluator": evaluator,
            }
        )
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def print_sweep(rows: list[dict[str, Any]], keys: list[str]) -> None:
    """A rich table: one row per setting, swept keys first, then accuracy, agreement and cost."""
    from rich.console import Console
    from rich.table import Table

    metrics = ["label_accuracy", "majority_accuracy", "agreement", "judgments", "gold"]
    metrics += [m for m in ("flag_recall", "flag_precision") if any(m in row for row in rows)]
    table = Table(title=f"campaign planning ({rows[0]['evaluator'] if rows else '-'})")
    for col in keys + metrics:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*[_fmt(row["setting"][k]) for k in keys], *[_fmt(row.get(m)) for m in metrics])
    Console(file=sys.stdout, width=max(100, 16 * (len(keys) + len(metrics)))).print(table)
