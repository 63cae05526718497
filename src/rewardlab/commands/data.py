"""`rewardlab data validate|import|stats|export`: rating exports in, a checked canonical dataset out."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from rewardlab.commands.apps import data_app, emit_json, fail, handle_errors
from rewardlab.errors import UserError

PSEUDO_HELP = (
    "Replace rater ids with salted-hash pseudonyms (r-<hex>) in the dataset, quarantine and report; the salt "
    "comes from $REWARDLAB_PSEUDONYM_SALT or --salt-file."
)
SALT_HELP = "The salt file (default ~/.config/rewardlab/pseudonym-salt, created on first use)."
FORMAT_HELP = (
    "auto|canonical|trl|hh-rlhf|shp|ultrafeedback|helpsteer2|label-studio|argilla|toloka|arena|wide:MAPPING "
    "(auto: from the extension and the first record's keys; wide:MAPPING: one column per annotator, MAPPING "
    "a preset (pandalm) or a YAML column mapping, see docs/raters.md)"
)


@contextmanager
def _progress(total: int, label: str):
    """A byte-progress bar on stderr when it is a terminal, plain periodic lines when it is a log."""
    from rewardlab import progress

    if total <= 0 or os.environ.get("DISABLE_TQDM"):
        yield lambda n: None
        return
    if not progress.interactive():
        plain = progress.PlainProgress(total, label, unit="B")
        try:
            yield plain.update
        finally:
            plain.close()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        label,
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _total_bytes(paths: list[str]) -> int:
    total = 0
    for p in paths:
        path = Path(p)
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return total


def _print_report(report: Any, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        emit_json({**report.to_json(), **(extra or {})})
        return
    typer.echo(f"format: {report.to_json()['format']}")
    typer.echo(
        f"read {report.read}  accepted {report.accepted}  quarantined {report.quarantined}"
        + (f" (skipped by design: {report.skipped})" if report.skipped else "")
    )
    for reason, n in report.by_reason.most_common():
        typer.echo(f"  {reason:<26} {n}")
    for key, value in (extra or {}).items():
        typer.echo(f"{key}: {value}")
    if report.quarantine and report.quarantined:
        typer.echo(f"quarantine: {report.quarantine}")


@data_app.command("validate")
@handle_errors
def validate(
    path: list[str] = typer.Argument(..., help="Files or folders to check (any known format)."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    quarantine: str = typer.Option(
        None, help="Write every rejected record here (JSONL with file, line, reason)."
    ),
    max_line_bytes: int = typer.Option(None, help="Reject longer lines as line_too_long (default 4 MiB)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Check records without writing a dataset. Exit 2 when any record is invalid.

    Records skipped by design (cancelled annotations, rejected assignments, drafts) are counted and
    quarantined but do not fail validation.
    """
    from rewardlab.data import importing

    kwargs = {"max_line_bytes": max_line_bytes} if max_line_bytes else {}
    with _progress(_total_bytes(path), "validating") as progress:
        report = importing.run(path, fmt=fmt, quarantine=quarantine, progress=progress, **kwargs)
    _print_report(report, as_json)
    if report.invalid:
        fb = report.first_bad
        fail(
            f"{report.invalid} invalid record(s) of {report.read}; first at {fb['source']}:{fb['line']}: "
            f"{fb['reason']} ({fb['detail']})"
        )


