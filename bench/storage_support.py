"""What the storage and ingest benchmarks share: a scratch database, events, raw COPY.

Not a benchmark itself (it has no run()).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import psycopg

from db.compaction import compact_closed_partitions
from db.embedded import EmbeddedPostgres
from db.migrate import migrate

# The benchmark's agents: each has TARGETS_PER_AGENT targets, probed round-robin.
TARGETS_PER_AGENT = 1000
PROBE_SPACING = timedelta(milliseconds=20)  # each target is probed every 20 s


@contextlib.contextmanager
def server() -> Iterator[str]:
    """An admin URL: DOCKPING_BENCH_DATABASE_URL, or an embedded PostgreSQL in a temp dir."""
    external = os.environ.get("DOCKPING_BENCH_DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="dockping-bench-") as scratch:
        path = Path(scratch)
        path.chmod(0o755)  # the embedded server may run as its own system user
        pg = EmbeddedPostgres(path)
        pg.start()
        try:
            yield pg.url_for("postgres")
        finally:
            pg.stop()


@contextlib.contextmanager
def database(admin_url: str, backend: str = "postgres") -> Iterator[str]:
    """A fresh migrated database on the server, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    try:
        migrate(url, backend)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_time(events: int) -> datetime:
    """A start such that `events` probes, PROBE_SPACING apart, end a minute before now."""
    return datetime.now(UTC).replace(microsecond=0) - PROBE_SPACING * events - timedelta(minutes=1)


def probe_json(agent: int, index: int, start: datetime) -> dict[str, object]:
    """The index-th probe of an agent, as contract JSON: round-robin over its targets."""
    target = index % TARGETS_PER_AGENT
    ok = index % 17 != 0
    return {
        "type": "probe",
        "time": (start + PROBE_SPACING * index).isoformat().replace("+00:00", "Z"),
        "container_id": f"{agent:02d}{target // 4:062x}",
        "container_name": f"svc-{target // 4}",
        "network": "bridge",
        "ip": f"10.{agent}.{target // 4 // 250}.{target // 4 % 250 + 2}",
        "port": 8000 + target % 4,
        "protocol": "tcp",
        "ok": ok,
        "latency_ms": round(0.2 + (index * 7919 % 1000) / 100, 3) if ok else None,
        "error": None if ok else "refused",
    }


def raw_rows(
    agent: int, count: int, start: datetime, first: int = 0
) -> list[tuple[datetime, int, int]]:
    """The (time, target_id, latency_us) rows that `count` probes of an agent become, from its
    `first`-th probe on."""
    rows = []
    for index in range(first, first + count):
        target = agent * TARGETS_PER_AGENT + index % TARGETS_PER_AGENT + 1
        ok = index % 17 != 0
        latency = round((0.2 + (index * 7919 % 1000) / 100) * 1000) if ok else -1
        rows.append((start + PROBE_SPACING * index, target, latency))
    return rows


def prepare_partitions(url: str, start: datetime, end: datetime) -> None:
    """Make the partitions a run writes to, outside the timed part."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')",
            (start - timedelta(days=1), end + timedelta(days=1)),
        )


def copy_rows(url: str, rows: list[tuple[datetime, int, int]], batch: int) -> float:
    """Raw COPY of rows into probe_events, `batch` rows a transaction; return seconds taken."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for offset in range(0, len(rows), batch):
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY probe_events (time, target_id, latency_us) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["timestamptz", "int4", "int4"])
                for row in rows[offset : offset + batch]:
                    copy.write_row(row)
            conn.commit()
        return time.perf_counter() - started


def table_bytes(url: str, table: str) -> tuple[int, int]:
    """Heap and index bytes of a table and all its partitions."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_table_size(relid)), 0)::bigint,"
            " coalesce(sum(pg_indexes_size(relid)), 0)::bigint"
            " FROM pg_partition_tree(%s)",
            (table,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def compact(url: str, before: datetime) -> list[str]:
    """What ingest's maintenance does: compact the probe_events partitions that ended before
    a time; return their names."""

    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await compact_closed_partitions(conn, before)

    return anyio.run(run)
