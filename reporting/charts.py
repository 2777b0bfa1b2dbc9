"""Small charts as inline SVG, for pages that must read offline (no script, no CDN).

The model card and the reports index draw with these: a trend over time
(`trend_chart`), a curve on the unit square (`curve_chart`, e.g. calibration), and
signed horizontal bars (`bar_chart`, e.g. feature importances or contributions).
Every chart carries a <title> (read by screen readers, shown on hover) and says which
way is bad where a direction exists, so a reader never has to guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Literal

Better = Literal["higher", "lower"]

FONT = 'font-family="system-ui, sans-serif" font-size="11"'
LINE = "#1f5fa8"
BAD = "#b00020"
GRID = "#ddd"


def _num(value: float) -> str:
    return f"{value:.1f}"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _svg(width: int, height: int, title: str, body: str) -> str:
    label = escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{label}"><title>{label}</title>{body}</svg>')


# How wide a text is drawn at FONT's 11 px (DejaVu Sans, what system-ui is on Debian; the
# other sans fonts are narrower): enough room for tick labels and captions, never clipped.
_NARROW, _WIDE = set(".,:;'!|il ()[]"), set("%mwMW@")


def text_width(text: str, *, bold: bool = False, size: float = 11.0) -> float:
    """An upper estimate of `text`'s width in px at `size` px."""
    ems = sum(0.36 if c in _NARROW else 1.0 if c in _WIDE else 0.66 for c in text)
    return ems * size * (1.1 if bold else 1.0)


Scale = Literal["data", "unit", "share", "from_zero"]