@data_app.command("import")
@handle_errors
def import_(
    path: list[str] = typer.Argument(
        ..., help="Files or folders to import (any known format, may be mixed)."
    ),
    out: str = typer.Option(..., "--out", help="The dataset folder to write."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    quarantine: str = typer.Option(
        None, help="Rejected records (default: <out>.quarantine.jsonl beside the folder)."
    ),
    strict: bool = typer.Option(False, help="Exit 2 and write no dataset when any record is invalid."),
    workers: int = typer.Option(None, help="Parser processes for large JSONL files (default: up to 2)."),
    max_line_bytes: int = typer.Option(None, help="Reject longer lines as line_too_long (default 4 MiB)."),
    pseudonymize: bool = typer.Option(False, "--pseudonymize", help=PSEUDO_HELP),
    salt_file: str = typer.Option(None, "--salt-file", help=SALT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Import rating exports into a canonical dataset folder; bad records go to the quarantine file."""
    from rewardlab.data import importing
    from rewardlab.raters import pseudonym

    kwargs: dict[str, Any] = {"workers": workers}
    if max_line_bytes:
        kwargs["max_line_bytes"] = max_line_bytes
    with _progress(_total_bytes(path), "importing") as progress:
        run = pseudonym.import_paths if pseudonymize else importing.import_paths
        if pseudonymize:
            kwargs["salt_file"] = salt_file
        report = run(path, out, fmt=fmt, quarantine=quarantine, strict=strict, progress=progress, **kwargs)
    written = not (strict and report.invalid)
    _print_report(report, as_json, {"out": out if written else None})
    if not written:
        fb = report.first_bad
        fail(
            f"--strict: {report.invalid} invalid record(s), no dataset written; first at {fb['source']}:"
            f"{fb['line']}: {fb['reason']} (all in {report.quarantine})"
        )


@data_app.command("stats")
@handle_errors
def stats(
    dataset: str = typer.Argument(..., help="A dataset folder."),
    eval_fraction: float = typer.Option(0.1, help="Eval share of the prompt-grouped split that is audited."),
    seed: int = typer.Option(0, help="Seed of the audited split."),
    pseudonymize: bool = typer.Option(False, "--pseudonymize", help=PSEUDO_HELP),
    salt_file: str = typer.Option(None, "--salt-file", help=SALT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as one JSON object."),
) -> None:
    """Counts and audits: K histogram, ties, gold, duplicates, contradictions, position and length bias."""
    from rewardlab.data.stats import compute_stats, format_stats
    from rewardlab.raters import pseudonym

    result = compute_stats(_load(dataset), eval_fraction=eval_fraction, seed=seed)
    if pseudonymize and not pseudonym.is_pseudonymized(dataset):
        result = pseudonym.pseudonymize_stats(result, pseudonym.from_config(salt_file))
    if as_json:
        emit_json(result)
    else:
        typer.echo(format_stats(result))


def _load(dataset: str) -> Any:
    from rewardlab.data.dataset import load_dataset

    try:
        return load_dataset(dataset)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None


EXPORTERS = ("trl", "label-studio", "argilla", "canonical")


@data_app.command("export")
@handle_errors
def export(
    dataset: str = typer.Argument(..., help="A dataset folder."),
    to: str = typer.Option(..., "--to", help="trl | label-studio | argilla | canonical"),
    out: str = typer.Option(..., "--out", help="The file to write."),
    template: str = typer.Option("auto", help="Label Studio template: auto | pairwise | ranker."),
    margin: str = typer.Option(
        None,
        "--margin",
        help="TRL only: an RM config (e.g. configs/rm/tiny.yaml) whose loss.margin map turns strength "
        "labels into TRL's margin column.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the export counts as one JSON object."),
) -> None:
    """Export a dataset for training (TRL) or for raters (Label Studio tasks, Argilla records).

    A TRL export says how many rows repeat an earlier one and how many contradict another (chosen and
    rejected swapped): raw multi-rater judgments have both; `raters aggregate` merges them first.
    """
    from rewardlab.data.dataset import dataset_meta, iter_records

    if margin is not None and to != "trl":
        raise UserError("--margin applies to --to trl only (TRL's margin column)")
    exporter = _exporter(to, template, _margin_map(margin) if margin else None)
    result = exporter(iter_records(_load(dataset)), out)
    if to == "trl":
        meta = dataset_meta(dataset)
        result["aggregated"] = bool(meta.get("aggregated_from"))
        result["warnings"] = _trl_warnings(result, dataset)
    if as_json:
        emit_json({"to": to, **result})
    else:
        typer.echo("  ".join(f"{k}={v}" for k, v in result.items() if k != "warnings"))
    for line in result.get("warnings", []):
        typer.echo(f"warning: {line}", err=True)
    if result.get("ties_not_exported"):
        typer.echo(
            f"note: {result['ties_not_exported']} tied pair(s) have no chosen/rejected and were not exported",
            err=True,
        )


def _margin_map(config_path: str) -> dict[str, float]:
    """``loss.margin`` of an RM config file (the same map `train rm` would use)."""
    from rewardlab import config as cfglib

    cfg = cfglib.load(config_path, [], stage="rm")
    margins = getattr(getattr(cfg, "loss", None), "margin", None)
    if not margins:
        raise UserError(f"{config_path}: loss.margin is not set; it maps strength labels to margins")
    return dict(margins)


def _trl_warnings(result: dict[str, Any], dataset: str) -> list[str]:
    """What a TRL trainer would otherwise learn from silently: repeated rows and both-way pairs."""
    warnings = []
    dup, contra = result["duplicate_rows"], result["contradicting_rows"]
    if dup or contra:
        warnings.append(
            f"{dup} of {result['pairs']} rows repeat an earlier row and {contra} of {result['distinct_rows']} "
            "distinct rows also appear with chosen and rejected swapped"
            + (f" ({result['raters']} raters' raw judgments)" if result["raters"] > 1 else "")
            + f"; merge them into one label per comparison first: rewardlab raters aggregate {dataset} --out DIR"
        )
    return warnings


def _exporter(
    to: str, template: str, margins: dict[str, float] | None = None
) -> Callable[..., dict[str, Any]]:
    if to == "trl":
        from rewardlab.data.formats.trl import export_trl

        return lambda recs, out: export_trl(recs, out, margins=margins)
    if to == "label-studio":
        from rewardlab.data.formats.label_studio import export_label_studio

        return lambda recs, out: export_label_studio(recs, out, template=template)
    if to == "argilla":
        from rewardlab.data.formats.argilla import export_argilla

        return export_argilla
    if to == "canonical":
        from rewardlab.data.formats.canonical import export_canonical

        return export_canonical
    raise UserError(f"unknown export target '{to}' (use {', '.join(EXPORTERS)})")
