"""Compact the index of each probe_events partition once it is closed (plain PostgreSQL).

While a partition is written, every target appends at the end of its own key range of the
(target_id, time) index, so leaf pages split half-full and the index ends about two thirds
full. Rebuilt once the partition's time is past, it is packed: about 10 bytes less per event.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql as pgsql

from db.queries import sql

COMPACTED = "dockping: compacted"


async def compact_closed_partitions(conn: psycopg.AsyncConnection, before: datetime) -> list[str]:
    """REINDEX CONCURRENTLY every partition that ended before `before`, once; return their names."""
    cursor = await conn.execute(sql("uncompacted_partitions"), {"before": before})
    names = [row[0] for row in await cursor.fetchall()]
    await conn.commit()
    done: list[str] = []
    was_autocommit = conn.autocommit
    # REINDEX CONCURRENTLY refuses a transaction; it lets late events and readers go on.
    await conn.set_autocommit(True)
    try:
        for name in names:
            table = pgsql.Identifier(name)
            await conn.execute(pgsql.SQL("REINDEX TABLE CONCURRENTLY {}").format(table))
            await conn.execute(
                pgsql.SQL("COMMENT ON TABLE {} IS {}").format(table, pgsql.Literal(COMPACTED))
            )
            done.append(name)
    finally:
        await conn.set_autocommit(was_autocommit)
    return done
