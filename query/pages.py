"""The pages for people: the status table at /addresses and a detail page per target."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import psycopg
from litestar import get
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Template
from psycopg.rows import dict_row

from db.connector import connection
from db.queries import sql
from dockping.freshness import freshness
from query import addresses, agents, charts, display, history, latency, params
from query.api import (
    AgentParam,
    CursorParam,
    HealthParam,
    Limit,
    SortParam,
    StatusParam,
    TargetId,
    TextParam,
    address_page,
    page_request,
)
from query.charts import Change
from web.errors import ApiError

# The detail page's ranges and the bucket each is drawn with (a few hundred points at most).
RANGES: dict[str, tuple[timedelta, str]] = {
    "1h": (timedelta(hours=1), "1m"),
    "24h": (timedelta(hours=24), "5m"),
    "7d": (timedelta(days=7), "30m"),
    "30d": (timedelta(days=30), "2h"),
}
RangeParam = Annotated[str, QueryParameter(name="range", description="1h, 24h, 7d or 30d.")]


async def _silent(conn: psycopg.AsyncConnection, state: State, now: datetime) -> list[Any]:
    return await agents.silent(conn, freshness(state.settings, now))


class QuietTemplate(Template):
    """A template response rendered with the cycle collector paused.

    Autoescaping makes every value of the page a Markup, an object the collector tracks, and
    the table has about a thousand, all alive until the render joins them. Left running, the
    collector would stop mid-render to scan them and promote them to older generations, so
    that the full collections (tens of milliseconds on a service's heap) come several times
    as often. They are freed, by reference counting, as soon as the render ends; nothing
    else runs meanwhile (the render never awaits), so pausing the collector costs nothing.
    """

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        """Render as Template does, with the collector paused meanwhile."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return super().to_asgi_response(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()


@get("/addresses", include_in_schema=False)
async def addresses_page(
    state: State,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: StatusParam = None,
    q: TextParam = None,
    agent: AgentParam = None,
    sort: SortParam = "name",
    health: HealthParam = None,
) -> Template:
    """The status table, for people."""
    wanted = page_request(limit, cursor, status, q, agent, sort, health)
    now = datetime.now(UTC)
    async with connection(state.pool) as conn:
        result = await address_page(conn, wanted, freshness(state.settings, now))
        trends = await addresses.trends(
            conn, [a.target_id for a in result.items], now, state.uptime_cache
        )
        silent = await _silent(conn, state, now)
    base = {"status": status or "", "q": q or "", "agent": agent or "", "sort": sort}
    base["health"] = health or ""
    if limit != 50:
        base["limit"] = str(limit)
    kept = {k: v for k, v in base.items() if v and not (k == "sort" and v == "name")}
    return QuietTemplate(
        template_name="addresses.html",
        context={
            "page": result,
            "filters": base,
            "statuses": addresses.STATUSES,
            "healths": addresses.HEALTHS,
            "sorts": list(addresses.SORTS),
            "now": now,
            "silent": silent,
            "silent_agents": {agent.agent for agent in silent},
            "trends": trends,
            "sparklines": {
                target_id: charts.sparkline(
                    trend.offsets, trend.values, trend.failures, addresses.SPARKLINE.total_seconds()
                )
                for target_id, trend in trends.items()
            },
            "next_href": _href("/addresses", kept, result.next_cursor),
            "prev_href": _href("/addresses", kept, result.prev_cursor),
            "stream_ids": ",".join(str(a.target_id) for a in result.items),
        },
    )


def _href(path: str, kept: dict[str, str], cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return f"{path}?{urlencode({**kept, 'cursor': cursor})}"


@get("/targets/{target_id:int}", include_in_schema=False)
async def target_page(
    state: State,
    target_id: TargetId,
    chosen_range: RangeParam = "24h",
    cursor: CursorParam = None,
) -> Template:
    """One target: its state, a latency chart, its container's lifecycle and its probes."""
    if chosen_range not in RANGES:
        params.bad("range", f"range must be one of {', '.join(RANGES)}")
    before = params.time_cursor(cursor)
    span, bucket_text = RANGES[chosen_range]
    width = params.bucket(bucket_text)
    now = datetime.now(UTC)
    async with connection(state.pool) as conn:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql("target_detail"),
                {"target_id": target_id, **freshness(state.settings, now).params()},
            )
            target = await cur.fetchone()
        if target is None:
            raise ApiError(404, "not_found", f"no target {target_id}", "target_id")
        series = await latency.series(conn, target_id, now - span, now, width, bucket_text)
        probes = await history.probes(conn, target_id, before, 50)
        container = history.Container(
            container_key=target["container_key"],
            agent=target["agent"],
            container_id=target["container_id"],
            name=target["container_name"],
            image=target["image"],
            compose_project=target["compose_project"],
            compose_service="",
        )
        lifecycle = await history.lifecycle(conn, [container], None, 20)
        notifications = await _notifications(conn, target_id)
        silent = await _silent(conn, state, now)
    changes = charts.changes_between_buckets(series.points)
    if target["status_since"] is not None and target["status"] in ("up", "down", "stopped"):
        changes.append(Change(target["status_since"], target["status"], exact=True))
    title = (
        f"Latency of {target['container_name'] or target['container_id'][:12]}, last {chosen_range}"
    )
    chart = charts.latency_chart(series.points, series.start, series.end, width, changes, title)
    return Template(
        template_name="target.html",
        context={
            "t": target,
            "vantage_text": display.vantage_text(target["vantage_code"]),
            "now": now,
            "chart": chart,
            "series": series,
            "ranges": list(RANGES),
            "chosen_range": chosen_range,
            "probes": probes,
            "lifecycle": lifecycle,
            "notifications": notifications,
            "silent": silent,
            "failures": sum(p.failures for p in series.points),
            "total": sum(p.probes for p in series.points),
            "next_href": _href(
                f"/targets/{target_id}", {"range": chosen_range}, probes.next_cursor
            ),
        },
    )


async def _notifications(conn: psycopg.AsyncConnection, target_id: int) -> list[dict[str, Any]]:
    # Only a newer schema stops the service, so the database may not be migrated as far as
    # notification_history yet: then there is nothing to show.
    present = await (
        await conn.execute(sql("relation_exists"), {"name": "notification_history"})
    ).fetchone()
    if not present or not present[0]:
        return []
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql("notifications_recent"), {"target_id": target_id, "limit": 20})
            return list(await cur.fetchall())
    except psycopg.errors.Error:
        return []  # a view of another shape than expected: show nothing rather than fail


HANDLERS = [addresses_page, target_page]
