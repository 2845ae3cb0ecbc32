"""Compact each probe_events partition once its time is over (plain PostgreSQL).

While a partition is written, its unique (target_id, dockping_bucket(time), time) index is
what keeps an event from being stored twice. It costs about 40 bytes an event: 28 an entry,
and leaf pages that split half-full as every target appends at the end of its own key range.
Once the partition's time is over, that index is traded for one on (target_id,
dockping_bucket(time)), whose equal keys PostgreSQL stores once with a list of row pointers:
about 7 bytes an event. Readers find a target's events by either index (see dockping_target_events); a
late event is checked for a duplicate by its identity, under its agent's lock, as every
event not newer than its target's state is (db/schema/10_dockping_append_probes.sql).
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql as pgsql

from db.queries import sql

COMPACTED = "dockping: compacted"


async def compact_closed_partitions(conn: psycopg.AsyncConnection, before: datetime) -> list[str]:
    """Compact every partition that ended before `before`, once; return their names.

    One compactor at a time: while another ingest replica compacts, this one does nothing.
    """
    await conn.commit()
    was_autocommit = conn.autocommit
    # CONCURRENTLY refuses a transaction; it lets late events and readers go on.
    await conn.set_autocommit(True)
    try:
        cursor = await conn.execute(sql("compaction_try_lock"))
        row = await cursor.fetchone()
        if not (row and row[0]):
            return []
        try:
            cursor = await conn.execute(sql("uncompacted_partitions"), {"before": before})
            names = [row[0] for row in await cursor.fetchall()]
            for name in names:
                await _compact(conn, name)
            return names
        finally:
            await conn.execute(sql("compaction_unlock"))
    finally:
        await conn.set_autocommit(was_autocommit)


async def _compact(conn: psycopg.AsyncConnection, name: str) -> None:
    table = pgsql.Identifier(name)
    by_target = pgsql.Identifier(f"{name}_target")
    # A build that failed half-way leaves an invalid index behind: dropped and built again.
    cursor = await conn.execute(sql("invalid_index"), {"name": f"{name}_target"})
    if await cursor.fetchone():
        await conn.execute(pgsql.SQL("DROP INDEX CONCURRENTLY {}").format(by_target))
    await conn.execute(
        pgsql.SQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} (target_id, dockping_bucket(time))"
        ).format(by_target, table)
    )
    await conn.execute(
        pgsql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(pgsql.Identifier(f"{name}_key"))
    )
    await conn.execute(
        pgsql.SQL("COMMENT ON TABLE {} IS {}").format(table, pgsql.Literal(COMPACTED))
    )
