"""Charts as inline SVG, drawn on the server: no script, readable without colour (each
chart has a title, a description and a table beside it for screen readers)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 34


@dataclass
class Series:
    label: str
    values: Sequence[float | None]
    css: str  # the class that colours it (see style.css)
    kind: str = "line"  # line | bars


def _x(i: int, n: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * (i + 0.5) / n if n else 0)


def _y(value: float, low: float, high: float) -> float:
    span = HEIGHT - TOP - BOTTOM
    return TOP + span * (1 - (value - low) / (high - low or 1))


def chart(
    *,
    title: str,
    description: str,
    weeks: Sequence[date],
    series: Sequence[Series],
    low: float,
    high: float,
    unit: str = "%",
    guides: Sequence[tuple[float, str]] = (),
) -> Markup:
    """A chart of weekly values: bars and lines over the weeks, guides across."""
    n = len(weeks)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{_id(title)}-t {_id(title)}-d" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{_id(title)}-t">{escape(title)}</title>',
        f'<desc id="{_id(title)}-d">{escape(description)}</desc>',
    ]
    for tick in _ticks(low, high):
        y = _y(tick, low, high)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{tick:g}{unit}</text>"
        )
    step = max(1, n // 8)
    for i, week in enumerate(weeks):
        if i % step == 0:
            parts.append(
                f'<text class="axis" x="{_x(i, n):.1f}" y="{HEIGHT - 12}" '
                f'text-anchor="middle">{week:%d/%m}</text>'
            )
    bar = (WIDTH - LEFT - RIGHT) / max(n, 1) * 0.7
    for s in series:
        if s.kind == "bars":
            for i, value in enumerate(s.values):
                if value is None:
                    continue
                y = _y(max(min(value, high), low), low, high)
                parts.append(
                    f'<rect class="{s.css}" x="{_x(i, n) - bar / 2:.1f}" y="{y:.1f}" '
                    f'width="{bar:.1f}" height="{_y(low, low, high) - y:.1f}">'
                    f"<title>{weeks[i]:%d/%m/%Y}: {value:.1f}{unit}</title></rect>"
                )
        else:
            points = [
                f"{_x(i, n):.1f},{_y(max(min(v, high), low), low, high):.1f}"
                for i, v in enumerate(s.values)
                if v is not None
            ]
            if points:
                parts.append(f'<polyline class="{s.css}" points="{" ".join(points)}"/>')
    for value, label in guides:
        if low <= value <= high:
            y = _y(value, low, high)
            parts.append(
                f'<line class="guide" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                f'y2="{y:.1f}"/><text class="guide-label" x="{WIDTH - RIGHT - 4}" '
                f'y="{y - 4:.1f}" text-anchor="end">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _id(title: str) -> str:
    return "c" + "".join(ch for ch in title.lower() if ch.isalnum())[:24]


def _ticks(low: float, high: float) -> list[float]:
    span = high - low
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000) if span / s <= 6)
    first = int(low // step) * step
    return [t for t in range(int(first), int(high) + 1, step) if low <= t <= high]


def pupil_chart(weeks, target: float | None) -> Markup:
    """A pupil's attendance each week (bars) and over the year so far (line)."""
    days = [w.week_start for w in weeks]
    weekly = [w.rate for w in weeks]
    running, possible, present = [], 0, 0
    for w in weeks:
        possible, present = possible + w.possible, present + w.present
        running.append(100.0 * present / possible if possible else None)
    shown = [v for v in weekly + running if v is not None]
    low = min([50.0, *shown]) // 10 * 10 if shown else 50.0
    guides = [(90.0, "90%: persistent absence")]
    if target:
        guides.append((float(target), f"{target:g}%: school target"))
    return chart(
        title="Attendance this year",
        description="Bars: attendance each week. Line: attendance over the year so far.",
        weeks=days,
        series=[
            Series("Each week", weekly, "bars-week", "bars"),
            Series("Year so far", running, "line-year"),
        ],
        low=max(0.0, low),
        high=100.0,
        guides=guides,
    )


def trend_chart(trend, target: float | None) -> dict[str, Markup]:
    """The school's attendance by week, and its PA and SA counts as the year went on."""
    days = [t.week_start for t in trend]
    rates = [t.rate for t in trend]
    shown = [v for v in rates if v is not None]
    low = min([85.0, *shown]) // 5 * 5 if shown else 85.0
    guides = [(float(target), f"{target:g}%: target")] if target else []
    counts = [t.persistent for t in trend] + [t.severe for t in trend]
    top = max([10, *counts])
    return {
        "rate": chart(
            title="School attendance by week",
            description="Attendance of all pupils on roll each week of this year.",
            weeks=days,
            series=[Series("Attendance", rates, "bars-week", "bars")],
            low=low,
            high=100.0,
            guides=guides,
        ),
        "absence": chart(
            title="Persistent and severe absence",
            description="Pupils persistently absent (10% or more) and severely absent "
            "(50% or more) as of the end of each week.",
            weeks=days,
            series=[
                Series("Persistent absence", [t.persistent for t in trend], "line-pa"),
                Series("Severe absence", [t.severe for t in trend], "line-sa"),
            ],
            low=0,
            high=float(top + (5 - top % 5)),
            unit="",
        ),
    }
