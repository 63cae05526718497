"""The static HTML report: one self-contained file (inline CSS and SVG, no JavaScript, no network).

Sections, each drawn only from what the run folders hold: final metrics side by side (a delta against the
first run, the best run starred and named per stage) and config differences; curves over steps from
metrics.jsonl, held-out eval curves apart from training-batch numbers, and the optimizer's lr and grad norm; reward histograms of chosen vs rejected answers (RM runs), rater charts (raters
runs), the active-learning curve (``active_learning.json``), policy samples (``samples.jsonl``) and the
next-round batch (``batch.jsonl``). A section with no data says so instead of disappearing.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from html import escape
from pathlib import Path
from typing import Any

from rewardlab.report import plots
from rewardlab.report.compare import (
    KEY_METRICS,
    RunInfo,
    config_diff,
    flatten,
    format_value,
    metric_table,
    read_jsonl,
)

RATER_REPORT_FILES = ("rater_report.json", "raters_report.json", "report.json")
REWARD_FILES = ("eval_rewards.jsonl", "rewards.jsonl")
# not curves: the x axis, clocks, cumulative counters (throughput is in metrics.json)
SKIP_KEYS = {"step", "time", "epoch", "global_step", "rankings", "tokens", "num_tokens", "total_flos"}
OPTIMIZER_KEYS = {"lr": "lr", "learning_rate": "lr", "grad_norm": "grad norm"}
# Direction of the metrics a "best run" is picked by (others get a delta but no star).
HIGHER_IS_BETTER = {
    "accuracy", "rm_truth_accuracy", "win_rate_vs_ref", "rm_score_mean", "truth_score_mean",
    "eval_rewards/accuracies", "tie_accuracy", "accuracy_on_ceiling_pairs",
}  # fmt: skip
LOWER_IS_BETTER = {"ece", "train_loss", "eval_loss"}
# The metric that ranks runs of a stage (the first one a run has).
PRIMARY = {
    "rm": ["accuracy"],
    "dpo": ["win_rate_vs_ref", "truth_score_mean", "eval_rewards/accuracies", "eval_loss"],
    "ppo": ["win_rate_vs_ref", "truth_score_mean", "rm_score_mean"],
    "grpo": ["win_rate_vs_ref", "truth_score_mean", "train_rm_score_end"],
    "rloo": ["win_rate_vs_ref", "truth_score_mean", "train_rm_score_end"],
    "rs": ["win_rate_vs_ref", "truth_score_mean", "train_rm_score_end"],
    "sft": ["eval_loss", "train_loss"],
}
MAX_SAMPLE_ROWS = 12
# samples.jsonl of `eval policy` (policy vs reference) and of `sample` (every generated answer)
SAMPLE_COLUMNS = [
    "prompt",
    "policy",
    "reference",
    "policy_rm",
    "reference_rm",
    "policy_truth",
    "reference_truth",
    "kl",
    "response",
    "rm_score",
    "truth_score",
    "family",
]
TEXT_COLUMNS = {"prompt", "policy", "reference", "response"}

CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:420px;white-space:pre-wrap;word-break:break-word}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.plot{background:#fff;border:1px solid #e4e4e4}
svg.plot text{font-size:11px;fill:#333} svg.plot text.title{font-size:13px;font-weight:bold}
svg.plot text.label{font-size:11px;fill:#555} svg.plot text.note{fill:#888;font-style:italic}
svg.plot .frame{fill:none;stroke:#999} svg.plot .grid{stroke:#eee}
.muted{color:#777;font-size:13px} code{background:#f4f4f4;padding:1px 4px}
.delta{color:#777;font-size:12px} .best{color:#c98a00} td.best-cell{background:#fff8e1}
.wide{overflow-x:auto;max-width:100%} details{margin:4px 0;font-size:13px} summary{cursor:pointer;color:#1f5fa8}
"""


# ---------------------------------------------------------------- small HTML helpers


