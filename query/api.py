"""The JSON API under /api/v1, the live stream and /metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated

import msgspec
import psycopg
from litestar import get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter
from litestar.response import ServerSentEvent, Stream
from psycopg.rows import dict_row

from db.connector import connection
from db.queries import sql
from dockping.freshness import Freshness, freshness
from query import addresses, agents, history, latency, live, params
from query.addresses import STATUSES, AddressPage, Filters
from query.cursor import BadCursor, Cursor
from query.metrics import Exposition
from web.errors import ApiError


class ErrorBody(msgspec.Struct, frozen=True):
    """What every error answer carries: a code, a sentence, and the parameter at fault."""

    error: str
    detail: str
    field: str | None = None


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    words = {
        400: "A bad parameter; `field` names it.",
        401: "query.token is set and the request does not carry it.",
        404: "No such target or container.",
        503: "The database is unavailable; retry after Retry-After seconds.",
    }
    return {
        code: ResponseSpec(ErrorBody, description=words[code], generate_examples=False)
        for code in (*codes, 401, 503)
    }


Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Rows per page (1-500).")]
CursorParam = Annotated[
    str | None, QueryParameter(description="Opaque cursor from a previous page.")
]
StatusParam = Annotated[
    str | None, QueryParameter(description="up, down, stopped or unknown; several comma-separated.")
]
TextParam = Annotated[
    str | None, QueryParameter(description="Text in the container name, image or IP address.")
]
AgentParam = Annotated[str | None, QueryParameter(description="Only this agent's rows.")]
SortParam = Annotated[str, QueryParameter(description="name, status, latency or last_ok.")]
HealthParam = Annotated[
    str | None,
    QueryParameter(
        description="Comma-separated Docker health states to keep: healthy, unhealthy, starting."
    ),
]
TargetId = Annotated[int, PathParameter(description="The target's id.", ge=1, le=2**31 - 1)]
FromParam = Annotated[
    str | None,
    QueryParameter(
        name="from", description="RFC 3339 start of the range (default: `to` minus one hour)."
    ),
]
ToParam = Annotated[
    str | None, QueryParameter(description="RFC 3339 end of the range (default: now).")
]
BucketParam = Annotated[
    str,
    QueryParameter(
        description="Bucket width: a whole number and s, m, h or d (10s, 1m, 1h). "
        "Whole minutes read the per-minute rollup; finer buckets read raw events."
    ),
]
IdsParam = Annotated[
    str | None, QueryParameter(description="Comma-separated target ids to follow (at most 500).")
]


def filters(
    status: str | None, q: str | None, agent: str | None, health: str | None = None
) -> Filters:
    """The listing filters, each checked."""
    statuses = params.listed(status, "status", STATUSES)
    if q is not None and (len(q) > 200 or "\x00" in q):
        params.bad("q", "q must be at most 200 characters, without NUL")
    if agent is not None and (len(agent) > 256 or "\x00" in agent):
        params.bad("agent", "agent must be at most 256 characters, without NUL")
    healths = params.listed(health, "health", addresses.HEALTHS)
    return Filters(statuses=statuses, q=q or "", agent=agent or "", healths=healths)


@dataclass(frozen=True)
class PageRequest:
    """A checked request for one page of the address listing."""

    filters: Filters
    sort: str
    position: Cursor | None
    limit: int


def page_request(
    limit: int,
    cursor: str | None,
    status: str | None,
    q: str | None,
    agent: str | None,
    sort: str,
    health: str | None = None,
) -> PageRequest:
    """Check the listing's parameters, before any database work."""
    if sort not in addresses.SORTS:
        params.bad(
            "sort", f"unknown sort {sort[:40]!r}; expected one of {', '.join(addresses.SORTS)}"
        )
    chosen = filters(status, q, agent, health)
    try:
        position = addresses.parse_cursor(cursor, sort)
    except BadCursor as exc:
        params.bad("cursor", str(exc))
    return PageRequest(chosen, sort, position, limit)


async def address_page(
    conn: psycopg.AsyncConnection, wanted: PageRequest, fresh: Freshness
) -> AddressPage:
    """One page of the address listing."""
    return await addresses.page(
        conn, wanted.filters, wanted.sort, wanted.position, wanted.limit, fresh
    )


async def require_target(conn: psycopg.AsyncConnection, target_id: int) -> None:
    """A 404 unless the target exists."""
    found = await (await conn.execute(sql("target_exists"), {"target_id": target_id})).fetchone()
    if found is None:
        raise ApiError(404, "not_found", f"no target {target_id}", "target_id")


@get("/api/v1/addresses", tags=["addresses"], responses=_errors(400))
async def list_addresses(
    state: State,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: StatusParam = None,
    q: TextParam = None,
    agent: AgentParam = None,
    sort: SortParam = "name",
    health: HealthParam = None,
) -> AddressPage:
    """Every address with its latest state, in keyset pages (next_cursor, prev_cursor)."""
    wanted = page_request(limit, cursor, status, q, agent, sort, health)
    async with connection(state.pool) as conn:
        return await address_page(conn, wanted, freshness(state.settings, datetime.now(UTC)))


