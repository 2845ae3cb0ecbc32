"""The address listing: filters, sorts and keyset pages over the latest_state view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import psycopg
from psycopg.rows import dict_row

from db.queries import sql
from query.cursor import BadCursor, Cursor, decode, encode

Status = Literal["up", "down", "stopped", "unknown"]
STATUSES: tuple[Status, ...] = ("up", "down", "stopped", "unknown")


@dataclass(frozen=True)
class Sort:
    """One way of ordering: SQL expressions over latest_state, their key types, the direction."""

    columns: tuple[str, ...]
    kinds: tuple[type, ...]
    descending: bool


# The only SQL text that varies with input; chosen by name, never built from it. Keys are
# tuples compared as rows (no string building per row), with target_id as the tie-break.
SORTS: dict[str, Sort] = {
    "name": Sort(("lower(container_name)", "ip", "coalesce(port, 0)"), (str, str, int), False),
    "status": Sort(
        ("(CASE status WHEN 'down' THEN 0 WHEN 'unknown' THEN 1 WHEN 'up' THEN 2 ELSE 3 END)",),
        (int,),
        False,
    ),
    # Finite stand-ins for "none", so that a cursor key is always a plain JSON number.
    "latency": Sort(("coalesce(latency_ms, 1e12)::float8",), (float,), False),
    "last_ok": Sort(("coalesce(extract(epoch FROM last_ok_at), -1e12)::float8",), (float,), True),
}


class Address(msgspec.Struct, frozen=True):
    """One address (target) with its latest state."""

    target_id: int
    agent: str
    container_id: str
    container_name: str
    image: str
    compose_project: str
    network: str
    ip: str
    port: int | None
    protocol: str
    status: Status
    latency_ms: float | None
    error: str | None
    last_probe_at: datetime | None
    last_ok_at: datetime | None
    status_since: datetime | None
    consecutive_failures: int | None
    last_error: str | None


class AddressPage(msgspec.Struct, frozen=True):
    """A page of addresses with the cursors around it."""

    items: list[Address]
    next_cursor: str | None
    prev_cursor: str | None


@dataclass(frozen=True)
class Filters:
    """What the listing is narrowed to."""

    statuses: tuple[str, ...] = ()
    q: str = ""
    agent: str = ""


def _order(sort: Sort, reverse: bool) -> str:
    word = "DESC" if sort.descending != reverse else "ASC"
    return ", ".join(f"{column} {word}" for column in (*sort.columns, "target_id"))


def _keyset(sort: Sort, reverse: bool) -> str:
    op = "<" if sort.descending != reverse else ">"
    columns = ", ".join((*sort.columns, "target_id"))
    params = ", ".join(f"%(k{i})s" for i in range(len(sort.columns)))
    return f"AND ({columns}) {op} ({params}, %(row_id)s)"


def parse_cursor(text: str | None, sort_name: str) -> Cursor | None:
    """Decode a cursor and check that it belongs to this sort and its key fits it."""
    if not text:
        return None
    cursor = decode(text)
    if cursor.sort != sort_name:
        raise BadCursor("the cursor belongs to another sort")
    kinds = SORTS[sort_name].kinds
    if len(cursor.key) != len(kinds):
        raise BadCursor("the cursor's key does not fit its sort")
    for value, kind in zip(cursor.key, kinds, strict=True):
        allowed: tuple[type, ...] = (float, int) if kind is float else (kind,)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise BadCursor("the cursor's key does not fit its sort")
        if isinstance(value, str) and (len(value) > 300 or "\x00" in value):
            raise BadCursor("the cursor's key is too long or holds NUL")
    return cursor


async def page(
    conn: psycopg.AsyncConnection,
    filters: Filters,
    sort_name: str,
    cursor: Cursor | None,
    limit: int,
) -> AddressPage:
    """One page of addresses, in a stable order, after or before a cursor.

    Two reads: the page's ids and sort keys, ordered, touching only what the order and the
    filters need; then those rows in full by id.
    """
    sort = SORTS[sort_name]
    reverse = cursor is not None and cursor.direction == "prev"
    text = sql("addresses_page_keys").format(
        sort_key=", ".join(f"{c} AS k{i}" for i, c in enumerate(sort.columns)),
        keyset=_keyset(sort, reverse) if cursor is not None else "",
        order=_order(sort, reverse),
    )
    params: dict[str, Any] = {
        "statuses": list(filters.statuses) or None,
        "agent": filters.agent or None,
        "q": f"%{_escape_like(filters.q)}%" if filters.q else None,
        "limit": limit + 1,
        "row_id": cursor.row_id if cursor else None,
    }
    for i in range(len(sort.columns)):
        params[f"k{i}"] = cursor.key[i] if cursor else None
    async with conn.cursor() as cur:
        await cur.execute(text.encode(), params)
        keys = await cur.fetchall()
        more = len(keys) > limit
        keys = keys[:limit]
        if reverse:
            keys.reverse()
        ids = [row[0] for row in keys]
    rows: dict[int, dict[str, Any]] = {}
    if ids:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql("addresses_by_ids").encode(), {"target_ids": ids})
            rows = {row["target_id"]: row for row in await cur.fetchall()}
    # A row gone between the two reads (a container destroyed just now) is left out.
    items = [msgspec.convert(rows[i], Address) for i in ids if i in rows]
    has_next = more if not reverse else cursor is not None
    has_prev = (cursor is not None) if not reverse else more
    next_cursor = prev_cursor = None
    if keys and has_next:
        last = keys[-1]
        next_cursor = encode(Cursor(sort_name, "next", _key(last[1:]), last[0]))
    if keys and has_prev:
        first = keys[0]
        prev_cursor = encode(Cursor(sort_name, "prev", _key(first[1:]), first[0]))
    return AddressPage(items=items, next_cursor=next_cursor, prev_cursor=prev_cursor)


async def one(conn: psycopg.AsyncConnection, target_id: int) -> Address | None:
    """One address by target id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("target_by_id").encode(), {"target_id": target_id})
        row = await cur.fetchone()
    if row is None:
        return None
    return msgspec.convert({k: v for k, v in row.items() if k != "sort_key"}, Address)


