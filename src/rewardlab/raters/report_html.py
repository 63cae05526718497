"""The rater report as one self-contained HTML page: inline SVG charts drawn here, no script, no network.

``render_rater_charts(report)`` returns just the charts (an HTML fragment with its own scoped style) so the
run-comparison report can embed them; ``render_report_html(report)`` wraps them with the summary, the
per-rater table and the flags into a page.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

W, H = 460, 260
PAD_L, PAD_R, PAD_T, PAD_B = 48, 14, 30, 44
RED, BLUE, GREY, BAND = "#c0392b", "#2f6db5", "#888", "#e8f0e0"

STYLE = """
<style>
.rl-raters svg{font:11px sans-serif;background:#fff;border:1px solid #ddd;margin:0 12px 12px 0}
.rl-raters .rl-charts{display:flex;flex-wrap:wrap}
.rl-raters .rl-legend{font:12px sans-serif;color:#555;margin:4px 0 10px}
</style>
"""


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _sx(v: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return PAD_L + (v - lo) / (hi - lo) * (W - PAD_L - PAD_R)


def _sy(v: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return H - PAD_B - (v - lo) / (hi - lo) * (H - PAD_T - PAD_B)


def _frame(
    title: str,
    xlabel: str,
    ylabel: str,
    body: list[str],
    y_hi: float = 1.0,
    x_ticks: bool = True,
    aria: str = "",
) -> str:
    """Axes from 0 to 1 on x (when ``x_ticks``) and 0 to ``y_hi`` on y, around the chart's own shapes."""
    out = [
        f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(aria or title)}">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#333"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#333"/>',
        f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 8}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="12" y="{(PAD_T + H - PAD_B) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2})">{escape(ylabel)}</text>',
    ]
    for n in range(5):
        v = y_hi * n / 4
        y = _sy(v, 0, y_hi)
        label = f"{v:.2f}" if y_hi <= 1 else f"{v:.0f}"
        out.append(f'<line x1="{PAD_L - 4}" y1="{y:.1f}" x2="{PAD_L}" y2="{y:.1f}" stroke="#333"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    if x_ticks:
        for n in range(6):
            v = n / 5
            x = _sx(v)
            out.append(
                f'<line x1="{x:.1f}" y1="{H - PAD_B}" x2="{x:.1f}" y2="{H - PAD_B + 4}" stroke="#333"/>'
            )
            out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 16}" text-anchor="middle">{v:.1f}</text>')
    return "".join(out + body + ["</svg>"])


def _empty(title: str, reason: str) -> str:
    return (
        f'<svg width="{W}" height="80" viewBox="0 0 {W} 80" role="img" '
        f'aria-label="{escape(title)}"><text x="{W / 2}" y="24" text-anchor="middle" font-weight="bold">'
        f'{escape(title)}</text><text x="{W / 2}" y="52" text-anchor="middle" fill="{GREY}">{escape(reason)}</text></svg>'
    )


def _vline(x: float, color: str, label: str) -> str:
    px = _sx(x)
    return (
        f'<line x1="{px:.1f}" y1="{PAD_T}" x2="{px:.1f}" y2="{H - PAD_B}" stroke="{color}" stroke-dasharray="4 3"/>'
        f'<text x="{px + 3:.1f}" y="{PAD_T + 10}" fill="{color}">{escape(label)}</text>'
    )


def agreement_histogram(report: dict[str, Any], bins: int = 20) -> str:
    """Raters per agreement bin, the published 0.63-0.77 band shaded, the flagging threshold dashed."""
    title = "Agreement with the leave-one-out consensus"
    values = [r["agreement"] for r in report.get("raters", []) if _num(r.get("agreement"))]
    if not values:
        return _empty(title, "no comparison was judged by two raters")
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    y_hi = float(4 * math.ceil(max(counts) / 4))  # quarter ticks land on whole raters
    body = []
    pub = report.get("published_agreement") or {}
    if _num(pub.get("low")) and _num(pub.get("high")):
        x0, x1 = _sx(pub["low"]), _sx(pub["high"])
        body.append(
            f'<rect x="{x0:.1f}" y="{PAD_T}" width="{x1 - x0:.1f}" height="{H - PAD_T - PAD_B}" fill="{BAND}">'
            f"<title>published campaigns: {pub['low']}-{pub['high']}</title></rect>"
        )
    for n, c in enumerate(counts):
        if not c:
            continue
        x0, x1 = _sx(n / bins), _sx((n + 1) / bins)
        y = _sy(c, 0, y_hi)
        body.append(
            f'<rect x="{x0 + 1:.1f}" y="{y:.1f}" width="{x1 - x0 - 2:.1f}" height="{H - PAD_B - y:.1f}" '
            f'fill="{BLUE}"><title>{n / bins:.2f}-{(n + 1) / bins:.2f}: {c} rater(s)</title></rect>'
        )
    thr = (report.get("thresholds") or {}).get("min_agreement")
    if _num(thr):
        body.append(_vline(thr, RED, f"min {thr}"))
    return _frame(title, "agreement (shaded: published 0.63-0.77)", "raters", body, y_hi=y_hi)


