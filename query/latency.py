"""A target's latency in time buckets: from the per-hour or per-minute rollup, or from raw events.

Buckets are aligned to the Unix epoch in UTC (so 1h buckets start on the hour and 1d buckets
at midnight UTC). The requested range is widened to whole buckets: the first point is the
bucket holding `from`, the last the bucket holding the instant before `to`. Only buckets that
hold probes are returned.

Whole hours read latency_hour, other whole minutes latency_minute. At the rollup's own width
(1 m, 1 h) the points are its rows as they are, percentiles exact. Wider, probes, failures,
avg_ms and max_ms are exact; p50_ms and p95_ms are estimates (see latency_minute_buckets
in db/queries/latency.sql). Below a minute everything is computed from the raw events, exactly.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
from psycopg.rows import dict_row

from db.queries import sql

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROLLUP_STEP = timedelta(minutes=1)
# The rollups, widest first: a bucket that is a whole number of a rollup's width reads it,
# with the named query of its own width (the rows as they are) or of wider buckets.
ROLLUPS = (
    (timedelta(hours=1), "latency_hour_points", "latency_hour_buckets"),
    (ROLLUP_STEP, "latency_minute_points", "latency_minute_buckets"),
)


class LatencyPoint(msgspec.Struct, frozen=True):
    """One bucket: how many probes, how many failed, and the latency of the successful ones."""

    time: datetime
    probes: int
    failures: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None


class LatencySeries(msgspec.Struct, frozen=True):
    """A target's latency points over a range; `source` says whether the rollup was read."""

    target_id: int
    bucket: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    source: str
    points: list[LatencyPoint]


def align_down(moment: datetime, width: timedelta) -> datetime:
    """The start of the epoch-aligned bucket holding `moment`."""
    step = width.total_seconds()
    offset = (moment - EPOCH).total_seconds()
    return EPOCH + timedelta(seconds=math.floor(offset / step) * step)


def align_up(moment: datetime, width: timedelta) -> datetime:
    """The first bucket boundary at or after `moment`."""
    down = align_down(moment, width)
    return down if down == moment else down + width


def point_count(start: datetime, end: datetime, width: timedelta) -> int:
    """How many buckets [start, end) spans once widened to whole buckets."""
    return round((align_up(end, width) - align_down(start, width)) / width)


def uses_rollup(width: timedelta) -> bool:
    """Whole minutes are read from the rollup; anything finer needs the raw events."""
    return width >= ROLLUP_STEP and width % ROLLUP_STEP == timedelta(0)


async def series(
    conn: psycopg.AsyncConnection,
    target_id: int,
    start: datetime,
    end: datetime,
    width: timedelta,
    label: str,
) -> LatencySeries:
    """The points of one target between start and end, widened to whole buckets."""
    first, last = align_down(start, width), align_up(end, width)
    rollup = uses_rollup(width)
    query = sql("latency_raw")
    if rollup:
        step, points, buckets = next(r for r in ROLLUPS if width % r[0] == timedelta(0))
        query = sql(points if width == step else buckets)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query.encode(),
            {"target_id": target_id, "bucket": width, "start": first, "end": last},
        )
        rows = await cur.fetchall()
    return LatencySeries(
        target_id=target_id,
        bucket=label,
        start=first,
        end=last,
        source="rollup" if rollup else "raw",
        points=[msgspec.convert(row, LatencyPoint) for row in rows],
    )
