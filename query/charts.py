"""Latency charts drawn as SVG on the server: no script, no library, readable with CSS off.

Colours come from classes in app.css (the CSP forbids inline style); the few presentation
attributes here are fallbacks. Every text that reaches the SVG is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

from query.latency import LatencyPoint


@dataclass(frozen=True)
class Change:
    """A status change to mark on a chart."""

    time: datetime
    status: str
    exact: bool


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at or above value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _segments(
    points: Sequence[tuple[datetime, float | None]], width: timedelta
) -> list[list[tuple[datetime, float]]]:
    """Split a series where a bucket is missing or has no value, so gaps show as gaps."""
    segments: list[list[tuple[datetime, float]]] = []
    current: list[tuple[datetime, float]] = []
    previous: datetime | None = None
    for moment, value in points:
        if value is None or (previous is not None and moment - previous > width):
            if current:
                segments.append(current)
            current = []
        if value is not None:
            current.append((moment, value))
        previous = moment
    if current:
        segments.append(current)
    return segments


def classify(point: LatencyPoint) -> str:
    """up when every probe of a bucket succeeded, down when every one failed, else mixed."""
    if point.failures == 0:
        return "up"
    if point.failures >= point.probes:
        return "down"
    return "mixed"


def changes_between_buckets(points: Sequence[LatencyPoint]) -> list[Change]:
    """Where a bucket's class (up, down, mixed) differs from the bucket before it."""
    found: list[Change] = []
    previous: str | None = None
    for point in points:
        kind = classify(point)
        if previous is not None and kind != previous:
            found.append(Change(point.time, kind, exact=False))
        previous = kind
    return found


# A sparkline's coordinates are multiples of 0.1 in [0, 120]: written once here and looked
# up per point, since formatting floats is most of the cost of 50 sparklines a page.
_TENTHS = [f"{i / 10:g}" for i in range(1201)]


def _tenths(tenths: int) -> str:
    return _TENTHS[tenths] if 0 <= tenths <= 1200 else f"{tenths / 10:g}"


def sparkline(
    offsets: Sequence[float],
    values: Sequence[float | None],
    failures: Sequence[int],
    span: float,
) -> Markup:
    """A 120x24 line of per-minute latency; minutes with failures are marked below it.

    The minutes are parallel sequences, oldest first: seconds after the line's start (it is
    `span` seconds wide), the average latency or None, and the count of failed probes.
    """
    known = [v for v in values if v is not None]
    top = _nice_ceiling(max(known)) if known else 1.0
    # In tenths of a unit: x over 120 units, y from 21 (zero) up to 2 (top).
    x_scale = 1200.0 / (span or 1.0)
    y_scale = 190.0 / top
    table = _TENTHS
    parts = [
        '<svg class="spark" viewBox="0 0 120 24" width="120" height="24" aria-hidden="true" '
        'focusable="false">'
    ]
    ticks: list[str] = []
    segment: list[str] = []
    previous: float | None = None
    for offset, value, failed in zip(offsets, values, failures, strict=True):
        x_tenths = round(offset * x_scale)
        x = table[x_tenths] if 0 <= x_tenths <= 1200 else _tenths(x_tenths)
        # A missing minute or one without a value splits the line, so gaps show as gaps.
        if value is None or (previous is not None and offset - previous > 60):
            _close(segment, parts)
        if value is not None:
            y_tenths = round(210.0 - value * y_scale)
            segment.append(
                x + "," + (table[y_tenths] if 0 <= y_tenths <= 240 else _tenths(y_tenths))
            )
        previous = offset
        if failed:
            ticks.append(f'<rect class="spark-fail" x="{x}" y="22" width="2" height="2"/>')
    _close(segment, parts)
    parts += ticks
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from numbers only


def _close(segment: list[str], parts: list[str]) -> None:
    """Draw a finished run of points (one point as a dot) and start the next."""
    if len(segment) == 1:
        x, y = segment[0].split(",")
        parts.append(f'<circle class="spark-line" cx="{x}" cy="{y}" r="1"/>')
    elif segment:
        parts.append(f'<polyline class="spark-line" fill="none" points="{" ".join(segment)}"/>')
    segment.clear()


