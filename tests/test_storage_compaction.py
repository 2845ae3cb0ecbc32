"""Closed probe_events partitions get their index compacted once (plain PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import psycopg

from db.compaction import COMPACTED, compact_closed_partitions

DAY = datetime(2026, 1, 1, tzinfo=UTC)


def index_bytes(conn: psycopg.Connection, table: str) -> int:
    """The size of a table's indexes."""
    row = conn.execute("SELECT pg_indexes_size(%s::regclass)", (table,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_closed_partition_is_compacted_once_and_keeps_its_events(database_url: str) -> None:
    """The index of a past partition shrinks, its events stay, and it is compacted only once."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT dockping_ensure_partitions(%s, %s, '1 day')", (DAY, DAY + timedelta(days=2))
        )
        # As ingest writes: time-ordered batches over many targets, each sorted by target.
        for step in range(60):
            conn.execute(
                "INSERT INTO probe_events SELECT %s::timestamptz + make_interval(secs => %s), t, 5"
                " FROM generate_series(1, 500) t ORDER BY t",
                (DAY, step * 20),
            )
        conn.execute(
            "INSERT INTO probe_events VALUES (%s, 1, 7)", (DAY + timedelta(days=1, hours=1),)
        )
        closed = "probe_events_p20260101t0000"
        before = index_bytes(conn, closed)
        count = conn.execute(f"SELECT count(*) FROM {closed}").fetchone()

    async def compact(when: datetime) -> list[str]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await compact_closed_partitions(conn, when)

    first = anyio.run(compact, DAY + timedelta(days=1, hours=12))
    second = anyio.run(compact, DAY + timedelta(days=1, hours=12))
    with psycopg.connect(database_url) as conn:
        after = index_bytes(conn, closed)
        count_after = conn.execute(f"SELECT count(*) FROM {closed}").fetchone()
        comment = conn.execute(
            "SELECT obj_description(%s::regclass, 'pg_class')", (closed,)
        ).fetchone()
    assert first == [closed]  # the open day after it is left alone
    assert second == []
    assert after < before
    assert count_after == count == (30000,)
    assert comment == (COMPACTED,)
