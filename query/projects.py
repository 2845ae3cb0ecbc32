"""Projects: one group per compose project or Swarm stack, its status the worst of its containers'."""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg

from db.queries import sql
from query import group_uptime
from query.containers import GroupStatus


class Project(msgspec.Struct, frozen=True):
    """One project with its containers' roll-ups ('' is the group without a project)."""

    project: str
    containers_up: int
    containers_total: int
    addresses_up: int
    addresses_total: int
    status: GroupStatus
    uptime_24h: float | None


async def every(
    conn: psycopg.AsyncConnection, now: datetime, uptime: group_uptime.ProjectUptime
) -> list[Project]:
    """Every project, by name, the group without a project first."""
    async with conn.cursor(binary=True) as cur:
        await cur.execute(sql("projects_list").encode())
        rows = await cur.fetchall()
    counts = await uptime.read(conn, now)
    return [
        Project(
            project=r[0],
            containers_up=r[1],
            containers_total=r[2],
            addresses_up=r[3],
            addresses_total=r[4],
            status=r[5],
            uptime_24h=group_uptime.ratio(*counts.get(r[0], (0, 0))),
        )
        for r in rows
    ]
