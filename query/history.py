"""Event history, newest first, in keyset pages: a target's probes, a container's lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row

from db.queries import sql
from query.cursor import LifecycleCursor, TimeCursor, encode

# Docker's own ids are hex; a prefix of at least this many characters names a container too.
MIN_ID_PREFIX = 12


class ProbeRecord(msgspec.Struct, frozen=True):
    """One raw probe event of a target."""

    time: datetime
    ok: bool
    latency_ms: float | None
    error: str | None


class ProbePage(msgspec.Struct, frozen=True):
    """A page of a target's raw probe events, newest first."""

    items: list[ProbeRecord]
    next_cursor: str | None


class LifecycleRecord(msgspec.Struct, frozen=True):
    """One lifecycle event of a container (start, stop, die, health_status, ...)."""

    time: datetime
    agent: str
    container_id: str
    action: str
    exit_code: int | None
    detail: dict[str, Any] | None


class LifecyclePage(msgspec.Struct, frozen=True):
    """A page of lifecycle events, newest first."""

    items: list[LifecycleRecord]
    next_cursor: str | None


class Container(msgspec.Struct, frozen=True):
    """A container as its agent last described it."""

    container_key: int
    agent: str
    container_id: str
    name: str
    image: str
    compose_project: str
    compose_service: str


async def probes(
    conn: psycopg.AsyncConnection, target_id: int, before: datetime | None, limit: int
) -> ProbePage:
    """A page of a target's probe events older than `before` (the newest when None)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql("target_events_page"),
            {"target_id": target_id, "before": before, "limit": limit + 1},
        )
        rows = await cur.fetchall()
    items = [msgspec.convert(row, ProbeRecord) for row in rows[:limit]]
    next_cursor = encode(TimeCursor(items[-1].time)) if len(rows) > limit else None
    return ProbePage(items=items, next_cursor=next_cursor)


async def containers(
    conn: psycopg.AsyncConnection, container_id: str, agent: str | None
) -> list[Container]:
    """The containers with this Docker id, or whose id starts with it (12+ hex characters)."""
    prefix = None
    if len(container_id) >= MIN_ID_PREFIX and all(c in "0123456789abcdef" for c in container_id):
        prefix = container_id + "%"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql("containers_by_id"),
            {"container_id": container_id, "prefix": prefix, "agent": agent},
        )
        return [msgspec.convert(row, Container) for row in await cur.fetchall()]


async def lifecycle(
    conn: psycopg.AsyncConnection,
    found: list[Container],
    before: LifecycleCursor | None,
    limit: int,
) -> LifecyclePage:
    """A page of the lifecycle events of these containers, newest first."""
    by_key = {c.container_key: c for c in found}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql("container_events_page"),
            {
                "container_keys": list(by_key),
                "before": before.time if before else None,
                "before_key": before.container_key if before else None,
                "before_action": before.action if before else None,
                "limit": limit + 1,
            },
        )
        rows = await cur.fetchall()
    items = [
        LifecycleRecord(
            time=row["time"],
            agent=by_key[row["container_key"]].agent,
            container_id=by_key[row["container_key"]].container_id,
            action=row["action"],
            exit_code=row["exit_code"],
            detail=row["detail"],
        )
        for row in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode(LifecycleCursor(last["time"], last["container_key"], last["action"]))
    return LifecyclePage(items=items, next_cursor=next_cursor)