@get("/api/v1/targets/{target_id:int}", tags=["targets"], responses=_errors(400, 404))
async def get_target(state: State, target_id: TargetId) -> addresses.Address:
    """One target with its current state."""
    async with connection(state.pool) as conn:
        found = await addresses.one(conn, target_id, freshness(state.settings, datetime.now(UTC)))
    if found is None:
        raise ApiError(404, "not_found", f"no target {target_id}", "target_id")
    return found


def latency_range(
    start_text: str | None, end_text: str | None, bucket_text: str, max_points: int
) -> tuple[datetime, datetime, timedelta]:
    """The checked (from, to, bucket) of a latency request."""
    width = params.bucket(bucket_text)
    end = params.rfc3339(end_text, "to") or datetime.now(UTC)
    start = params.rfc3339(start_text, "from") or end - timedelta(hours=1)
    if start >= end:
        params.bad("from", "from must be before to")
    if end - start > timedelta(days=3660):
        params.bad("from", "the range must be at most ten years")
    count = latency.point_count(start, end, width)
    if count > max_points:
        params.bad(
            "bucket",
            f"{bucket_text} buckets over this range make {count} points, more than "
            f"query.max_points ({max_points}): choose a larger bucket or a shorter range",
        )
    return start, end, width


@get("/api/v1/targets/{target_id:int}/latency", tags=["targets"], responses=_errors(400, 404))
async def target_latency(
    state: State,
    target_id: TargetId,
    start: FromParam = None,
    to: ToParam = None,
    bucket: BucketParam = "1m",
) -> latency.LatencySeries:
    """A target's latency per bucket: probes, failures, avg/p50/p95/max of the successes."""
    first, last, width = latency_range(start, to, bucket, state.settings.query.max_points)
    async with connection(state.pool) as conn:
        await require_target(conn, target_id)
        return await latency.series(conn, target_id, first, last, width, bucket)


@get("/api/v1/targets/{target_id:int}/events", tags=["targets"], responses=_errors(400, 404))
async def target_events(
    state: State, target_id: TargetId, limit: Limit = 100, cursor: CursorParam = None
) -> history.ProbePage:
    """A target's raw probe events, newest first, in keyset pages."""
    before = params.time_cursor(cursor)
    async with connection(state.pool) as conn:
        await require_target(conn, target_id)
        return await history.probes(conn, target_id, before, limit)


@get(
    "/api/v1/containers/{container_id:str}/events", tags=["containers"], responses=_errors(400, 404)
)
async def container_events(
    state: State,
    container_id: Annotated[
        str, PathParameter(description="Docker container id, or a prefix of 12+ hex characters.")
    ],
    agent: AgentParam = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> history.LifecyclePage:
    """A container's lifecycle events (start, stop, die, health, ...), newest first."""
    wanted = params.container_id(container_id)
    before = params.lifecycle_cursor(cursor)
    if agent is not None and (len(agent) > 256 or "\x00" in agent):
        params.bad("agent", "agent must be at most 256 characters, without NUL")
    async with connection(state.pool) as conn:
        found = await history.containers(conn, wanted, agent)
        if not found:
            raise ApiError(404, "not_found", f"no container {wanted[:64]!r}", "container_id")
        return await history.lifecycle(conn, found, before, limit)


@get("/api/v1/agents", tags=["agents"], responses=_errors())
async def list_agents(state: State) -> list[agents.AgentInfo]:
    """Every agent with its last heartbeat."""
    async with connection(state.pool) as conn:
        return await agents.every(conn)


@get("/api/v1/stream", include_in_schema=False)
async def live_stream(state: State, ids: IdsParam = None) -> ServerSentEvent:
    """Server-sent events: `rows` with the current state of these targets whenever they change."""
    chosen = params.target_ids(ids)
    if not chosen:
        params.bad("ids", "ids must name at least one target")
    return ServerSentEvent(
        live.stream(state.hub, state.pool, chosen, partial(freshness, state.settings))
    )


@get("/metrics", tags=["health"], responses=_errors())
async def metrics(state: State) -> Stream:
    """Prometheus metrics: dockping_target_up, dockping_target_stale and
    dockping_target_latency_seconds."""
    fresh = freshness(state.settings, datetime.now(UTC))
    scrape = Exposition()
    # The rows arrive in chunks and go to the scrape's spools, so that neither the rows nor
    # the text of a large fleet sit in memory whole; the text streams once all are read (a
    # database failure is still a 503, not a cut-off scrape).
    try:
        async with connection(state.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
            async for row in cur.stream(
                sql("metrics_targets"),
                {**fresh.params(), "statuses": list(addresses.LISTED)},
                size=METRICS_CHUNK,
            ):
                scrape.add(row)
    except BaseException:
        scrape.close()
        raise
    return Stream(scrape.chunks(), media_type="text/plain; version=0.0.4; charset=utf-8")


# Rows fetched from the database at a time for /metrics.
METRICS_CHUNK = 2000


HANDLERS = [
    list_addresses,
    get_target,
    target_latency,
    target_events,
    container_events,
    list_agents,
    live_stream,
    metrics,
]
