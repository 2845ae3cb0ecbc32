"""The address listing: filters, sorts and keyset pages over the latest_state view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
    """One way of ordering: an SQL expression over latest_state and its direction."""

    expression: str
    descending: bool
    kind: type


# The only SQL text that varies with input; chosen by name, never built from it.
SORTS: dict[str, Sort] = {
    "name": Sort("lower(container_name) || ' ' || ip || ' ' || coalesce(port, 0)", False, str),
    "status": Sort(
        "(CASE status WHEN 'down' THEN 0 WHEN 'unknown' THEN 1 WHEN 'up' THEN 2 ELSE 3 END)",
        False,
        int,
    ),
    # Finite stand-ins for "none", so that a cursor key is always a plain JSON number.
    "latency": Sort("coalesce(latency_ms, 1e12)::float8", False, float),
    "last_ok": Sort("coalesce(extract(epoch FROM last_ok_at), -1e12)::float8", True, float),
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
    descending = sort.descending != reverse
    word = "DESC" if descending else "ASC"
    return f"{sort.expression} {word}, target_id {word}"


def _keyset(sort: Sort, reverse: bool) -> str:
    descending = sort.descending != reverse
    op = "<" if descending else ">"
    return f"AND ({sort.expression}, target_id) {op} (%(key)s, %(row_id)s)"


def parse_cursor(text: str | None, sort_name: str) -> Cursor | None:
    """Decode a cursor and check it belongs to this sort."""
    if not text:
        return None
    cursor = decode(text)
    if cursor.sort != sort_name:
        raise BadCursor("the cursor belongs to another sort")
    expected: tuple[type, ...] = (SORTS[sort_name].kind,)
    if expected == (float,):
        expected = (float, int)
    if isinstance(cursor.key, bool) or not isinstance(cursor.key, expected):
        raise BadCursor("the cursor's key does not fit its sort")
    return cursor


async def page(
    conn: psycopg.AsyncConnection,
    filters: Filters,
    sort_name: str,
    cursor: Cursor | None,
    limit: int,
) -> AddressPage:
    """One page of addresses, in a stable order, after or before a cursor."""
    sort = SORTS[sort_name]
    reverse = cursor is not None and cursor.direction == "prev"
    text = sql("addresses_page").format(
        sort_key=sort.expression,
        keyset=_keyset(sort, reverse) if cursor is not None else "",
        order=_order(sort, reverse),
    )
    params: dict[str, Any] = {
        "statuses": list(filters.statuses) or None,
        "agent": filters.agent or None,
        "q": f"%{_escape_like(filters.q)}%" if filters.q else None,
        "limit": limit + 1,
        "key": cursor.key if cursor else None,
        "row_id": cursor.row_id if cursor else None,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(text.encode(), params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if reverse:
        rows.reverse()
    items = [
        msgspec.convert({k: v for k, v in row.items() if k != "sort_key"}, Address) for row in rows
    ]
    has_next = more if not reverse else cursor is not None
    has_prev = (cursor is not None) if not reverse else more
    next_cursor = prev_cursor = None
    if rows and has_next:
        last = rows[-1]
        next_cursor = encode(Cursor(sort_name, "next", _key(last["sort_key"]), last["target_id"]))
    if rows and has_prev:
        first = rows[0]
        prev_cursor = encode(Cursor(sort_name, "prev", _key(first["sort_key"]), first["target_id"]))
    return AddressPage(items=items, next_cursor=next_cursor, prev_cursor=prev_cursor)


async def one(conn: psycopg.AsyncConnection, target_id: int) -> Address | None:
    """One address by target id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("target_by_id").encode(), {"target_id": target_id})
        row = await cur.fetchone()
    if row is None:
        return None
    return msgspec.convert({k: v for k, v in row.items() if k != "sort_key"}, Address)


def _key(value: Any) -> str | float | int | None:
    if value is None or isinstance(value, str | int):
        return value
    return float(value)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
