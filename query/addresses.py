"""The address listing: filters, sorts and keyset pages over the listing tables and target_state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from db.queries import sql
from dockping.freshness import Freshness
from query.cursor import BadCursor, Cursor, decode, encode
from query.display import vantage_of

# The words dockping_target_status (migration 13) returns; it alone decides which applies.
Status = Literal["up", "down", "stale", "stopped", "unknown", "gone"]
STATUSES: tuple[Status, ...] = ("up", "down", "stale", "stopped", "unknown", "gone")
# What the listing shows unless asked for a status: gone addresses stay in history only.
LISTED: tuple[Status, ...] = tuple(s for s in STATUSES if s != "gone")
# Stand-ins for "none", so that every key compares as a row and fits a JSON number. No
# latency reaches 2**32 µs (the store holds an int4); -2**62 µs is long before year 1.
NO_LATENCY = 2**32
NEVER_OK = -(2**62)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _from_micros(value: Any) -> datetime | None:
    if value == NEVER_OK:
        return None
    try:
        return _EPOCH + int(value) * _MICROSECOND
    except OverflowError:
        raise BadCursor("the cursor's key is out of range") from None


def _to_micros(value: Any) -> int:
    return NEVER_OK if value is None else (value - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class Sort:
    """One way of ordering: SQL key expressions and their cursor forms, and the direction.

    `columns` order the rows; `selected` are what the inner query passes on of them (k0, k1,
    ...) and `outer` orders the outer query by those again; `to_cursor` / `to_param` turn a
    selected value into a cursor's JSON value and back into the parameter that `params`
    compares `columns` with.
    """

    columns: tuple[str, ...]
    selected: tuple[str, ...]
    outer: tuple[str, ...]
    params: tuple[str, ...]
    kinds: tuple[type, ...]
    descending: bool
    to_cursor: Callable[[Any], str | int] = lambda value: value
    to_param: Callable[[Any], Any] = lambda value: value


# The only SQL text that varies with input; chosen by name, never built from it. Every key
# is an integer, a text or a time (no per-row arithmetic on 10,000 rows), compared as a row
# with target_id as the tie-break, so that the name order can walk an index.
LATENCY_KEY = f"coalesce(CASE WHEN s.latency_us >= 0 THEN s.latency_us::int8 END, {NO_LATENCY})"
SORTS: dict[str, Sort] = {
    "name": Sort(
        columns=("a.name_key", "a.ip", "a.port_key"),
        selected=("a.name_key", "a.ip", "a.port_key"),
        outer=("p.k0", "p.k1", "p.k2"),
        params=("%(k0)s", "%(k1)s", "%(k2)s"),
        kinds=(str, str, int),
        descending=False,
    ),
    "status": Sort(
        columns=("dockping_status_rank(st.status)",),
        selected=("dockping_status_rank(st.status)",),
        outer=("p.k0",),
        params=("%(k0)s",),
        kinds=(int,),
        descending=False,
    ),
    "latency": Sort(
        columns=(LATENCY_KEY,),
        selected=(LATENCY_KEY,),
        outer=("p.k0",),
        params=("%(k0)s",),
        kinds=(int,),
        descending=False,
    ),
    "last_ok": Sort(
        columns=("coalesce(s.last_ok_at, '-infinity')",),
        selected=("s.last_ok_at",),
        outer=("coalesce(p.k0, '-infinity')",),
        params=("coalesce(%(k0)s::timestamptz, '-infinity')",),
        kinds=(int,),
        descending=True,
        to_cursor=_to_micros,
        to_param=_from_micros,
    ),
}
# The same order, written so that it cannot walk the name index. A walk pays while most rows
# pass the filters; a filter on a rare status (anything but up, in a healthy fleet) could
# walk every row, looking each one's state up, to find a few or none. Sorting what the
# filters keep costs one pass whatever they keep.
NAME_WITHOUT_INDEX = replace(SORTS["name"], columns=("(a.name_key || '')", "a.ip", "a.port_key"))

HEALTHS = ("healthy", "unhealthy", "starting")
# Docker's health lives with the container (container_state); few rows pass this filter.
HEALTH_FILTER = (
    "AND EXISTS (SELECT FROM address_listing hl JOIN container_state hs"
    " ON hs.container_key = hl.container_key"
    " WHERE hl.target_id = lc.target_id AND hs.health = ANY(%(healths)s::text[]))"
)
# address_listing joins the inner query only for the name order and the text filters, so that
# the other orders scan the two narrow tables alone.
LISTING_JOIN = "JOIN address_listing a ON a.target_id = lc.target_id"


# One page of the address listing, in order. The inner query finds the page's ids and sort
# keys in address_lifecycle and target_state (and address_listing when the name order or a
# text filter needs it): the name order walks an index, the others compute one integer or
# time per row and keep the best few. The status filter is `st.status <> ALL(hidden)` when
# none is asked for (the planner then expects most rows to pass, and walks the name index),
# else `st.status = ANY(statuses)`. Each row's status is dockping_target_status() as of
# %(as_of)s, over the lifecycle row, the state row and the agent; the outer query reads the
# page's rows in full from dockping_latest(), which computes the same. Keys, filters,
# keyset, join and orders are the fixed fragments above, composed with psycopg.sql: nothing
# of a request becomes SQL text; its values are parameters.
PAGE = pgsql.SQL(
    """
