"""Interval plots as inline SVG: one row per prior, a dot at the mean and a whisker over its 95% interval.

Drawn from Python rather than with a plotting library: the geometry is a linear scale and a few ticks, and inline
SVG keeps the report one self-contained file whose labels are escaped like every other text in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

ROW_HEIGHT = 24
TOP_MARGIN = 10
AXIS_HEIGHT = 38
LABEL_WIDTH = 140
RIGHT_MARGIN = 28
PLOT_WIDTH = 460
LABEL_CHARACTERS = 18
"""Longer prior labels are shortened in the margin; the full label is in the row's tooltip."""


@dataclass(frozen=True)
class IntervalRow:
    """One prior's value of one metric in one category."""

    prior: str
    mean: float
    ci_low: float
    ci_high: float
    n: int = 0
    best: bool = False


@dataclass(frozen=True)
class LinearScale:
    """Maps data values in [low, high] to pixels in [left, right]."""

    low: float
    high: float
    left: float
    right: float

    def __call__(self, value: float) -> float:
        return self.left + (value - self.low) / (self.high - self.low) * (self.right - self.left)


def nice_step(span: float, target_ticks: int = 5) -> float:
    """A 1, 2 or 5 × 10^k step that divides `span` into about `target_ticks` intervals."""
    raw = span / max(target_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def axis_domain(rows: Sequence[IntervalRow]) -> tuple[float, float, float]:
    """(low, high, tick step): every interval inside, bounds on whole ticks; a flat domain is widened."""
    low = min(min(row.ci_low, row.mean) for row in rows)
    high = max(max(row.ci_high, row.mean) for row in rows)
    if high - low <= 1e-12 * max(1.0, abs(high)):
        pad = 0.05 * abs(high) or 0.05
        low, high = low - pad, high + pad
    step = nice_step(high - low)
    return math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step, step


def ticks(low: float, high: float, step: float) -> list[float]:
    count = round((high - low) / step)
    return [low + index * step for index in range(count + 1)]


def format_tick(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}" if abs(value) > step / 1e6 else "0"


def format_value(value: float) -> str:
    """Four significant decimals for scores in [0, 1], fewer for larger values such as FID."""
    if not math.isfinite(value):
        return "–"
    magnitude = abs(value)
    decimals = 4 if magnitude < 100 else 2 if magnitude < 10_000 else 0
    return f"{value:.{decimals}f}"


def _shorten(label: str) -> str:
    return label if len(label) <= LABEL_CHARACTERS else label[: LABEL_CHARACTERS - 1] + "…"


def plottable(rows: Sequence[IntervalRow]) -> list[IntervalRow]:
    """Rows with a finite mean and interval (set-level metrics have none and are not plotted)."""
    return [row for row in rows if all(math.isfinite(value) for value in (row.mean, row.ci_low, row.ci_high))]


def interval_plot(rows: Sequence[IntervalRow], *, axis_label: str, width: int = PLOT_WIDTH) -> Markup:
    """An SVG with one row per prior, in the given order. Each row is a `<g data-prior>` that the page's filter
    can hide; `data-row-height` and `data-top` let it close the gap left by hidden rows."""
    rows = plottable(rows)
    if not rows:
        return Markup("")
    low, high, step = axis_domain(rows)
    scale = LinearScale(low, high, LABEL_WIDTH, width - RIGHT_MARGIN)
    height = TOP_MARGIN + ROW_HEIGHT * len(rows) + AXIS_HEIGHT
    parts = [
        f'<svg class="interval-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-row-height="{ROW_HEIGHT}" data-top="{TOP_MARGIN}" '
        f'data-axis-height="{AXIS_HEIGHT}" role="img" aria-label="{escape(axis_label)}">',
        _grid_lines(scale, low, high, step, height),
    ]
    for index, row in enumerate(rows):
        parts.append(_row(row, scale, TOP_MARGIN + index * ROW_HEIGHT))
    parts.append(_axis(scale, low, high, step, TOP_MARGIN + ROW_HEIGHT * len(rows), axis_label))
    parts.append("</svg>")
    return Markup("".join(parts))


def _grid_lines(scale: LinearScale, low: float, high: float, step: float, height: int) -> str:
    lines = [
        f'<line class="grid" x1="{scale(tick):.2f}" x2="{scale(tick):.2f}" y1="{TOP_MARGIN - 4}" '
        f'y2="{height - AXIS_HEIGHT}"/>'
        for tick in ticks(low, high, step)
    ]
    return f'<g class="plot-grid">{"".join(lines)}</g>'


def _row(row: IntervalRow, scale: LinearScale, top: float) -> str:
    middle = ROW_HEIGHT / 2
    tooltip = (
        f"{row.prior}: mean {format_value(row.mean)}, 95% interval "
        f"[{format_value(row.ci_low)}, {format_value(row.ci_high)}]" + (f", {row.n} images" if row.n else "")
    )
    best = " best" if row.best else ""
    return (
        f'<g class="plot-row{best}" data-prior="{escape(row.prior)}" transform="translate(0,{top})">'
        f"<title>{escape(tooltip)}</title>"
        f'<rect class="hit" x="0" y="0" width="{scale.right + RIGHT_MARGIN}" height="{ROW_HEIGHT}"/>'
        f'<text class="label" x="{LABEL_WIDTH - 10}" y="{middle}" dy="0.35em" text-anchor="end">'
        f"{escape(_shorten(row.prior))}</text>"
        f'<line class="whisker" x1="{scale(row.ci_low):.2f}" x2="{scale(row.ci_high):.2f}" y1="{middle}" '
        f'y2="{middle}"/>'
        f'<line class="cap" x1="{scale(row.ci_low):.2f}" x2="{scale(row.ci_low):.2f}" y1="{middle - 5}" '
        f'y2="{middle + 5}"/>'
        f'<line class="cap" x1="{scale(row.ci_high):.2f}" x2="{scale(row.ci_high):.2f}" y1="{middle - 5}" '
        f'y2="{middle + 5}"/>'
        f'<circle class="mean" cx="{scale(row.mean):.2f}" cy="{middle}" r="4.5"/>'
        "</g>"
    )


def _axis(scale: LinearScale, low: float, high: float, step: float, top: float, label: str) -> str:
    parts = [
        f'<g class="plot-axis" transform="translate(0,{top})">',
        f'<line class="axis" x1="{scale.left}" x2="{scale.right}" y1="0" y2="0"/>',
    ]
    for tick in ticks(low, high, step):
        x = scale(tick)
        parts.append(
            f'<line class="tick" x1="{x:.2f}" x2="{x:.2f}" y1="0" y2="5"/>'
            f'<text class="tick-label" x="{x:.2f}" y="17" text-anchor="middle">{format_tick(tick, step)}</text>'
        )
    parts.append(
        f'<text class="axis-label" x="{(scale.left + scale.right) / 2:.2f}" y="33" text-anchor="middle">'
        f"{escape(label)}</text></g>"
    )
    return "".join(parts)
