"""The 24 h uptime of a group of addresses (a container, a project, a service).

The counts are kept a minute, as /addresses keeps its own (UptimeCache): a
container's from exact 24 h windows in the same cache as /addresses, a project's or a
service's from whole hours in a cache of their own, every project's at once (ProjectUptime).
Statuses are never cached.

Why a cache and not a read each time: the rollups hold a row per target and hour (and
minute), so 24 h of 10,000 addresses is 240,000 hour rows (0.1-0.2 s joined, 1 s looked up
one by one), and a page of 50
containers' exact windows up to 4,150 hour and minute rows (about 30 ms) on the benchmark's
dataset. A read as cheap as the statuses needs a rollup per group and hour, kept by the
rollup refresher on both backends (TimescaleDB's continuous aggregates cannot join the
dimension tables a group comes from): not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import psycopg

from db.queries import sql
from query.addresses import UptimeCache

# What each cache holds: exact 24 h windows (a container's few addresses, as /addresses has
# them), or whole hours (a project's or a service's many addresses; see group_uptime_hours).
EXACT = "group_uptime"
HOURLY = "group_uptime_hours"


async def counts(
    conn: psycopg.AsyncConnection,
    target_ids: list[int],
    now: datetime,
    cache: UptimeCache,
    query: str = EXACT,
) -> dict[int, tuple[int, int]]:
    """Probes and failures over the last 24 h of each of these targets."""
    found, missing = cache.get(target_ids, now)
    if missing:
        read = dict.fromkeys(missing, (0, 0))
        async with conn.cursor(binary=True) as cur:
            await cur.execute(sql(query).encode(), {"target_ids": missing, "now": now})
            for target_id, probes, failures in await cur.fetchall():
                read[target_id] = (int(probes), int(failures))
        cache.put(read, now)
        found.update(read)
    return found


class ProjectUptime:
    """Every project's 24 h probe and failure counts (whole hours), kept for a minute and
    read all at once: one pass over every address's hours, as the projects list shows them
    all, rather than a lookup of each of their thousands of targets."""

    def __init__(self, ttl: timedelta = timedelta(minutes=1)) -> None:
        self.ttl = ttl
        self.expires: datetime | None = None
        self.counts: dict[str, tuple[int, int]] = {}

    async def read(
        self, conn: psycopg.AsyncConnection, now: datetime
    ) -> dict[str, tuple[int, int]]:
        """Probes and failures of each project, read again once they are a minute old."""
        if self.expires is None or self.expires <= now:
            async with conn.cursor(binary=True) as cur:
                await cur.execute(sql("projects_uptime").encode(), {"now": now})
                rows = await cur.fetchall()
            self.counts = {project: (int(p), int(f)) for project, p, f in rows}
            self.expires = now + self.ttl
        return self.counts


def ratio(probes: int, failures: int) -> float | None:
    """The percentage of successful probes, or None when none were probed."""
    if probes <= 0:
        return None
    return round(100.0 * (probes - failures) / probes, 3)


def share(counts: dict[int, tuple[int, int]], target_ids: Iterable[int]) -> float | None:
    """The percentage of successful probes of these targets, or None when none were probed."""
    probes = failures = 0
    for target_id in target_ids:
        p, f = counts.get(target_id, (0, 0))
        probes += p
        failures += f
    return ratio(probes, failures)


def percent(share: float | None) -> str:
    """An uptime share for people: a dash with no probes, 100 % only when nothing failed."""
    if share is None:
        return "—"
    return "100 %" if share >= 100.0 else f"{min(share, 99.99):.2f} %"
