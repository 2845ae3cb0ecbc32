"""A project's shareable status page: its services now, 90 days of uptime, recent incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.queries import sql
from query import containers, group_uptime
from query.addresses import UptimeCache

DAYS = 90
MAX_INCIDENTS = 10
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Day:
    """One day of a service's uptime bar: its probes and failures (0 probes: no data)."""

    day: datetime
    probes: int
    failures: int

    @property
    def level(self) -> str:
        """The bar's class: none, ok, minor (under 99.9 %), major (under 99 %)."""
        if self.probes <= 0:
            return "none"
        share = (self.probes - self.failures) / self.probes
        return "ok" if share >= 0.999 else "minor" if share >= 0.99 else "major"


@dataclass(frozen=True)
class Incident:
    """A run of hours in which a service's probes failed."""

    service: str
    start: datetime
    end: datetime
    probes: int
    failures: int


@dataclass(frozen=True)
class Service:
    """One service of the project with its status now and its 90 days."""

    name: str
    status: str
    containers_up: int
    containers_total: int
    status_since: datetime | None
    uptime_24h: float | None
    uptime_90d: float | None
    days: list[Day]


def days_of(hours: list[tuple[datetime, int, int]], first: datetime) -> list[Day]:
    """The DAYS daily totals from `first` on, from hourly (bucket, probes, failures) rows."""
    totals = [[0, 0] for _ in range(DAYS)]
    for bucket, probes, failures in hours:
        index = (bucket - first) // _DAY
        if 0 <= index < DAYS:
            totals[index][0] += probes
            totals[index][1] += failures
    return [Day(first + i * _DAY, p, f) for i, (p, f) in enumerate(totals)]


def incidents_of(service: str, hours: list[tuple[datetime, int, int]]) -> list[Incident]:
    """The runs of consecutive hours with failures, oldest first."""
    found: list[Incident] = []
    for bucket, probes, failures in hours:
        if failures <= 0:
            continue
        last = found[-1] if found else None
        if last is not None and last.service == service and last.end == bucket:
            found[-1] = Incident(
                service, last.start, bucket + _HOUR, last.probes + probes, last.failures + failures
            )
        else:
            found.append(Incident(service, bucket, bucket + _HOUR, probes, failures))
    return found


@dataclass(frozen=True)
class StatusPage:
    """Everything the page shows."""

    project: str
    status: str
    services: list[Service]
    incidents: list[Incident]
    detail: list[tuple[dict[str, Any], list[containers.Address]]]


async def read(
    conn: psycopg.AsyncConnection,
    project: str,
    now: datetime,
    cache: UptimeCache,
    *,
    detail: bool,
) -> StatusPage | None:
    """The status page of a project, or None when it has no current container (cache: of hours)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("project_services").encode(), {"project": project})
        rows = await cur.fetchall()
        if not rows:
            return None
        every = [t for r in rows for t in r["target_ids"]]
        first = (now - (DAYS - 1) * _DAY).astimezone(UTC)
        first = first.replace(hour=0, minute=0, second=0, microsecond=0)
        await cur.execute(sql("service_hours").encode(), {"target_ids": every, "since": first})
        hours: dict[str, list[tuple[datetime, int, int]]] = {}
        for h in await cur.fetchall():
            hours.setdefault(h["service"], []).append(
                (h["bucket"], int(h["probes"]), int(h["failures"]))
            )
    counts = await group_uptime.counts(conn, every, now, cache, group_uptime.HOURLY)
    services = []
    incidents: list[Incident] = []
    for r in rows:
        mine = hours.get(r["service"], [])
        probes = sum(p for _, p, _ in mine)
        failures = sum(f for _, _, f in mine)
        services.append(
            Service(
                name=r["service"],
                status=r["status"],
                containers_up=r["containers_up"],
                containers_total=r["containers_total"],
                status_since=r["status_since"],
                uptime_24h=group_uptime.share(counts, r["target_ids"]),
                uptime_90d=round(100.0 * (probes - failures) / probes, 3) if probes else None,
                days=days_of(mine, first),
            )
        )
        incidents += incidents_of(r["service"], mine)
    incidents.sort(key=lambda i: i.end, reverse=True)
    shown: list[tuple[dict[str, Any], list[containers.Address]]] = []
    if detail:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql("project_containers").encode(), {"project": project})
            listed = await cur.fetchall()
        addresses = await containers.addresses_of(conn, [c["container_key"] for c in listed])
        shown = [(c, addresses[c["container_key"]]) for c in listed]
    status = rows[0]["project_status"]
    return StatusPage(project, status, services, incidents[:MAX_INCIDENTS], shown)
