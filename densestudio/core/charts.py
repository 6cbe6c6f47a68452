"""Small inline-SVG charts for self-contained HTML (the validation report): line charts with
optional shaded bands, reference lines and a legend. No plotting library, no fonts or files
to load: the SVG text uses the page's font and prints sharply to PDF.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np

PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f7f7f")


@dataclass(frozen=True)
class Series:
    name: str
    xs: Sequence[float] | np.ndarray  # a list or a numpy array of x values
    ys: Sequence[float | None]  # None / NaN: a gap
    color: str | None = None
    dashed: bool = False
    band: tuple[Sequence[float], Sequence[float]] | None = None  # (low, high) per x, shaded
    points: bool = False  # draw markers (few points, e.g. calibration bins)


@dataclass(frozen=True)
class RefLine:
    """A labelled vertical (``x``) or horizontal (``y``) reference line."""

    label: str
    x: float | None = None
    y: float | None = None
    color: str = "#444444"


@dataclass(frozen=True)
class Chart:
    title: str
    series: tuple[Series, ...]
    x_label: str = ""
    y_label: str = ""
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    refs: tuple[RefLine, ...] = field(default=())
    percent_y: bool = False  # tick labels as percentages
    integer_x: bool = False  # x ticks on whole numbers only (epochs)
    width: int = 640
    height: int = 300


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _fmt(v: float, percent: bool) -> str:
    if percent:
        return f"{v * 100:g} %"
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def render(chart: Chart) -> str:
    """The chart as an ``<svg>`` element (scales with the page width)."""
    w, h = chart.width, chart.height
    left, right, top, bottom = 62, 16, 30, 46
    legend_rows = math.ceil(len(chart.series) / 3)
    bottom += 16 * legend_rows
    pw, ph = w - left - right, h - top - bottom
    xs = [float(x) for s in chart.series for x in s.xs]
    ys = [v for s in chart.series for v in _finite(s.ys)]
    for s in chart.series:
        if s.band:
            ys += _finite(s.band[0]) + _finite(s.band[1])
    x0, x1 = chart.x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    y0, y1 = chart.y_range or ((min(ys), max(ys)) if ys else (0.0, 1.0))
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" '
           f'role="img" aria-label="{escape(chart.title)}">',
           f'<text x="{left}" y="18" class="chart-title">{escape(chart.title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" '
           'stroke="#cccccc"/>']
    for t in nice_ticks(y0, y1):
        if y0 - 1e-12 <= t <= y1 + 1e-12:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                       'stroke="#e2e2e2"/>')
            out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" '
                       f'class="tick">{_fmt(t, chart.percent_y)}</text>')
    for t in nice_ticks(x0, x1, 6):
        if chart.integer_x and t != int(t):
            continue
        if x0 - 1e-12 <= t <= x1 + 1e-12:
            out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" '
                       'stroke="#eeeeee"/>')
            out.append(f'<text x="{px(t):.1f}" y="{top + ph + 16}" text-anchor="middle" '
                       f'class="tick">{_fmt(t, False)}</text>')
    if chart.x_label:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 32}" text-anchor="middle" '
                   f'class="axis">{escape(chart.x_label)}</text>')
    if chart.y_label:
        out.append(f'<text transform="translate(14,{top + ph / 2:.1f}) rotate(-90)" '
                   f'text-anchor="middle" class="axis">{escape(chart.y_label)}</text>')
    for i, s in enumerate(chart.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        if s.band:
            lo, hi = s.band
            pts = [(x, a, b) for x, a, b in zip(s.xs, lo, hi, strict=False)
                   if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
            if pts:
                upper = " ".join(f"{px(x):.1f},{py(min(max(b, y0), y1)):.1f}" for x, _, b in pts)
                lower = " ".join(f"{px(x):.1f},{py(min(max(a, y0), y1)):.1f}"
                                 for x, a, _ in reversed(pts))
                out.append(f'<polygon points="{upper} {lower}" fill="{color}" '
                           'fill-opacity="0.15" stroke="none"/>')
        for segment in _segments(s.xs, s.ys):
            coords = " ".join(f"{px(x):.1f},{py(min(max(y, y0), y1)):.1f}" for x, y in segment)
            dash = ' stroke-dasharray="5,4"' if s.dashed else ""
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" '
                       f'stroke-width="2"{dash}/>')
            if s.points:
                out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>'
                        for x, y in segment]
    for ref in chart.refs:
        if ref.x is not None and x0 <= ref.x <= x1:
            out.append(f'<line x1="{px(ref.x):.1f}" x2="{px(ref.x):.1f}" y1="{top}" '
                       f'y2="{top + ph}" stroke="{ref.color}" stroke-dasharray="3,3"/>')
            near_right = px(ref.x) > left + pw * 0.7
            anchor = ' text-anchor="end"' if near_right else ""
            tx = px(ref.x) - 4 if near_right else px(ref.x) + 4
            out.append(f'<text x="{tx:.1f}" y="{top + 12}" class="ref"{anchor}>'
                       f'{escape(ref.label)}</text>')
        if ref.y is not None and y0 <= ref.y <= y1:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(ref.y):.1f}" '
                       f'y2="{py(ref.y):.1f}" stroke="{ref.color}" stroke-dasharray="3,3"/>')
            out.append(f'<text x="{left + pw - 4}" y="{py(ref.y) - 4:.1f}" text-anchor="end" '
                       f'class="ref">{escape(ref.label)}</text>')
    ly = top + ph + 44
    for i, s in enumerate(chart.series):
        color = s.color or PALETTE[i % len(PALETTE)]
        lx = left + (i % 3) * (pw / 3)
        row_y = ly + (i // 3) * 16
        dash = ' stroke-dasharray="5,4"' if s.dashed else ""
        out.append(f'<line x1="{lx:.1f}" x2="{lx + 22:.1f}" y1="{row_y - 4}" y2="{row_y - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 28:.1f}" y="{row_y}" class="legend">{escape(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _segments(xs: Iterable[float], ys: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """Runs of finite points (a None/NaN breaks the line)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=False):
        if y is None or not math.isfinite(float(y)):
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((float(x), float(y)))
    return [s for s in segments if s]


