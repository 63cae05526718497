"""`rewardlab raters report` and `rewardlab raters aggregate` (the logic lives in rewardlab.raters)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from rewardlab import config as cfglib
from rewardlab.commands.apps import emit_json, handle_errors, raters_app

CONFIG_HELP = "A raters YAML config (thresholds, exclusion policy, method); default: built-in defaults."
OVERRIDES_HELP = "Dotted key=value overrides of the raters config, e.g. thresholds.min_agreement=0.65."


def _config(path: str | None, overrides: list[str] | None) -> Any:
    return cfglib.load(path, overrides or [], stage="raters")


def _say(message: str) -> None:
    print(f"raters: {message}", file=sys.stderr, flush=True)


def build_report(
    dataset: str, cfg: Any, outputs: tuple[str, ...] = (), evidence: str | None = None
) -> dict[str, Any]:
    """Read a dataset folder and return the report dict (the `--json` object); with ``evidence``, also
    write the judgments behind each flag there (raters.evidence), from the same (pseudonymized) table."""
    from rewardlab.raters import pseudonym, quality
    from rewardlab.raters.table import from_dataset

    start = time.perf_counter()
    # raters.pseudonymize: measure a pseudonymized copy, so no raw id reaches the report, HTML or stdout.
    with pseudonym.raters_input(dataset, cfg, outputs) as (source, cfg):
        j = from_dataset(source)
        _say(
            f"read {j.n_records} records, {len(j.j_row)} judgments of {j.n_groups} comparisons ({time.perf_counter() - start:.1f} s)"
        )
        report = quality.build_report(j, cfg)
        if evidence:
            from rewardlab.raters.evidence import write_evidence

            index = write_evidence(j, report, evidence)
            report["evidence_dir"] = str(evidence)
            _say(f"wrote the evidence of {len(index['raters'])} flagged rater(s) to {evidence}")
    report["dataset"] = str(dataset)
    _say(f"measured {len(report['raters'])} raters ({time.perf_counter() - start:.1f} s)")
    return report


@raters_app.command("report")
@handle_errors
def report(
    dataset: str = typer.Argument(..., help="A dataset folder (from `data import` or `simulate`)."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    html: str = typer.Option(None, "--html", help="Also write a self-contained HTML report (charts, table)."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (docs/design.md fields)."),
    evidence: str = typer.Option(
        None,
        "--evidence",
        help="Write the judgments behind each flag to this folder (one JSONL per flagged rater: the pairs, "
        "the rater's verdict, the consensus, gold where present; pseudonyms applied).",
    ),
) -> None:
    """Per-rater agreement, gold accuracy, position bias, speed and reliability, with flags and reasons.

    A rater is flagged on a rule only when its Wilson interval (thresholds.confidence) lies wholly on the
    wrong side of the threshold and the rule's minimum n is reached; otherwise the rule is listed as
    insufficient_evidence with how many more judgments would decide."""
    cfg = _config(config, overrides)
    outputs = tuple(x for x in (html, evidence) if x)
    rep = build_report(dataset, cfg, outputs, evidence)
    if html:
        from rewardlab.raters.report_html import render_report_html

        Path(html).parent.mkdir(parents=True, exist_ok=True)
        Path(html).write_text(render_report_html(rep, f"Rater quality report: {dataset}"), encoding="utf-8")
        rep["html"] = str(html)
        _say(f"wrote {html}")
    if as_json:
        emit_json(rep)
    else:
        print_report(rep)


def print_report(rep: dict[str, Any]) -> None:
    """A compact table (flag reasons as codes; the full reasons are in --json and --html)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Raters")
    cols = [("rater", "rater"), ("items", "items"), ("agreement", "agree"), ("gold_accuracy", "gold"),
            ("gold_items", "n gold"), ("position_bias", "first"), ("tie_rate", "ties"),
            ("median_time_s", "median s"), ("reliability", "reliab.")]  # fmt: skip
    for _, label in cols:
        table.add_column(label, justify="left" if label == "rater" else "right")
    table.add_column("flags (estimate [interval] n)")
    table.add_column("insufficient evidence (+ more to decide)")
    for r in rep["raters"]:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            cells.append("-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)))
        cells.append("; ".join(evidence_text(e) for e in r.get("evidence", [])))
        pending = [e for e in r.get("insufficient_evidence", [])]
        cells.append("; ".join(evidence_text(e) for e in pending))
        table.add_row(*cells, style="red" if r["flagged"] else None)
    console = Console(width=max(Console().width, 110))
    console.print(table)
    pub = rep["published_agreement"]
    console.print(
        f"agreement {rep['agreement']} (published campaigns: {pub['low']}-{pub['high']}), "
        f"alpha {rep['alpha']} ({rep['alpha_method']}), flagged {len(rep['flagged'])}: {', '.join(rep['flagged']) or 'none'}"
    )
    t = rep.get("thresholds") or {}
    console.print(
        f"a flag needs its Wilson {t.get('confidence', 0.95):.0%} interval wholly past the threshold and "
        f"n >= {t.get('min_items')} (gold: {t.get('min_gold_items')} items); the rules are in --json"
    )
    from rewardlab.raters.report_html import consensus_line

    console.print(consensus_line(rep.get("consensus_check")), markup=False)
    for note in rep["notes"]:
        console.print(f"note: {note}")


def evidence_text(e: dict[str, Any]) -> str:
    """``low_agreement 0.42 [0.31, 0.53] n=80`` (+N: more judgments that would decide, at the same rate)."""
    lo, hi = e["interval"]
    text = f"{e['code']} {e['estimate']:.2f} [{lo:.2f}, {hi:.2f}] n={e['n']}"
    if e["decision"] == "insufficient_evidence":
        if e.get("suspended"):
            text += f" ({e['suspended']})"
        else:
            text += f" +{e['more_needed']}" if e.get("more_needed") is not None else " (undecidable)"
    return text


@raters_app.command("aggregate")
@handle_errors
def aggregate(
    dataset: str = typer.Argument(..., help="A dataset folder with repeated judgments."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    out: str = typer.Option(..., "--out", help="The output dataset folder (one record per comparison)."),
    method: str = typer.Option(
        None, "--method", help="majority | noisy-bt | dawid-skene | none (default: config)."
    ),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (docs/design.md fields)."),
) -> None:
    """Merge repeated judgments into one record per comparison with soft pairwise labels and a weight.

    Excluded raters follow the config's `exclude` policy; their judgments go to <out>/excluded.jsonl with
    the reason, gold references to <out>/gold.jsonl, the rater report to <out>/rater_report.json.
    """
    from rewardlab.raters.aggregate import aggregate_dataset

    cfg = _config(config, overrides)
    start = time.perf_counter()
    summary = aggregate_dataset(dataset, out, cfg, method, log=_say)
    _say(f"done in {time.perf_counter() - start:.1f} s")
    if as_json:
        emit_json(summary)
    else:
        typer.echo(
            f"wrote {summary['records_written']} records ({summary['method']}) to {summary['out']}: "
            f"{summary['judgments_used']} judgments used, {summary['judgments_excluded']} excluded "
            f"(raters: {', '.join(summary['excluded_raters']) or 'none'}; see {summary['excluded_file']})"
        )
        if summary["groups_dropped"]:
            typer.echo(
                f"{summary['groups_dropped']} comparison(s) had only excluded judgments and are not in the output"
            )
        for name, why in sorted(summary.get("kept_flagged_raters", {}).items()):
            typer.echo(f"kept {name}: {why}")
