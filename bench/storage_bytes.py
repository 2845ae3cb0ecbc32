"""Bytes on disk per stored probe event: plain PostgreSQL (table and indexes, and the rollup), and TimescaleDB before and after compression.

The events are 1,000 targets each probed every 20 s, written in the order ingest writes
them (1,000-event batches in time order, each sorted by target), by raw COPY so that a large
count fits in a benchmark run. DOCKPING_BENCH_STORAGE_EVENTS sets the count (default
10,000,000; rows are made and copied in chunks, so memory stays small).
TimescaleDB figures need DOCKPING_TIMESCALEDB_URL; without it they are left out.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg

from bench import Figure
from bench.storage_support import (
    compact,
    copy_rows,
    database,
    prepare_partitions,
    raw_rows,
    server,
    start_time,
    table_bytes,
)
from db.queries import sql

BATCH = 1000
CHUNK = 500 * BATCH  # rows made and copied at a time, so that memory stays small at any count


def _load(url: str, count: int) -> None:
    start = start_time(count)
    prepare_partitions(url, start, datetime.now(start.tzinfo))
    for first in range(0, count, CHUNK):
        rows = raw_rows(0, min(CHUNK, count - first), start, first)
        # Ingest sorts each batch by (target_id, time) before it appends.
        ordered = [
            row
            for offset in range(0, len(rows), BATCH)
            for row in sorted(rows[offset : offset + BATCH], key=lambda r: (r[1], r[0]))
        ]
        copy_rows(url, ordered, BATCH)


def plain_postgres(admin_url: str, count: int) -> tuple[float, float, float, float]:
    """Per event on plain PostgreSQL: heap, heap+index, the same compacted, and the rollup."""
    with database(admin_url) as url:
        _load(url, count)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql("log_every_minute"))
            conn.execute(sql("refresh_every_rollup"))
            conn.execute("VACUUM ANALYZE probe_events")
            conn.execute("VACUUM ANALYZE probe_minute")
            conn.execute("VACUUM ANALYZE probe_hour")
        heap, index = table_bytes(url, "probe_events")
        rollup_heap, rollup_index = map(
            sum, zip(table_bytes(url, "probe_minute"), table_bytes(url, "probe_hour"), strict=True)
        )
        # What ingest's maintenance does to each partition once its time is past (here every
        # one, the last included).
        compact(url, datetime.now(UTC) + timedelta(days=2))
        compacted_heap, compacted_index = table_bytes(url, "probe_events")
    return (
        heap / count,
        (heap + index) / count,
        (compacted_heap + compacted_index) / count,
        (rollup_heap + rollup_index) / count,
    )


def timescaledb(admin_url: str, count: int) -> tuple[float, float]:
    """Hypertable bytes per event before and after compressing every chunk."""
    with database(admin_url, "timescaledb") as url:
        _load(url, count)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE probe_events")
            before = conn.execute("SELECT hypertable_size('probe_events')").fetchone()
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('probe_events') c")
            conn.execute("VACUUM ANALYZE probe_events")
            after = conn.execute("SELECT hypertable_size('probe_events')").fetchone()
    assert before is not None
    assert after is not None
    return before[0] / count, after[0] / count


def run() -> list[Figure]:
    """Bytes per probe event on both backends."""
    count = int(os.environ.get("DOCKPING_BENCH_STORAGE_EVENTS", "10000000"))
    with server() as admin_url:
        heap, total, compacted, rollup = plain_postgres(admin_url, count)
    figures = [
        Figure(
            f"plain PG: probe_events heap+indexes, partitions open ({count:,} events)",
            total,
            "bytes/event",
            baseline=heap,
            baseline_name="heap alone",
        ),
        Figure(
            "plain PG: the same, partitions closed and compacted",
            compacted,
            "bytes/event",
            baseline=heap,
            baseline_name="heap alone",
            target="<= 60 bytes",
            met=compacted <= 60,
        ),
        Figure(
            "plain PG: probe_minute + probe_hour rollups",
            rollup,
            "bytes/event",
            baseline=total,
            baseline_name="probe_events",
        ),
    ]
    timescale_url = os.environ.get("DOCKPING_TIMESCALEDB_URL")
    if timescale_url:
        uncompressed, compressed = timescaledb(timescale_url, count)
        figures += [
            Figure("TimescaleDB: probe_events uncompressed", uncompressed, "bytes/event"),
            Figure(
                "TimescaleDB: probe_events compressed",
                compressed,
                "bytes/event",
                baseline=uncompressed,
                baseline_name="uncompressed",
                target="<= 8 bytes",
                met=compressed <= 8,
            ),
        ]
    return figures
