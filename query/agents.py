"""Agents and their heartbeats; an agent silent for three heartbeat intervals gets a banner."""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg
from psycopg.rows import dict_row

from db.queries import sql
from dockping.freshness import Freshness


class AgentInfo(msgspec.Struct, frozen=True):
    """An agent and its last heartbeat."""

    agent: str
    last_heartbeat_at: datetime | None
    version: str | None
    docker_ok: bool | None
    targets: int | None
    spool_bytes: int | None
    dropped: int | None


class SilentAgent(msgspec.Struct, frozen=True):
    """An agent not heard from for query.freshness.MISSED_HEARTBEATS heartbeat intervals."""

    agent: str
    last_heartbeat_at: datetime | None


async def every(conn: psycopg.AsyncConnection) -> list[AgentInfo]:
    """Every agent with its last heartbeat."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("agents_list"))
        return [msgspec.convert(row, AgentInfo) for row in await cur.fetchall()]


async def silent(conn: psycopg.AsyncConnection, fresh: Freshness) -> list[SilentAgent]:
    """Agents whose last heartbeat (or first appearance) is older than fresh.silent_after
    (MISSED_HEARTBEATS intervals): every target of theirs is stale."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("silent_agents"), fresh.params())
        return [msgspec.convert(row, SilentAgent) for row in await cur.fetchall()]