SELECT p.target_id, a.agent, a.container_id, a.container_name, a.image, a.compose_project,
       a.network, a.ip, a.port, a.protocol, l.status, l.latency_ms, l.error, l.last_probe_at,
       l.last_ok_at, l.status_since, l.consecutive_failures, l.last_error, l.stale_since,
       -- The last probe's HTTP status, the container's health and the target's vantage code
       -- (query/display.py reads it as the vantage and a note), then the sort keys.
       d.http_status, cs.health, tv.vantage, {keys}
FROM (
    SELECT lc.target_id, {inner_keys}
    FROM address_lifecycle lc
    {listing_join}
    LEFT JOIN target_state s ON s.target_id = lc.target_id
    LEFT JOIN dockping_agent_view(%(as_of)s, %(silent_after)s) g ON g.agent_id = lc.agent_id
    CROSS JOIN LATERAL (
        SELECT dockping_target_status(
            lc.action, lc.action_at, lc.detached_at, lc.absent, g.inventory_at,
            s.last_probe_at, s.latency_us,
            dockping_fresh_until(s.last_probe_at, lc.probe_window, %(default_window)s,
                                 %(stale_after)s),
            g.agent_silent, %(as_of)s) AS status
    ) st
    WHERE {status_filter}
      {filters}
      {keyset}
    ORDER BY {order}
    LIMIT %(limit)s
) p
JOIN address_listing a ON a.target_id = p.target_id
JOIN targets tv ON tv.target_id = p.target_id
LEFT JOIN target_detail d ON d.target_id = p.target_id
LEFT JOIN container_state cs ON cs.container_key = a.container_key
-- One row each, by its id (OFFSET 0 keeps it a lookup per row, not a join of every target).
CROSS JOIN LATERAL (
    SELECT * FROM dockping_latest(%(as_of)s, %(stale_after)s, %(default_window)s, %(silent_after)s) x
    WHERE x.target_id = p.target_id
    OFFSET 0
) l
ORDER BY {outer_order}
"""
)


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
    stale_since: datetime | None = None
    """When the last probe stops vouching for the target (or its agent fell silent)."""
    http_status: int | None = None
    """http and https: the status code of the last probe, when it got one."""
    health: str | None = None
    """Docker's health of the container: healthy, unhealthy, starting; null without a check."""
    vantage: str | None = None
    """host: probed from the agent's network; container: from inside the container's; null:
    not said, or not probed (then `note` says why)."""
    note: str | None = None


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
    healths: tuple[str, ...] = ()


def _keyset(sort: Sort, reverse: bool) -> str:
    op = "<" if sort.descending != reverse else ">"
    return (
        f"AND ({', '.join(sort.columns)}, lc.target_id) {op} ({', '.join(sort.params)}, %(row_id)s)"
    )


def _order(columns: tuple[str, ...], tie: str, sort: Sort, reverse: bool) -> str:
    word = "DESC" if sort.descending != reverse else "ASC"
    return ", ".join(f"{column} {word}" for column in (*columns, tie))


