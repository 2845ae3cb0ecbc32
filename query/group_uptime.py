"""The 24 h uptime of a group of addresses (a container, a project, a service).

The per-target counts are kept a minute, as /addresses keeps its own (UptimeCache): a
container's from exact 24 h windows in the same cache as /addresses, a project's or a
service's from whole hours in a cache of their own. Statuses are never cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

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


def share(counts: dict[int, tuple[int, int]], target_ids: Iterable[int]) -> float | None:
    """The percentage of successful probes of these targets, or None when none were probed."""
    probes = failures = 0
    for target_id in target_ids:
        p, f = counts.get(target_id, (0, 0))
        probes += p
        failures += f
    if probes <= 0:
        return None
    return round(100.0 * (probes - failures) / probes, 3)


def percent(share: float | None) -> str:
    """An uptime share for people: a dash with no probes, 100 % only when nothing failed."""
    if share is None:
        return "—"
    return "100 %" if share >= 100.0 else f"{min(share, 99.99):.2f} %"