def gold_vs_agreement(report: dict[str, Any]) -> str:
    """One dot per rater with both numbers: careless raters sit low-left; flagged ones in red."""
    title = "Gold accuracy vs agreement, per rater"
    points = [
        r for r in report.get("raters", []) if _num(r.get("agreement")) and _num(r.get("gold_accuracy"))
    ]
    if not points:
        return _empty(title, "needs gold items and overlapping judgments")
    body = []
    t = report.get("thresholds") or {}
    if _num(t.get("min_gold_accuracy")):
        y = _sy(t["min_gold_accuracy"])
        body.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="{RED}" stroke-dasharray="4 3"/>'
        )
    if _num(t.get("min_agreement")):
        body.append(_vline(t["min_agreement"], RED, ""))
    for r in points:
        x, y = _sx(r["agreement"]), _sy(r["gold_accuracy"])
        color = RED if r.get("flagged") else BLUE
        tip = f"{r['rater']}: agreement {r['agreement']:.2f}, gold {r['gold_accuracy']:.2f} on {r.get('gold_items')} items"
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}" fill-opacity="0.75">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return _frame(title, "agreement with consensus", "gold accuracy", body)


def position_bias_bars(report: dict[str, Any]) -> str:
    """Share of pairs in which each rater picked the first-listed response; 0.5 is no bias."""
    title = "Position bias per rater (share picking the first-listed)"
    raters = [r for r in report.get("raters", []) if _num(r.get("position_bias"))]
    if not raters:
        return _empty(title, "no decided pairs")
    raters = sorted(raters, key=lambda r: -r["position_bias"])
    n = len(raters)
    span = W - PAD_L - PAD_R
    step = span / n
    body = []
    for i, r in enumerate(raters):
        x = PAD_L + i * step
        y = _sy(r["position_bias"])
        color = RED if r.get("flagged") else BLUE
        tip = f"{r['rater']}: {r['position_bias']:.2f}"
        body.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{max(step * 0.8, 0.5):.1f}" '
            f'height="{H - PAD_B - y:.1f}" fill="{color}"><title>{escape(tip)}</title></rect>'
        )
        if n <= 30:
            lx = x + step / 2
            body.append(
                f'<text x="{lx:.1f}" y="{H - PAD_B + 12}" text-anchor="end" font-size="9" '
                f'transform="rotate(-45 {lx:.1f} {H - PAD_B + 12})">{escape(str(r["rater"]))}</text>'
            )
    y = _sy(0.5)
    body.append(
        f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="{GREY}" stroke-dasharray="2 2"/>'
    )
    thr = (report.get("thresholds") or {}).get("max_position_bias")
    if _num(thr):
        y = _sy(thr)
        body.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="{RED}" stroke-dasharray="4 3"/>'
        )
    return _frame(title, "raters (red: flagged)", "position bias", body, x_ticks=False)


def render_rater_charts(report: dict[str, Any]) -> str:
    """The three rater charts as an HTML fragment (inline SVG, scoped style): for embedding in other pages."""
    charts = [agreement_histogram(report), gold_vs_agreement(report), position_bias_bars(report)]
    return (
        f'<div class="rl-raters">{STYLE}<div class="rl-charts">{"".join(charts)}</div>'
        '<div class="rl-legend">Blue: kept raters; red: flagged. Dashed red lines: the flagging thresholds.</div></div>'
    )


def _cell(v: Any) -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list) and len(v) == 2 and all(_num(x) for x in v):  # an interval
        return f"{v[0]:.2f}&ndash;{v[1]:.2f}"
    if isinstance(v, list):
        return escape(", ".join(str(x) for x in v))
    return escape(str(v))


