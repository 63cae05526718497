"""Small inline-SVG charts for the static HTML report: line charts, histograms, bar charts.

Why hand-written SVG: the report must open on an air-gapped machine (no CDN, no JavaScript library), stay a
single file you can mail, and be checkable in a headless browser. Every chart is an ``<svg class="plot">``
carrying ``data-kind``, ``data-series`` and ``data-points`` so a test can tell a drawn chart from an empty one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
WIDTH, HEIGHT = 520, 280
MARGIN = {"left": 58, "right": 16, "top": 30, "bottom": 44}


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^n steps), so axes read like a human drew them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:  # one value: pad around it instead of stretching to 2x
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 12))
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


class _Frame:
    """Maps data coordinates to pixels inside the plot area."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], width: int, height: int, extra_top: int = 0):
        self.xt = nice_ticks(min(xs), max(xs))
        self.yt = nice_ticks(min(ys), max(ys))
        self.x0, self.x1 = self.xt[0], self.xt[-1]
        self.y0, self.y1 = self.yt[0], self.yt[-1]
        self.left, self.top = MARGIN["left"], MARGIN["top"] + extra_top
        self.w = width - MARGIN["left"] - MARGIN["right"]
        self.h = height - MARGIN["top"] - MARGIN["bottom"]

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1.0) * self.w

    def py(self, y: float) -> float:
        return self.top + self.h - (y - self.y0) / ((self.y1 - self.y0) or 1.0) * self.h

    def axes(self, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        out = [
            f'<rect x="{self.left}" y="{self.top}" width="{self.w}" height="{self.h}" class="frame"/>',
        ]
        for t in self.yt:
            y = self.py(t)
            out.append(
                f'<line x1="{self.left}" x2="{self.left + self.w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            )
            out.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        if x_ticks:
            for t in self.xt:
                x = self.px(t)
                out.append(
                    f'<text x="{x:.1f}" y="{self.top + self.h + 16}" text-anchor="middle">{_fmt(t)}</text>'
                )
        out.append(
            f'<text x="{self.left + self.w / 2:.1f}" y="{self.top + self.h + 36}" text-anchor="middle" '
            f'class="label">{escape(x_label)}</text>'
        )
        cy = self.top + self.h / 2
        out.append(
            f'<text x="14" y="{cy:.1f}" text-anchor="middle" class="label" '
            f'transform="rotate(-90 14 {cy:.1f})">{escape(y_label)}</text>'
        )
        return out


def _svg(
    kind: str, title: str, body: list[str], n_series: int, n_points: int, width: int, height: int
) -> str:
    head = (
        f'<svg class="plot" data-kind="{kind}" data-series="{n_series}" data-points="{n_points}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    )
    shown = title if len(title) <= width // 8 else title[: width // 8 - 3] + "..."  # bold 13px: ~8 px a char
    title_el = f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" class="title">{escape(shown)}</text>'
    return "".join([head, f"<title>{escape(title)}</title>", title_el, *body, "</svg>"])


def _legend(names: list[str], width: int) -> tuple[list[str], int]:
    """A legend laid out in rows under the title, so it never covers the data; returns (svg, height)."""
    out = []
    x, row = MARGIN["left"], 0
    for n, name in enumerate(names):
        label = name if len(name) <= 40 else name[:37] + "..."
        item_w = 22 + 7 * len(label)
        if x + item_w > width - MARGIN["right"] and x > MARGIN["left"]:
            x, row = MARGIN["left"], row + 1
        y = 36 + 14 * row
        color = PALETTE[n % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{y}" class="legend">{escape(label)}</text>')
        x += item_w
    return out, 14 * (row + 1) + 10


def empty_chart(title: str, reason: str, width: int = WIDTH, height: int = 80) -> str:
    """A placeholder that says why a chart is missing (data-points="0"), instead of leaving a hole."""
    body = [f'<text x="{width / 2:.0f}" y="48" text-anchor="middle" class="note">{escape(reason)}</text>']
    return _svg("empty", title, body, 0, 0, width, height)


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str = "step",
    y_label: str = "",
    bands: dict[str, Sequence[tuple[float, float, float]]] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """One polyline per series (points with a non-finite value are skipped); optional (x, lo, hi) bands."""
    clean = {k: [(x, y) for x, y in pts if _finite(x) and _finite(y)] for k, pts in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    if not clean:
        return empty_chart(title, "no data")
    bands = bands or {}
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    for pts in bands.values():
        ys += [v for _, lo, hi in pts for v in (lo, hi) if _finite(v)]
    legend, lh = _legend(list(clean), width) if len(clean) > 1 or bands else ([], 0)
    frame = _Frame(xs, ys, width, height, lh)
    body = frame.axes(x_label, y_label)
    total = 0
    for n, (name, pts) in enumerate(clean.items()):
        color = PALETTE[n % len(PALETTE)]
        band = [(x, lo, hi) for x, lo, hi in bands.get(name, []) if _finite(lo) and _finite(hi)]
        if len(band) >= 2:
            upper = " ".join(f"{frame.px(x):.1f},{frame.py(hi):.1f}" for x, _, hi in band)
            lower = " ".join(f"{frame.px(x):.1f},{frame.py(lo):.1f}" for x, lo, _ in reversed(band))
            body.append(f'<polygon points="{upper} {lower}" fill="{color}" opacity="0.15" class="band"/>')
        coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in pts)
        body.append(
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2" class="series" '
            f'data-name="{escape(name)}" data-n="{len(pts)}"/>'
        )
        if len(pts) <= 30:
            for x, y in pts:
                body.append(
                    f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.5" fill="{color}">'
                    f"<title>{escape(name)}: ({_fmt(x)}, {_fmt(y)})</title></circle>"
                )
        total += len(pts)
    return _svg("line", title, body + legend, len(clean), total, width, height + lh)


def histogram(
    groups: dict[str, Sequence[float]],
    title: str,
    x_label: str = "value",
    bins: int = 20,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Overlaid histograms on shared bins (e.g. rewards of chosen vs rejected answers)."""
    clean = {k: [float(v) for v in vals if _finite(v)] for k, vals in groups.items()}
    clean = {k: v for k, v in clean.items() if v}
    if not clean:
        return empty_chart(title, "no data")
    lo = min(min(v) for v in clean.values())
    hi = max(max(v) for v in clean.values())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    counts = {}
    for name, vals in clean.items():
        c = [0] * bins
        for v in vals:
            c[min(int((v - lo) / step), bins - 1)] += 1
        counts[name] = c
    top = max(max(c) for c in counts.values())
    legend, lh = _legend([f"{k} (n={len(v)})" for k, v in clean.items()], width)
    frame = _Frame([lo, hi], [0, max(top, 4)], width, height, lh)
    body = frame.axes(x_label, "count")
    for n, (name, c) in enumerate(counts.items()):
        color = PALETTE[n % len(PALETTE)]
        for b, count in enumerate(c):
            if count == 0:
                continue
            x0, x1 = frame.px(lo + b * step), frame.px(lo + (b + 1) * step)
            y = frame.py(count)
            body.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                f'height="{frame.py(0) - y:.1f}" fill="{color}" opacity="0.55" class="bar" '
                f'data-name="{escape(name)}" data-count="{count}"><title>{escape(name)}: {count} in '
                f"[{_fmt(lo + b * step)}, {_fmt(lo + (b + 1) * step)})</title></rect>"
            )
    n_points = sum(len(v) for v in clean.values())
    return _svg("histogram", title, body + legend, len(clean), n_points, width, height + lh)


def bar_chart(
    values: dict[str, float],
    title: str,
    y_label: str = "",
    highlight: set[str] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Vertical bars, one per label (highlighted ones in red: e.g. flagged raters)."""
    clean = {k: float(v) for k, v in values.items() if _finite(v)}
    if not clean:
        return empty_chart(title, "no data")
    highlight = highlight or set()
    frame = _Frame([0, len(clean)], [min(0.0, *clean.values()), max(0.0, *clean.values())], width, height)
    body = frame.axes("", y_label, x_ticks=False)
    slot = frame.w / len(clean)
    for n, (name, v) in enumerate(clean.items()):
        color = PALETTE[1] if name in highlight else PALETTE[0]
        x = frame.left + n * slot + slot * 0.15
        y_top, y_base = frame.py(max(v, 0.0)), frame.py(min(v, 0.0))
        body.append(
            f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{slot * 0.7:.1f}" height="{max(y_base - y_top, 0.5):.1f}" '
            f'fill="{color}" class="bar" data-name="{escape(name)}" data-value="{v:.6g}">'
            f"<title>{escape(name)}: {_fmt(v)}</title></rect>"
        )
        if len(clean) <= 24:
            cx = frame.left + (n + 0.5) * slot
            body.append(
                f'<text x="{cx:.1f}" y="{frame.top + frame.h + 14}" text-anchor="end" class="tick" '
                f'transform="rotate(-35 {cx:.1f} {frame.top + frame.h + 14})">{escape(name[:14])}</text>'
            )
    return _svg("bar", title, body, 1, len(clean), width, height)