def _filters(filters: Filters) -> str:
    # The text filter is ILIKE on name, image and IP, written as what PostgreSQL makes of it
    # (LIKE of the lower-cased text and pattern) over columns stored lower-cased; lower(q) is
    # a sub-select so that it is computed once, not per row.
    parts = []
    if filters.agent:
        parts.append("AND a.agent = %(agent)s::text")
    if filters.healths:
        parts.append(HEALTH_FILTER)
    if filters.q:
        parts.append(
            "AND (a.name_key LIKE (SELECT lower(%(q)s::text)) OR a.image_key LIKE"
            " (SELECT lower(%(q)s::text)) OR a.ip LIKE (SELECT lower(%(q)s::text)))"
        )
    return "\n      ".join(parts)


def parse_cursor(text: str | None, sort_name: str) -> Cursor | None:
    """Decode a cursor and check that it belongs to this sort and its key fits it."""
    if not text:
        return None
    cursor = decode(text)
    if cursor.sort != sort_name:
        raise BadCursor("the cursor belongs to another sort")
    sort = SORTS[sort_name]
    if len(cursor.key) != len(sort.kinds):
        raise BadCursor("the cursor's key does not fit its sort")
    for value, kind in zip(cursor.key, sort.kinds, strict=True):
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BadCursor("the cursor's key does not fit its sort")
        if isinstance(value, str) and (len(value) > 300 or "\x00" in value):
            raise BadCursor("the cursor's key is too long or holds NUL")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise BadCursor("the cursor's key is out of range")
        sort.to_param(value)  # raises BadCursor when it has no parameter form
    if not -(2**63) <= cursor.row_id < 2**63:
        raise BadCursor("the cursor's row id is out of range")
    if not 0 <= cursor.as_of < 2**62:
        raise BadCursor("the cursor's time is out of range")
    return cursor


def as_of(cursor: Cursor | None, fresh: Freshness) -> Freshness:
    """The time a page's statuses are taken at: its first page's, which the cursor carries,
    so that the rows that go stale while a client pages neither repeat nor vanish; now, once
    the cursor is older than stale_after (a status is never shown older than that)."""
    if cursor is None or not cursor.as_of:
        return fresh
    taken = _from_micros(cursor.as_of)
    if taken is None or not fresh.as_of - fresh.stale_after <= taken <= fresh.as_of:
        return fresh
    return fresh.at(taken)