def _step(span: float, intervals: int = 3) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) cutting `span` in about
    `intervals` (2 to 5) parts."""
    raw = span / intervals
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)


def y_axis(values: Sequence[float], scale: Scale = "data",
           fixed: tuple[float, float] | None = None) -> tuple[float, float, list[float]]:
    """(low, high, ticks) of a value axis from the metric's own range.

    "share": a share or rate, 0 to 1 (100%) whatever the values; "unit": a figure bounded
    by [0, 1] (an AUC): the values' range, padded to round ticks, kept within [0, 1];
    "from_zero": a figure that is never negative (an error, a volume): 0 to a round value
    above the largest; "data": the values' range padded to round ticks.  A flat series
    gets a span of its own size (a tenth of its value), never a fixed one in raw units.
    `fixed`: the axis is given; only its ticks are chosen.  At least three round ticks.
    """
    known = [v for v in values if math.isfinite(v)]
    if fixed is not None or scale == "share":
        low, high = fixed if fixed is not None else (0.0, 1.0)
        if not high > low:
            raise ValueError(f"empty axis range {fixed}")
        step = _step(high - low, 4)
        first = math.ceil(low / step - 1e-9)
        ticks = [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]
        return low, high, ticks
    bounds = (0.0, 1.0) if scale == "unit" else (0.0, math.inf) if scale == "from_zero" else (
        -math.inf, math.inf)
    if not known:
        return y_axis([], fixed=(0.0, 1.0))
    low, high = min(known), max(known)
    if scale == "from_zero":
        low = 0.0
    span = high - low
    if span <= 1e-12 * max(1.0, abs(high)):
        # Flat: a span of a tenth of the value (0.05 for a figure within [0, 1]).
        half = 0.05 if scale == "unit" else (abs(high) * 0.1 or 1.0)
        low, high = low - half, high + half
    else:
        low, high = low - span * 0.08, high + span * 0.08
    if scale == "from_zero":
        low = 0.0
    low, high = max(low, bounds[0]), min(high, bounds[1])
    step = _step(high - low)
    low = max(round(math.floor(low / step + 1e-9) * step, 12), bounds[0])
    high = min(round(math.ceil(high / step - 1e-9) * step, 12), bounds[1])
    ticks = [round(low + i * step, 12) for i in range(round((high - low) / step) + 1)]
    return low, high, ticks


def tick_text(value: float, ticks: Sequence[float], percent: bool = False) -> str:
    """A tick's label, with as many decimals as the ticks' step needs (all alike)."""
    scale = 100.0 if percent else 1.0
    step = (min(b - a for a, b in zip(ticks, ticks[1:], strict=False))
            if len(ticks) > 1 else abs(value) or 1.0) * scale
    decimals = next((d for d in range(0, 7)
                     if abs(step * 10 ** d - round(step * 10 ** d)) < 1e-6 * 10 ** d), 6)
    shown = value * scale
    if abs(shown) < 0.5 * 10 ** -decimals:
        shown = 0.0  # never "-0"
    return f"{shown:,.{decimals}f}" + ("%" if percent else "")


def trend_chart(values: Sequence[float | None], labels: Sequence[str], *, title: str,
                better: Better | None = None, limit: float | None = None,
                limit_label: str = "", y_range: tuple[float, float] | None = None,
                scale: Scale = "data", fmt: str = "{:.2f}",
                axis_labels: Sequence[str] | None = None,
                width: int = 300, height: int = 130) -> str:
    """A line over time: one point per label (oldest first); None leaves a gap.

    `better` says which way is good ("higher": a fall is bad); `limit` draws the alarm's
    line and points on its bad side are drawn red, as the alarms read their limits: with
    "higher" a point below it is bad (a floor), with "lower" a point at or above it (a
    threshold the alarm rises at).  The value axis comes from the metric's own range
    (`scale`, see `y_axis`; `y_range` fixes it), the limit included; its ticks are in the
    values' unit, as percentages when `fmt` formats them so.  `labels` name each point
    (its tooltip); `axis_labels`, the texts under the first and last point (default: their
    labels).  The plot area is the rect.plot: every point is drawn inside it.
    """
    if len(values) != len(labels):
        raise ValueError("one label per value")
    percent = fmt.endswith("%}")
    known: list[float] = [v for v in values if _finite(v)]  # type: ignore[misc]
    # The limit is always on the axis; with no data yet, a figure within [0, 1] shows it
    # all (an AUC floor alone would make a span of a tenth around it).
    drawn = known + ([limit] if _finite(limit) and (known or scale != "unit") else [])  # type: ignore[list-item]
    low, high, ticks = y_axis(drawn, scale, y_range)
    tick_labels = [tick_text(t, ticks, percent) for t in ticks]
    caption = title + {"higher": " (higher is better)", "lower": " (lower is better)",
                       None: ""}[better]
    left = math.ceil(max(text_width(t) for t in tick_labels)) + 8
    right, top, bottom = 10, 22, 22
    width = max(width, math.ceil(text_width(caption, bold=True)) + 4)
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<text x="2" y="13" {FONT} font-weight="600">{escape(caption)}</text>',
             f'<rect class="plot" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
             f'fill="none" stroke="{GRID}"/>']

    def x_at(i: int) -> float:
        return left + (plot_w * i / (len(values) - 1) if len(values) > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        clipped = min(max(v, low), high)
        return top + plot_h * (1 - (clipped - low) / (high - low))

    for tick, text in zip(ticks, tick_labels, strict=True):
        y = y_at(tick)
        parts.append(f'<line class="tick" x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" '
                     f'y2="{_num(y)}" stroke="{GRID}"/>')
        parts.append(f'<text class="tick" x="{left - 4}" y="{_num(y + 4)}" text-anchor="end" '
                     f'{FONT}>{escape(text)}</text>')
    if _finite(limit):
        y = y_at(limit)  # type: ignore[arg-type]
        parts.append(f'<line class="limit" x1="{left}" x2="{left + plot_w}" y1="{_num(y)}" '
                     f'y2="{_num(y)}" stroke="{BAD}" stroke-dasharray="4 3"/>')
        if limit_label:
            # Above the line, or below it when the line runs along the plot's top.
            label_y = y - 3 if y - top >= 12 else y + 12
            parts.append(f'<text class="limit" x="{left + plot_w - 2}" y="{_num(label_y)}" '
                         f'text-anchor="end" {FONT} fill="{BAD}" paint-order="stroke" '
                         f'stroke="#fff" stroke-width="3">{escape(limit_label)}</text>')
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, value in enumerate(values):
        if _finite(value):
            segment.append(f"{_num(x_at(i))},{_num(y_at(value))}")  # type: ignore[arg-type]
        elif segment:
            segments.append(segment)
            segment = []
    if segment:
        segments.append(segment)
    for points in segments:
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="1.5" '
                         f'points="{" ".join(points)}"/>')
    for i, value in enumerate(values):
        if not _finite(value):
            continue
        bad = limit is not None and better is not None and (
            value < limit if better == "higher" else value >= limit)  # type: ignore[operator]
        tip = escape(f"{labels[i]}: {fmt.format(value)}")
        parts.append(f'<circle class="point{" bad" if bad else ""}" cx="{_num(x_at(i))}" '
                     f'cy="{_num(y_at(value))}" r="3" fill="{BAD if bad else LINE}">'  # type: ignore[arg-type]
                     f'<title>{tip}</title></circle>')
    if not known:
        parts.append(f'<text x="{_num(left + plot_w / 2)}" y="{_num(top + plot_h / 2 + 4)}" '
                     f'text-anchor="middle" {FONT} fill="#777">no data yet</text>')
    under = list(axis_labels if axis_labels is not None else labels)
    if len(under) == 1 or (len(under) > 1 and len(values) == 1):
        parts.append(f'<text class="axis" x="{_num(x_at(0))}" y="{height - 6}" '
                     f'text-anchor="middle" {FONT} fill="#555">{escape(under[0])}</text>')
    elif len(under) > 1:
        parts.append(f'<text class="axis" x="{left}" y="{height - 6}" {FONT} fill="#555">'
                     f'{escape(under[0])}</text>')
        parts.append(f'<text class="axis" x="{left + plot_w}" y="{height - 6}" '
                     f'text-anchor="end" {FONT} fill="#555">{escape(under[-1])}</text>')
    return _svg(width, height, caption, "".join(parts))


def curve_chart(points: Sequence[tuple[float, float]], *, title: str, x_label: str,
                y_label: str, diagonal: bool = True, size: int = 260) -> str:
    """Points on the unit square joined by a line (a calibration or ROC curve), with the
    diagonal a perfect calibration (or a coin) would follow."""
    left, bottom, top, right = 40, 34, 22, 10
    plot = size - left - right
    height = top + plot + bottom

    def at(x: float, y: float) -> str:
        return f"{_num(left + plot * x)},{_num(top + plot * (1 - y))}"

    parts = [f'<text x="{left}" y="13" {FONT} font-weight="600">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" '
             f'stroke="{GRID}"/>']
    for tick in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{left - 4}" y="{_num(top + plot * (1 - tick) + 4)}" '
                     f'text-anchor="end" {FONT}>{tick:.1f}</text>')
        parts.append(f'<text x="{_num(left + plot * tick)}" y="{top + plot + 13}" '
                     f'text-anchor="middle" {FONT}>{tick:.1f}</text>')
    if diagonal:
        parts.append(f'<line x1="{left}" y1="{top + plot}" x2="{left + plot}" y2="{top}" '
                     f'stroke="#999" stroke-dasharray="4 3"/>')
    kept = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if kept:
        parts.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="1.5" '
                     f'points="{" ".join(at(x, y) for x, y in kept)}"/>')
        parts += [f'<circle class="point" cx="{at(x, y).split(",")[0]}" '
                  f'cy="{at(x, y).split(",")[1]}" r="2.5" fill="{LINE}">'
                  f'<title>{x:.2f} → {y:.2f}</title></circle>' for x, y in kept]
    parts.append(f'<text x="{left + plot / 2}" y="{height - 4}" text-anchor="middle" '
                 f'{FONT}>{escape(x_label)}</text>')
    parts.append(f'<text x="10" y="{top + plot / 2}" text-anchor="middle" {FONT} '
                 f'transform="rotate(-90 10 {top + plot / 2})">{escape(y_label)}</text>')
    return _svg(size, height, title, "".join(parts))


def scatter_chart(points: Sequence[tuple[float, float]], *, title: str, x_label: str,
                  y_label: str, size: int = 300) -> str:
    """Points (x, y) on one shared scale for both axes, with the line y = x: predicted
    against actual, where a perfect model's points lie on the line."""
    left, bottom, top, right = 48, 34, 22, 10
    plot = size - left - right
    height = top + plot + bottom
    kept = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    ends = [v for point in kept for v in point] or [0.0, 1.0]
    low, high = min(ends), max(ends)
    pad = (high - low) * 0.05 or 1.0
    low, high = low - pad, high + pad

    def at(value: float) -> float:
        return plot * (value - low) / (high - low)

    parts = [f'<text x="{left}" y="13" {FONT} font-weight="600">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" '
             f'stroke="{GRID}"/>',
             f'<line class="identity" x1="{left}" y1="{top + plot}" x2="{left + plot}" '
             f'y2="{top}" stroke="#999" stroke-dasharray="4 3"/>']
    for tick in (low + pad, (low + high) / 2, high - pad):
        parts.append(f'<text x="{left - 4}" y="{_num(top + plot - at(tick) + 4)}" '
                     f'text-anchor="end" {FONT}>{tick:.3g}</text>')
        parts.append(f'<text x="{_num(left + at(tick))}" y="{top + plot + 13}" '
                     f'text-anchor="middle" {FONT}>{tick:.3g}</text>')
    parts += [f'<circle class="point" cx="{_num(left + at(x))}" cy="{_num(top + plot - at(y))}" '
              f'r="2" fill="{LINE}" fill-opacity="0.5"><title>{x:.4g} → {y:.4g}</title>'
              "</circle>" for x, y in kept]
    parts.append(f'<text x="{left + plot / 2}" y="{height - 4}" text-anchor="middle" '
                 f'{FONT}>{escape(x_label)}</text>')
    parts.append(f'<text x="10" y="{top + plot / 2}" text-anchor="middle" {FONT} '
                 f'transform="rotate(-90 10 {top + plot / 2})">{escape(y_label)}</text>')
    return _svg(size, height, title, "".join(parts))