def _table(header: list[str], rows: list[list[Any]], text_cols: set[int] | None = None) -> str:
    text_cols = text_cols or set()
    out = ["<table><tr>", *[f"<th>{escape(str(h))}</th>" for h in header], "</tr>"]
    for row in rows:
        out.append("<tr>")
        for n, value in enumerate(row):
            if n in text_cols:
                out.append(f'<td class="text">{escape(str(value))}</td>')
            else:
                cls = "num" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
                out.append(f'<td class="{cls}">{escape(format_value(value))}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _note(text: str) -> str:
    return f'<p class="muted">{escape(text)}</p>'


def _short(text: Any, limit: int = 400) -> str:
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- sections


def _numeric_keys(history: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in history:
        for k, v in row.items():
            if k in SKIP_KEYS or k in keys:
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                keys.append(k)
    return keys


def _series(history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    pts = []
    for n, row in enumerate(history):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            x = row.get("step", n)
            pts.append((float(x if isinstance(x, (int, float)) else n), float(v)))
    return pts


def is_eval_key(key: str) -> bool:
    """Held-out numbers logged during training (``eval/accuracy`` of our RM loop, ``eval_loss`` of TRL)."""
    return key.startswith(("eval/", "eval_"))


def _kind(key: str) -> str:
    low = key.lower()
    if "loss" in low:
        return "loss"
    if "acc" in low:
        return "accuracy"
    if any(t in low for t in ("reward", "score", "kl", "win", "margin")):
        return "reward / KL"
    return "other"


def curve_groups(keys: list[str]) -> dict[str, list[str]]:
    """Metric names -> chart groups, labelled so nobody takes a training number for a held-out one:
    ``eval (held-out): loss|accuracy|...`` from eval keys, ``training: loss``, ``training batches:
    accuracy`` (the accuracy on the batch just trained on), ``optimizer: lr`` and ``optimizer: grad norm``.
    At most 6 keys a chart; the training group ``other`` is not drawn (throughput counters and the like)."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        if k in OPTIMIZER_KEYS:
            group = f"optimizer: {OPTIMIZER_KEYS[k]}"
        elif is_eval_key(k):
            group = f"eval (held-out): {_kind(k)}"
        else:
            kind = _kind(k)
            group = "training batches: accuracy" if kind == "accuracy" else f"training: {kind}"
        groups.setdefault(group, []).append(k)
    order = ["eval (held-out)", "training", "optimizer"]
    ranked = sorted(
        groups.items(), key=lambda kv: next(i for i, p in enumerate(order) if kv[0].startswith(p))
    )
    return {g: ks[:6] for g, ks in ranked}


def _series_label(key: str, group: str) -> str:
    if group.startswith("training batches") and not key.startswith("train"):
        return f"{key} (training batches)"
    if group.startswith("training") and not key.startswith("train"):
        return f"{key} (training)"
    return key


def curves_section(runs: list[RunInfo]) -> str:
    parts = [
        "<h2>Curves over steps</h2>",
        _note(
            "eval (held-out): measured on data the run does not train on, every train.eval_every steps. "
            "training: numbers of the batches just trained on (not a held-out measure)."
        ),
    ]
    drawn = 0
    for run in runs:
        if len(run.history) < 1:
            continue
        keys = [k for k in _numeric_keys(run.history) if len(_series(run.history, k)) >= 2]
        groups = {g: ks for g, ks in curve_groups(keys).items() if g != "training: other"}
        if not groups:
            continue
        charts = []
        for group, keys in groups.items():
            series = {_series_label(k, group): _series(run.history, k) for k in keys}
            charts.append(plots.line_chart(series, f"{run.name}: {group}", "step", group.split(": ")[-1]))
        parts.append(f'<h3>{escape(run.name)}</h3><div class="charts">{"".join(charts)}</div>')
        drawn += 1
    # the same loss/accuracy key in several runs: one overlay chart so runs read side by side
    shared: dict[str, list[RunInfo]] = {}
    for run in runs:
        for k in _numeric_keys(run.history):
            if ("loss" in k.lower() or "acc" in k.lower()) and len(_series(run.history, k)) >= 2:
                shared.setdefault(k, []).append(run)
    # held-out curves first: they are what runs are compared by
    ordered = sorted(shared.items(), key=lambda kv: not is_eval_key(kv[0]))
    overlays = [
        plots.line_chart(
            {r.name: _series(r.history, k) for r in rs},
            f"{k} across runs" + (" (held-out)" if is_eval_key(k) else " (training)"),
            "step",
            k,
        )
        for k, rs in ordered
        if len(rs) >= 2
    ][:6]
    if overlays:
        parts.append(f'<h3>Across runs</h3><div class="charts">{"".join(overlays)}</div>')
    if not drawn:
        parts.append(_note("No run has logged steps (metrics.jsonl) yet."))
    return "".join(parts)


def _is_rm_run(run: RunInfo) -> bool:
    return run.stage == "rm" or any((run.path / f).is_file() for f in REWARD_FILES)


def read_reward_file(path: Path) -> dict[str, list[float]]:
    """Rewards of chosen and rejected answers from an RM run's eval file.

    Accepts one pair a line (``{"chosen": r, "rejected": r}`` or ``reward_chosen``/``reward_rejected``) or
    one answer a line (``{"reward": r, "label": "chosen"|"rejected"}``).
    """
    out: dict[str, list[float]] = {"chosen": [], "rejected": []}
    for row in read_jsonl(path):
        for side in ("chosen", "rejected"):
            for key in (side, f"reward_{side}", f"{side}_reward", f"r_{side}"):
                v = row.get(key)
                if isinstance(v, list) and v:
                    v = v[0]
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[side].append(float(v))
                    break
        label = row.get("label") or row.get("side")
        reward = row.get("reward")
        if label in out and isinstance(reward, (int, float)):
            out[label].append(float(reward))
    return out


def compute_rewards(run: RunInfo, max_pairs: int = 200) -> dict[str, list[float]] | None:
    """Score the RM run's eval pairs with its own model when the run wrote no reward file."""
    model_dir = run.path / "model"
    if not model_dir.is_dir():
        return None
    try:
        from rewardlab.data.dataset import iter_records as _iter
        from rewardlab.data.dataset import load_dataset, pairs, split_by_prompt
        from rewardlab.scoring import RewardScorer
    except ImportError:
        return None
    data = run.config.get("data") or {}
    source = data.get("eval") or data.get("train")
    if not source or not Path(source).exists():
        return None
    ds = load_dataset(source)
    if not data.get("eval"):
        seed = data.get("split_seed", (run.config.get("train") or {}).get("seed", 0))
        _, ds = split_by_prompt(ds, data.get("eval_fraction", 0.1), seed)
    chosen, rejected, prompts = [], [], []
    for rec in _iter(ds):
        for pair in pairs(rec):
            if pair["tie"]:
                continue
            prompts.append(pair["prompt"])
            chosen.append(pair["chosen"])
            rejected.append(pair["rejected"])
        if len(prompts) >= max_pairs:
            break
    if not prompts:
        return None
    scorer = RewardScorer.from_path(str(model_dir))
    heads = list(getattr(scorer, "heads", ["overall"]))
    col = heads.index("overall") if "overall" in heads else 0
    rc = scorer.score(prompts[:max_pairs], chosen[:max_pairs])[:, col]
    rr = scorer.score(prompts[:max_pairs], rejected[:max_pairs])[:, col]
    return {"chosen": [float(x) for x in rc], "rejected": [float(x) for x in rr]}


def rewards_section(runs: list[RunInfo], compute: bool = True) -> str:
    parts = ["<h2>Reward histograms (chosen vs rejected)</h2>"]
    charts = []
    for run in runs:
        if not _is_rm_run(run):
            continue
        rewards = None
        source = ""
        for name in REWARD_FILES:
            if (run.path / name).is_file():
                rewards = read_reward_file(run.path / name)
                source = name
                break
        if rewards is None and compute:
            rewards = compute_rewards(run)
            source = "scored now from model/ on the eval split"
        if not rewards or not (rewards["chosen"] or rewards["rejected"]):
            why = "no eval rewards file and no model/ to score" if compute else "not scored (--no-score)"
            charts.append(plots.empty_chart(f"{run.name}: rewards", why))
            continue
        gap = _mean(rewards["chosen"]) - _mean(rewards["rejected"])
        title = f"{run.name}: rewards, mean gap {gap:+.3g}"
        charts.append(plots.histogram(rewards, title, f"reward ({source})", bins=20))
    if not charts:
        return "".join(parts) + _note("No reward-model run in this comparison.")
    return "".join(parts) + f'<div class="charts">{"".join(charts)}</div>'


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def find_rater_report(run: RunInfo) -> dict[str, Any] | None:
    for name in RATER_REPORT_FILES:
        p = run.path / name
        if p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("raters"), list):
                return data
    return None


def rater_section(runs: list[RunInfo]) -> str:
    """The raters helper's charts (agreement, gold accuracy vs agreement, position bias) per raters run."""
    from rewardlab.raters.report_html import render_rater_charts

    parts = ["<h2>Raters</h2>"]
    found = False
    for run in runs:
        report = find_rater_report(run)
        if report is None:
            continue
        found = True
        summary = {k: report.get(k) for k in ("alpha", "agreement") if k in report}
        n_flagged = sum(1 for r in report["raters"] if r.get("flagged"))
        parts.append(f"<h3>{escape(run.name)}</h3>")
        parts.append(
            _note(
                f"{len(report['raters'])} raters, {n_flagged} flagged; "
                + ", ".join(f"{k} {format_value(v)}" for k, v in summary.items())
            )
        )
        parts.append(render_rater_charts(report))
    if not found:
        parts.append(_note("No rater report in these runs."))
    return "".join(parts)


def active_learning_section(runs: list[RunInfo]) -> str:
    charts = []
    tables = []
    for run in runs:
        p = run.path / "active_learning.json"
        if not p.is_file():
            continue
        data = json.loads(p.read_text(encoding="utf-8"))
        charts.append(active_learning_chart(data, run.name))
        target = data.get("target_accuracy")
        reach = data.get("labels_to_target") or {}
        if reach:
            rows = [[s, n if n is not None else "not reached"] for s, n in reach.items()]
            tables.append(
                _note(f"labels needed to reach held-out accuracy {target}:")
                + _table(["strategy", "labels"], rows)
            )
    if not charts:
        return ""
    return "<h2>Active learning</h2>" + f'<div class="charts">{"".join(charts)}</div>' + "".join(tables)


def active_learning_chart(data: dict[str, Any], name: str = "") -> str:
    """Labels vs held-out RM accuracy, one line per selection strategy with a +-1 std band over seeds."""
    series, bands = {}, {}
    for strategy, curve in (data.get("strategies") or {}).items():
        labels = curve.get("labels") or []
        mean = curve.get("accuracy_mean") or []
        std = curve.get("accuracy_std") or [0.0] * len(mean)
        series[strategy] = list(zip(labels, mean))
        bands[strategy] = [(x, m - s, m + s) for x, m, s in zip(labels, mean, std)]
    title = "held-out RM accuracy vs labels" + (f" ({name})" if name else "")
    return plots.line_chart(series, title, "labels (pairs rated)", "RM accuracy", bands=bands)


def samples_section(runs: list[RunInfo]) -> str:
    parts = ["<h2>Policy samples</h2>"]
    found = False
    for run in runs:
        p = run.path / "samples.jsonl"
        if not p.is_file():
            continue
        rows = read_jsonl(p, limit=MAX_SAMPLE_ROWS)
        if not rows:
            continue
        found = True
        cols = [c for c in SAMPLE_COLUMNS if any(c in r for r in rows)]
        cols += [c for c in rows[0] if c not in cols and c not in ("meta", "task")][: max(0, 8 - len(cols))]
        text_cols = {n for n, c in enumerate(cols) if c in TEXT_COLUMNS}
        body = [[_short(r.get(c)) if n in text_cols else r.get(c) for n, c in enumerate(cols)] for r in rows]
        parts.append(f"<h3>{escape(run.name)}</h3>" + _table(cols, body, text_cols))
    if not found:
        parts.append(_note("No policy samples (samples.jsonl) in these runs."))
    return "".join(parts)


def batch_section(runs: list[RunInfo]) -> str:
    parts = []
    for run in runs:
        p = run.path / "batch.jsonl"
        if not p.is_file():
            continue
        rows = read_jsonl(p)
        scores = [r.get("meta", {}).get("selection_score") for r in rows]
        head = rows[:MAX_SAMPLE_ROWS]
        body = [
            [
                r.get("id"),
                _short(r.get("prompt"), 200),
                " ||| ".join(_short(x, 160) for x in r.get("responses", [])),
                r.get("meta", {}).get("selection_score"),
            ]
            for r in head
        ]
        strategy = run.config.get("select", "?")
        parts.append(f"<h3>{escape(run.name)}: {len(rows)} items selected by {escape(str(strategy))}</h3>")
        numeric = [s for s in scores if isinstance(s, (int, float))]
        if len(numeric) >= 2:
            parts.append(
                plots.histogram(
                    {"selection score": numeric}, f"{run.name}: selection scores", "score", bins=15
                )
            )
        parts.append(_table(["id", "prompt", "responses", "selection score"], body, {1, 2}))
    if not parts:
        return ""
    return "<h2>Next-round batch for the raters</h2>" + "".join(parts)


def _details(summary: str, inner: str) -> str:
    return f"<details><summary>{escape(summary)}</summary>{inner}</details>"


def _wide(table: str) -> str:
    return f'<div class="wide">{table}</div>'


def summary_section(runs: list[RunInfo]) -> str:
    """Runs, key metrics side by side, every metric per run (folded), config differences per stage."""
    names = [r.name for r in runs]
    rows = [[r.name, r.stage or "?", str(r.path), len(r.history)] for r in runs]
    out = ["<h2>Runs</h2>", _table(["run", "stage", "folder", "steps logged"], rows)]
    metrics = metric_table(runs)
    out.append("<h2>Final metrics</h2>")
    keys = [k for k in KEY_METRICS if k in metrics]
    keys += [k for k in metrics if k not in keys and (k in HIGHER_IS_BETTER or k in LOWER_IS_BETTER)]
    if keys:
        if len(runs) > 1:
            out.append(
                _note(
                    f"Δ: difference to the first run ({runs[0].name}); ★ marks the best run on a metric with a "
                    "known direction (higher accuracy and win rate, lower loss and calibration error)."
                )
            )
        out.append(_wide(_delta_table(keys, metrics, names)))
        out.append(best_runs(runs))
    if not metrics:
        out.append(_note("No run has a metrics.json yet."))
    for run in runs:
        flat = {k: v for k, v in metric_table([run]).items() if v[0] is not None}
        if flat:
            out.append(
                _details(
                    f"all metrics of {run.name} ({len(flat)})",
                    _table(["metric", "value"], [[k, v[0]] for k, v in flat.items()]),
                )
            )
    out.append("<h2>Config differences</h2>")
    out.append(config_section(runs))
    return "".join(out)


def _best_index(key: str, values: list[Any]) -> int | None:
    nums = [(i, v) for i, v in enumerate(values) if _number(v)]
    if len(nums) < 2 or (key not in HIGHER_IS_BETTER and key not in LOWER_IS_BETTER):
        return None
    pick = max if key in HIGHER_IS_BETTER else min
    best = pick(v for _, v in nums)
    winners = [i for i, v in nums if v == best]
    return winners[0] if len(winners) == 1 else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _delta_table(keys: list[str], metrics: dict[str, list[Any]], names: list[str]) -> str:
    """Final metrics side by side; later runs show their difference to the first; the best is starred."""
    out = ["<table><tr><th>metric</th>", *[f"<th>{escape(n)}</th>" for n in names], "</tr>"]
    for key in keys:
        values = metrics[key]
        best = _best_index(key, values)
        out.append(f"<tr><td>{escape(key)}</td>")
        for i, value in enumerate(values):
            text = escape(format_value(value))
            if i and _number(value) and _number(values[0]):
                delta = value - values[0]
                text += (
                    f' <span class="delta">(Δ {"+" if delta >= 0 else "−"}{format_value(abs(delta))})</span>'
                )
            star = ' <span class="best" title="best run">★</span>' if i == best else ""
            cls = "num best-cell" if i == best else ("num" if _number(value) else "")
            out.append(f'<td class="{cls}" data-metric="{escape(key)}">{text}{star}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def best_runs(runs: list[RunInfo]) -> str:
    """Per stage with two or more runs: the best run by the stage's primary metric."""
    by_stage: dict[str, list[RunInfo]] = {}
    for run in runs:
        by_stage.setdefault(run.stage or "?", []).append(run)
    lines = []
    for stage, group in by_stage.items():
        if len(group) < 2:
            continue
        for key in PRIMARY.get(stage, []):
            values = [r.metrics.get(key) for r in group]
            best = _best_index(key, values)
            if best is not None:
                lines.append(
                    f'<li data-best-stage="{escape(stage)}">{escape(stage)}: <b>{escape(group[best].name)}</b> '
                    f"({escape(key)} {escape(format_value(values[best]))}, "
                    f"{'higher' if key in HIGHER_IS_BETTER else 'lower'} is better)</li>"
                )
                break
    return f"<h3>Best run</h3><ul>{''.join(lines)}</ul>" if lines else ""


def config_section(runs: list[RunInfo]) -> str:
    """Differences between runs of the same stage (runs of different stages differ everywhere)."""
    by_stage: dict[str, list[RunInfo]] = {}
    for run in runs:
        by_stage.setdefault(run.stage or "?", []).append(run)
    out = []
    for stage, group in by_stage.items():
        if len(group) < 2:
            continue
        diff = config_diff(group)
        out.append(f"<h3>{escape(stage)} runs</h3>")
        if diff:
            out.append(_wide(_table(["key", *[r.name for r in group]], [[k, *v] for k, v in diff.items()])))
        else:
            out.append(_note("The configs do not differ."))
    if not out:
        out.append(_note("No two runs of the same stage: nothing to compare (each run's config is below)."))
    for run in runs:
        if run.config:
            flat = flatten(run.config)
            out.append(
                _details(f"config of {run.name}", _table(["key", "value"], [[k, v] for k, v in flat.items()]))
            )
    return "".join(out)


def render_report(runs: list[RunInfo], title: str = "rewardlab report", compute: bool = True) -> str:
    """The whole page as one string."""
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [
        f"<h1>{escape(title)}</h1>",
        _note(f"{len(runs)} run(s); generated {stamp} by rewardlab compare"),
        summary_section(runs),
        curves_section(runs),
        rewards_section(runs, compute=compute),
        rater_section(runs),
        active_learning_section(runs),
        samples_section(runs),
        batch_section(runs),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def write_report(
    runs: list[RunInfo], out: str | Path, title: str = "rewardlab report", compute: bool = True
) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(runs, title, compute), encoding="utf-8")
    tmp.replace(path)
    return path