async def page(
    conn: psycopg.AsyncConnection,
    filters: Filters,
    sort_name: str,
    cursor: Cursor | None,
    limit: int,
    fresh: Freshness,
) -> AddressPage:
    """One page of addresses, in a stable order, after or before a cursor (one query)."""
    fresh = as_of(cursor, fresh)
    sort = SORTS[sort_name]
    if sort_name == "name" and filters.statuses and "up" not in filters.statuses:
        sort = NAME_WITHOUT_INDEX
    reverse = cursor is not None and cursor.direction == "prev"
    width = len(sort.columns)
    text = PAGE.format(
        keys=pgsql.SQL(", ".join(f"p.k{i}" for i in range(width))),
        inner_keys=pgsql.SQL(", ".join(f"{c} AS k{i}" for i, c in enumerate(sort.selected))),
        status_filter=pgsql.SQL(
            "st.status = ANY(%(statuses)s::text[])"
            if filters.statuses
            else "st.status <> ALL(%(hidden)s::text[])"
        ),
        filters=pgsql.SQL(_filters(filters)),
        keyset=pgsql.SQL(_keyset(sort, reverse) if cursor is not None else ""),
        listing_join=pgsql.SQL(
            LISTING_JOIN if sort_name == "name" or filters.agent or filters.q else ""
        ),
        order=pgsql.SQL(_order(sort.columns, "lc.target_id", sort, reverse)),
        outer_order=pgsql.SQL(_order(sort.outer, "p.target_id", sort, reverse)),
    )
    params: dict[str, Any] = {
        **fresh.params(),
        "statuses": list(filters.statuses),
        "hidden": [s for s in STATUSES if s not in LISTED],
        "agent": filters.agent,
        "healths": list(filters.healths),
        "q": f"%{_escape_like(filters.q)}%",
        "limit": limit + 1,
        "row_id": cursor.row_id if cursor else None,
    }
    for i in range(width):
        params[f"k{i}"] = sort.to_param(cursor.key[i]) if cursor else None
    async with conn.cursor() as cur:
        await cur.execute(text, params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if reverse:
        rows.reverse()
    # Rows become structs positionally: no dict per row, no conversion pass. The columns are
    # Address's (the vantage and its note as one code, last), then the sort keys.
    items = [Address(*(*row[: _WIDTH - 1], *vantage_of(row[_WIDTH - 1]))) for row in rows]
    has_next = more if not reverse else cursor is not None
    has_prev = (cursor is not None) if not reverse else more
    next_cursor = prev_cursor = None
    taken = _to_micros(fresh.as_of)
    if rows and has_next:
        next_cursor = _cursor(sort_name, sort, "next", rows[-1], taken)
    if rows and has_prev:
        prev_cursor = _cursor(sort_name, sort, "prev", rows[0], taken)
    return AddressPage(items=items, next_cursor=next_cursor, prev_cursor=prev_cursor)


# The columns PAGE selects before the sort keys: Address's, with the vantage code
# standing for the vantage and its note.
_WIDTH = len(Address.__struct_fields__) - 1


def _cursor(
    sort_name: str, sort: Sort, direction: Literal["next", "prev"], row: Any, taken: int
) -> str:
    key: list[str | float | int] = [sort.to_cursor(v) for v in row[_WIDTH:]]
    return encode(Cursor(sort_name, direction, key, row[0], taken))


async def one(conn: psycopg.AsyncConnection, target_id: int, fresh: Freshness) -> Address | None:
    """One address by target id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("target_by_id").encode(), {"target_id": target_id, **fresh.params()})
        row = await cur.fetchone()
    if row is None:
        return None
    vantage, note = vantage_of(row.pop("vantage_code"))
    return msgspec.convert(row | {"vantage": vantage, "note": note}, Address)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The span of a row's sparkline, up to now.
SPARKLINE = timedelta(hours=1)


@dataclass(frozen=True)
class Trend:
    """What the table adds to a row from the rollup: 24 h uptime and the last hour's minutes.

    The minutes are parallel lists, oldest first: seconds after the start of the hour shown,
    the average latency (None when every probe failed) and the failures.
    """

    probes_24h: int
    failures_24h: int
    offsets: list[float]
    values: list[float | None]
    failures: list[int]


class UptimeCache:
    """24 h probe and failure counts per target, kept for a minute.

    Over a day, a minute moves uptime by at most 1/1440 of the window, while reading the
    counts costs 24 hourly and up to 60 minute rows per target. Bounded: past max_entries it
    starts afresh.
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


async def _uptime(
    cur: psycopg.AsyncCursor[Any], target_ids: list[int], now: datetime
) -> dict[int, tuple[int, int]]:
    # Whole hours from the hourly rollup, the minutes before the first one from the minute
    # rollup: the same sum as 1,440 minute rows, from at most 84 rows a target.
    since = now - timedelta(hours=24)
    hour = since.replace(minute=0, second=0, microsecond=0)
    hour += timedelta(hours=1) if hour < since else timedelta(0)
    await cur.execute(
        sql("addresses_uptime").encode(),
        {"target_ids": target_ids, "since": since, "hour": hour},
    )
    read = dict.fromkeys(target_ids, (0, 0))
    for target_id, probes, failures in await cur.fetchall():
        read[target_id] = (int(probes), int(failures))
    return read


async def trends(
    conn: psycopg.AsyncConnection, target_ids: list[int], now: datetime, cache: UptimeCache
) -> dict[int, Trend]:
    """The 24 h counts and the last hour's per-minute latency of some targets."""
    if not target_ids:
        return {}
    counts, missing = cache.get(target_ids, now)
    empty: tuple[list[float], list[float | None], list[int]] = ([], [], [])
    minutes: dict[int, tuple[list[float], list[float | None], list[int]]] = {}
    # Binary: the arrays arrive as numbers, with no text to parse.
    async with conn.cursor(binary=True) as cur:
        if missing:
            read = await _uptime(cur, missing, now)
            cache.put(read, now)
            counts.update(read)
        await cur.execute(
            sql("addresses_sparkline").encode(),
            {"target_ids": target_ids, "since": now - SPARKLINE},
        )
        for target_id, offsets, values, failures in await cur.fetchall():
            minutes[target_id] = (offsets, values, failures)
    return {
        target_id: Trend(counts[target_id][0], counts[target_id][1], *minutes.get(target_id, empty))
        for target_id in target_ids
    }