def _time_label(moment: datetime, span: timedelta) -> str:
    moment = moment.astimezone(UTC)
    if span <= timedelta(days=1):
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M")


def latency_chart(
    points: Sequence[LatencyPoint],
    start: datetime,
    end: datetime,
    width_of_bucket: timedelta,
    changes: Sequence[Change],
    title: str,
) -> Markup:
    """The detail chart: average and p95 latency, failed buckets shaded, status changes marked."""
    width, height = 800.0, 240.0
    left, right, top_margin, bottom = 60.0, 12.0, 12.0, 30.0
    plot_w, plot_h = width - left - right, height - top_margin - bottom
    span = end - start
    seconds = span.total_seconds() or 1.0
    peaks = [p.p95_ms if p.p95_ms is not None else p.avg_ms for p in points]
    known = [v for v in peaks if v is not None]
    ceiling = _nice_ceiling(max(known)) if known else 1.0

    def x(moment: datetime) -> float:
        return round(left + (moment - start).total_seconds() / seconds * plot_w, 1)

    def y(value: float) -> float:
        return round(top_margin + plot_h - min(value, ceiling) / ceiling * plot_h, 1)

    bucket_w = max(1.0, round(width_of_bucket.total_seconds() / seconds * plot_w, 1))
    failed = sum(p.failures for p in points)
    probes = sum(p.probes for p in points)
    description = (
        f"{len(points)} buckets of {probes} probes, {failed} failed; "
        f"{len(changes)} status changes; latency axis up to {ceiling:g} ms."
    )
    out = [
        f'<svg class="chart" viewBox="0 0 {width:g} {height:g}" role="img" '
        'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(description)}</desc>',
    ]
    # Buckets with failures: a shaded column, darker the larger the share that failed.
    for p in points:
        if p.failures:
            share = p.failures / p.probes if p.probes else 1.0
            kind = "chart-down" if share >= 1 else "chart-fail"
            out.append(
                f'<rect class="{kind}" x="{x(p.time)}" y="{top_margin:g}" width="{bucket_w:g}" '
                f'height="{plot_h:g}" fill="#d73a49" fill-opacity="{0.12 + 0.33 * share:.2f}">'
                f"<title>{escape(_time_label(p.time, span))}: {p.failures} of {p.probes} probes "
                "failed</title></rect>"
            )
    for fraction in (0.0, 0.5, 1.0):
        value = ceiling * fraction
        level = y(value)
        out.append(
            f'<line class="chart-grid" x1="{left:g}" x2="{width - right:g}" y1="{level}" '
            f'y2="{level}" stroke="#e1e4e8"/>'
            f'<text class="chart-label" x="{left - 6:g}" y="{level + 4}" '
            f'text-anchor="end">{value:g} ms</text>'
        )
    for fraction in (0.0, 0.5, 1.0):
        moment = start + span * fraction
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[fraction]
        out.append(
            f'<text class="chart-label" x="{x(moment)}" y="{height - 10:g}" '
            f'text-anchor="{anchor}">{escape(_time_label(moment, span))} UTC</text>'
        )
    half = width_of_bucket / 2
    for name, values in (
        ("chart-p95", [(p.time + half, p.p95_ms) for p in points]),
        ("chart-avg", [(p.time + half, p.avg_ms) for p in points]),
    ):
        for segment in _segments(values, width_of_bucket):
            coords = " ".join(f"{x(m)},{y(v)}" for m, v in segment)
            if len(segment) == 1:
                m, v = segment[0]
                out.append(f'<circle class="{name}" cx="{x(m)}" cy="{y(v)}" r="2"/>')
            else:
                out.append(f'<polyline class="{name}" fill="none" points="{coords}"/>')
    for change in changes:
        if not start <= change.time <= end:
            continue
        where = x(change.time)
        label = f"{change.status} from {_time_label(change.time, span)}"
        if not change.exact:
            label += " (bucket)"
        out.append(
            f'<line class="chart-change chart-change-{escape(change.status)}" x1="{where}" '
            f'x2="{where}" y1="{top_margin:g}" y2="{top_margin + plot_h:g}" stroke="#6a737d" '
            f'stroke-dasharray="3 3"><title>{escape(label)}</title></line>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - built from numbers and escaped text only