COLUMNS = [
    ("rater", "rater"),
    ("items", "items"),
    ("agreement", "agreement"),
    ("gold_accuracy", "gold acc."),
    ("gold_ci", "gold 95% CI"),
    ("gold_items", "gold items"),
    ("position_bias", "position bias"),
    ("tie_rate", "tie rate"),
    ("median_time_s", "median s"),
    ("reliability", "reliability (DS)"),
    ("nbt_skill", "NoisyBT skill"),
    ("rubric_reliability", "rubric (DS)"),
    ("evidence", "flags (estimate, interval, n)"),
    ("insufficient_evidence", "insufficient evidence (+ more to decide)"),
]


def _evidence(items: list[dict[str, Any]]) -> str:
    """Each flag or undecided rule with its numbers, the rule itself as a tooltip."""
    out = []
    for e in items:
        lo, hi = e["interval"]
        text = f"{e['code']} {e['estimate']:.2f} [{lo:.2f}, {hi:.2f}] n={e['n']}"
        if e["decision"] == "insufficient_evidence":
            if e.get("suspended"):
                text += f" ({e['suspended']})"
            else:
                text += f" +{e['more_needed']}" if e.get("more_needed") is not None else " (undecidable)"
        out.append(f'<span title="{escape(e["rule"])}">{escape(text)}</span>')
    return "<br>".join(out) or "&ndash;"


def consensus_line(check: dict[str, Any] | None) -> str:
    """The guard on low_agreement in one line (plain text): the consensus's gold accuracy, interval, n and
    the rule; the terminal report prints the same line."""
    if not check or not check.get("n"):
        return "Consensus behind low_agreement: unchecked (no gold comparison with two or more votes)."
    lo, hi = check["interval"]
    state = "low_agreement flags suspended" if check["suspended"] else "low_agreement flags stand"
    return (
        f"Consensus behind low_agreement: gold accuracy {check['accuracy']:.2f} [{lo:.2f}, {hi:.2f}] on "
        f"{check['n']} {check['unit']}: {state} ({check['rule']})."
    )


def render_report_html(report: dict[str, Any], title: str = "Rater quality report") -> str:
    """The whole page: summary against published agreement, charts, the per-rater table, notes."""
    pub = report.get("published_agreement") or {}
    agreement = report.get("agreement")
    where = ""
    if _num(agreement) and _num(pub.get("low")):
        where = "below" if agreement < pub["low"] else ("within" if agreement <= pub["high"] else "above")
        where = f" ({where} the {pub['low']}-{pub['high']} published range)"
    summary = [
        f"{report.get('judgments', 0)} judgments of {report.get('groups', 0)} comparisons by "
        f"{len(report.get('raters', []))} raters; {report.get('gold_records', 0)} gold references.",
        f"Pairwise percent agreement: {_cell(agreement)}{where}; after removing flagged raters: "
        f"{_cell(report.get('agreement_without_flagged'))}.",
        f"Krippendorff's alpha ({escape(str(report.get('alpha_method')))}): {_cell(report.get('alpha'))}; "
        f"nominal: {_cell(report.get('alpha_nominal'))}.",
        f"Flagged: {len(report.get('flagged', []))} rater(s): {escape(', '.join(map(str, report.get('flagged', [])))) or 'none'}.",
    ]
    summary.append(escape(consensus_line(report.get("consensus_check"))))
    head = "".join(f"<th>{escape(label)}</th>" for _, label in COLUMNS)
    rows = []
    for r in report.get("raters", []):
        cls = ' class="flagged"' if r.get("flagged") else ""
        cells = [
            _evidence(r.get(key) or []) if key in ("evidence", "insufficient_evidence") else _cell(r.get(key))
            for key, _ in COLUMNS
        ]
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.get("notes", []))
    thresholds = ", ".join(f"{k} {v}" for k, v in (report.get("thresholds") or {}).items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body{{font:14px/1.4 sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;font-size:12px}} th,td{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
td:first-child,td:last-child{{text-align:left}} tr.flagged{{background:#fbe9e7}}
</style></head><body>
<h1>{escape(title)}</h1>
<p>{"<br>".join(summary)}</p>
{render_rater_charts(report)}
<h2>Raters</h2>
<p>Thresholds: {escape(thresholds)}. A rater is flagged on a rule only when the rule's Wilson interval at
the stated confidence lies wholly on the wrong side of its threshold and its minimum n is reached; hover a flag
for its rule.</p>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""