def bar_chart(items: Sequence[tuple[str, float]], *, title: str, fmt: str = "{:.3f}",
              width: int = 420, positive_label: str = "", negative_label: str = "") -> str:
    """Horizontal bars, one per (name, value), in the order given; negative values go
    left of the axis (red), positive right (blue)."""
    label_w, value_w, row, top = 150, 56, 18, 22
    plot_w = width - label_w - value_w
    height = top + row * len(items) + (16 if positive_label or negative_label else 4)
    extent = max((abs(v) for _, v in items if math.isfinite(v)), default=1.0) or 1.0
    signed = any(v < 0 for _, v in items)
    zero = label_w + (plot_w / 2 if signed else 0)
    scale = (plot_w / 2 if signed else plot_w) / extent
    parts = [f'<text x="0" y="13" {FONT} font-weight="600">{escape(title)}</text>']
    for i, (name, value) in enumerate(items):
        y = top + i * row
        shown = value if math.isfinite(value) else 0.0
        length = abs(shown) * scale
        x = zero - length if shown < 0 else zero
        colour = BAD if shown < 0 else LINE
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" {FONT}>'
                     f'{escape(name)}</text>')
        parts.append(f'<rect class="bar" x="{_num(x)}" y="{y + 3}" width="{_num(length)}" '
                     f'height="{row - 6}" fill="{colour}"><title>{escape(name)}: '
                     f'{escape(fmt.format(value))}</title></rect>')
        parts.append(f'<text x="{width - 2}" y="{y + 12}" text-anchor="end" {FONT}>'
                     f'{escape(fmt.format(value))}</text>')
    parts.append(f'<line x1="{_num(zero)}" x2="{_num(zero)}" y1="{top}" '
                 f'y2="{top + row * len(items)}" stroke="#555"/>')
    if positive_label or negative_label:
        y = top + row * len(items) + 12
        if negative_label:
            parts.append(f'<text x="{_num(zero - 4)}" y="{y}" text-anchor="end" {FONT} '
                         f'fill="{BAD}">← {escape(negative_label)}</text>')
        if positive_label:
            parts.append(f'<text x="{_num(zero + 4)}" y="{y}" {FONT} fill="{LINE}">'
                         f'{escape(positive_label)} →</text>')
    return _svg(width, height, title, "".join(parts))
