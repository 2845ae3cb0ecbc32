"""The container listing: one row per container, its status a roll-up of its addresses'.

The roll-up itself is SQL (dockping_container_status, migration 18), the rows are
container_listing's (migration 22); this module pages them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import psycopg

from db.queries import sql
from query import group_uptime
from query.addresses import UptimeCache
from query.cursor import BadCursor, Cursor, decode, encode

GroupStatus = Literal["up", "degraded", "down", "stopped", "stale", "unknown", "gone"]
STATUSES: tuple[GroupStatus, ...] = (
    "up",
    "degraded",
    "down",
    "stopped",
    "stale",
    "unknown",
    "gone",
)
SORT = "container_name"
# The `project` filter's value for the containers without a project (no compose project
# name may start with a dash).
NO_PROJECT = "-"
# The named query of each direction, without a status filter and with one (see
# containers_page_next and containers_page_status_next).
_QUERIES = {
    ("next", False): "containers_page_next",
    ("prev", False): "containers_page_prev",
    ("next", True): "containers_page_status_next",
    ("prev", True): "containers_page_status_prev",
}


class Container(msgspec.Struct, frozen=True):
    """One container with the roll-up of its addresses."""

    container_id: str
    name: str
    image: str
    compose_project: str
    compose_service: str
    agent: str
    status: GroupStatus
    addresses_up: int
    addresses_total: int
    health: str | None
    uptime_24h: float | None
    status_since: datetime | None


class ContainerPage(msgspec.Struct, frozen=True):
    """A page of containers with the cursors around it."""

    items: list[Container]
    next_cursor: str | None
    prev_cursor: str | None


@dataclass(frozen=True)
class Filters:
    """What the container listing is narrowed to."""

    statuses: tuple[str, ...] = ()
    q: str = ""
    agent: str = ""
    project: str | None = None


def parse_cursor(text: str | None) -> Cursor | None:
    """Decode a container cursor; raise BadCursor unless it is one of ours."""
    if not text:
        return None
    cursor = decode(text)
    if cursor.sort != SORT or len(cursor.key) != 1 or not isinstance(cursor.key[0], str):
        raise BadCursor("the cursor does not belong to the container listing")
    if len(cursor.key[0]) > 1100 or "\x00" in cursor.key[0]:
        raise BadCursor("the cursor's key is too long or holds NUL")
    if not 0 <= cursor.row_id < 2**31:
        raise BadCursor("the cursor's row id is out of range")
    return cursor


def _like(text: str) -> str:
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def page(
    conn: psycopg.AsyncConnection,
    filters: Filters,
    cursor: Cursor | None,
    limit: int,
    now: datetime,
    cache: UptimeCache,
) -> tuple[ContainerPage, list[Row]]:
    """One page of containers in name order after or before a cursor, and its rows."""
    direction = cursor.direction if cursor is not None else "next"
    project = filters.project
    params: dict[str, Any] = {
        "statuses": list(filters.statuses),
        "agent": filters.agent or None,
        "project": "" if project == NO_PROJECT else project,
        "q": _like(filters.q) if filters.q else None,
        "after": cursor.key[0] if cursor is not None else None,
        "row_id": cursor.row_id if cursor is not None else None,
        "limit": limit + 1,
    }
    async with conn.cursor() as cur:
        query = _QUERIES[direction, bool(filters.statuses)]
        # Planned for its values each time: a prepared statement's generic plan cannot tell a
        # filter left out (null) from one given, and sorts every container instead of
        # walking the index that the filters given pick (100 times slower at 10,000).
        await cur.execute(sql(query).encode(), params, prepare=False)
        found = await cur.fetchall()
    more = len(found) > limit
    found = found[:limit]
    if direction == "prev":
        found.reverse()
    addresses = await addresses_of(conn, [r[0] for r in found])
    ids = {key: [a.target_id for a in listed] for key, listed in addresses.items()}
    counts = await group_uptime.counts(
        conn, [t for listed in ids.values() for t in listed], now, cache
    )
    rows = [
        Row(
            container_key=r[0],
            addresses=addresses[r[0]],
            item=Container(
                container_id=r[1],
                name=r[2],
                image=r[3],
                compose_project=r[4],
                compose_service=r[5],
                agent=r[6],
                status=r[7],
                addresses_up=r[8],
                addresses_total=r[9],
                health=r[12],
                uptime_24h=group_uptime.share(counts, ids[r[0]]),
                status_since=r[10],
            ),
        )
        for r in found
    ]
    has_next = more if direction == "next" else cursor is not None
    has_prev = (cursor is not None) if direction == "next" else more
    next_cursor = prev_cursor = None
    if found and has_next:
        next_cursor = encode(Cursor(SORT, "next", [found[-1][11]], found[-1][0]))
    if found and has_prev:
        prev_cursor = encode(Cursor(SORT, "prev", [found[0][11]], found[0][0]))
    return ContainerPage([r.item for r in rows], next_cursor, prev_cursor), rows


class Address(msgspec.Struct, frozen=True):
    """One address of a container, as its expanded row shows it."""

    target_id: int
    network: str
    ip: str
    port: int | None
    protocol: str
    status: str
    latency_ms: float | None
    error: str | None
    status_since: datetime | None


@dataclass(frozen=True)
class Row:
    """A listed container with what the page adds to it: its key and its current addresses."""

    container_key: int
    addresses: list[Address]
    item: Container


async def addresses_of(
    conn: psycopg.AsyncConnection, container_keys: list[int]
) -> dict[int, list[Address]]:
    """The current addresses of some containers, by container key."""
    found: dict[int, list[Address]] = {key: [] for key in container_keys}
    if not container_keys:
        return found
    async with conn.cursor() as cur:
        await cur.execute(sql("container_addresses").encode(), {"container_keys": container_keys})
        for row in await cur.fetchall():
            latency = float(row[7]) if row[7] is not None else None
            target_id, network, ip, port, protocol, status, _, error, status_since = row[1:]
            found[row[0]].append(
                Address(
                    target_id, network, ip, port, protocol, status, latency, error, status_since
                )
            )
    return found
