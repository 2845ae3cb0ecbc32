"""The rollup refresher: recomputes the latency rollups of ended minutes and hours.

On plain PostgreSQL a batch only logs the minutes it touched (rollup_log); this loop turns the
log into probe_minute and probe_hour rows with dockping_refresh_rollups(). Reads stay exact
meanwhile: the views compute logged buckets from the events. On TimescaleDB the function does
nothing, as policies refresh the continuous aggregates.
"""

from __future__ import annotations

import anyio
import psycopg
import psycopg_pool

from db.connector import Conflict, DatabaseUnavailable, SchemaError, connection
from db.queries import sql
from dockping import logs

log = logs.get("dockping.ingest")


async def refresh_rollups(pool: psycopg_pool.AsyncConnectionPool, interval: float) -> None:
    """Refresh the rollups every `interval` seconds, for as long as ingest runs."""
    while True:
        await anyio.sleep(interval)
        try:
            async with connection(pool) as conn:
                await conn.execute(sql("refresh_rollups"))
                await conn.commit()
        except (DatabaseUnavailable, SchemaError, Conflict, psycopg.Error) as exc:
            # The log keeps what was not done: the next round does it.
            log.warning("rollups.retry", error=str(exc))