def _key(values: Any) -> list[str | float | int]:
    return [v if isinstance(v, str | int) else float(v) for v in values]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Trend:
    """What the table adds to a row from the rollup: 24 h uptime and the last hour's sparkline."""

    probes_24h: int
    failures_24h: int
    minutes: list[tuple[datetime, float | None, int]]


class UptimeCache:
    """24 h probe and failure counts per target, kept for a minute.

    Over a day, a minute moves uptime by at most 1/1440 of the window, while reading the
    counts costs 1,440 rollup rows per target. Bounded: past max_entries it starts afresh.
    """

    def __init__(self, ttl: timedelta = timedelta(minutes=1), max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.entries: dict[int, tuple[datetime, int, int]] = {}

    def get(
        self, target_ids: list[int], now: datetime
    ) -> tuple[dict[int, tuple[int, int]], list[int]]:
        """The counts still fresh, and the ids that need reading."""
        fresh: dict[int, tuple[int, int]] = {}
        missing: list[int] = []
        for target_id in target_ids:
            entry = self.entries.get(target_id)
            if entry is not None and entry[0] > now:
                fresh[target_id] = (entry[1], entry[2])
            else:
                missing.append(target_id)
        return fresh, missing

    def put(self, counts: dict[int, tuple[int, int]], now: datetime) -> None:
        """Keep counts read just now."""
        if len(self.entries) + len(counts) > self.max_entries:
            self.entries.clear()
        for target_id, (probes, failures) in counts.items():
            self.entries[target_id] = (now + self.ttl, probes, failures)


async def trends(
    conn: psycopg.AsyncConnection, target_ids: list[int], now: datetime, cache: UptimeCache
) -> dict[int, Trend]:
    """The 24 h counts and the last hour's per-minute latency of some targets."""
    if not target_ids:
        return {}
    counts, missing = cache.get(target_ids, now)
    minutes: dict[int, list[tuple[datetime, float | None, int]]] = {}
    async with conn.cursor() as cur:
        if missing:
            await cur.execute(
                sql("addresses_uptime").encode(),
                {"target_ids": missing, "since": now - timedelta(hours=24)},
            )
            read = dict.fromkeys(missing, (0, 0))
            for target_id, probes, failures in await cur.fetchall():
                read[target_id] = (int(probes), int(failures))
            cache.put(read, now)
            counts.update(read)
        await cur.execute(
            sql("addresses_sparkline").encode(),
            {"target_ids": target_ids, "since": now - timedelta(hours=1)},
        )
        for target_id, bucket, _, failures, avg_ms in await cur.fetchall():
            minutes.setdefault(target_id, []).append((bucket, avg_ms, int(failures)))
    return {
        target_id: Trend(
            probes_24h=counts[target_id][0],
            failures_24h=counts[target_id][1],
            minutes=minutes.get(target_id, []),
        )
        for target_id in target_ids
    }