@dataclass(frozen=True)
class ForestRow:
    label: str
    estimate: float
    low: float
    high: float
    note: str = ""  # e.g. "9 of 10"


def forest(title: str, rows: Sequence[ForestRow], width: int = 640,
           color: str = PALETTE[0]) -> str:
    """Estimates with interval whiskers, one row each, on a 0-100 % axis (per-class recall)."""
    row_h, top, bottom, label_w, note_w = 22, 30, 30, 170, 90
    h = top + bottom + row_h * max(1, len(rows))
    pw = width - label_w - note_w - 16

    def px(v: float) -> float:
        return label_w + min(max(v, 0.0), 1.0) * pw

    out = [f'<svg class="chart" viewBox="0 0 {width} {h}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<text x="8" y="18" class="chart-title">{escape(title)}</text>']
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" '
                   f'y2="{h - bottom}" stroke="#e2e2e2"/>')
        out.append(f'<text x="{px(t):.1f}" y="{h - bottom + 16}" text-anchor="middle" '
                   f'class="tick">{t * 100:g} %</text>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        label = r.label if len(r.label) <= 24 else r.label[:23] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="legend">{escape(label)}</text>')
        out.append(f'<line x1="{px(r.low):.1f}" x2="{px(r.high):.1f}" y1="{y:.1f}" '
                   f'y2="{y:.1f}" stroke="{color}" stroke-width="3" stroke-opacity="0.45"/>')
        for v in (r.low, r.high):
            out.append(f'<line x1="{px(v):.1f}" x2="{px(v):.1f}" y1="{y - 5:.1f}" '
                       f'y2="{y + 5:.1f}" stroke="{color}"/>')
        out.append(f'<circle cx="{px(r.estimate):.1f}" cy="{y:.1f}" r="4.5" fill="{color}"/>')
        out.append(f'<text x="{label_w + pw + 10}" y="{y + 4:.1f}" class="tick">'
                   f'{r.estimate * 100:.1f} % {escape(r.note)}</text>')
    out.append("</svg>")
    return "\n".join(out)
