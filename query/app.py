"""The query service: the /addresses page, the JSON API under /api/v1, and /metrics."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.params import PathParameter, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from psycopg.rows import dict_row

from db.connector import connection
from db.queries import sql
from dockping import __version__, tokens
from dockping.settings import Settings
from dockping.web import EXCEPTION_HANDLERS, ApiError, healthz, pool_lifespan
from query import addresses
from query.addresses import STATUSES, AddressPage, Filters
from query.cursor import BadCursor
from query.metrics import exposition

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


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


class AgentInfo(msgspec.Struct, frozen=True):
    """An agent and its last heartbeat."""

    agent: str
    last_heartbeat_at: datetime | None
    version: str | None
    docker_ok: bool | None
    targets: int | None
    spool_bytes: int | None
    dropped: int | None


Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Rows per page.")]
CursorParam = Annotated[str | None, QueryParameter(description="Opaque cursor of a previous page.")]
StatusParam = Annotated[
    str | None, QueryParameter(description="up, down, stopped or unknown; several comma-separated.")
]
TextParam = Annotated[
    str | None, QueryParameter(description="Text in the container name, image or IP address.")
]
AgentParam = Annotated[str | None, QueryParameter(description="Only this agent's targets.")]
TargetId = Annotated[int, PathParameter(description="The target's id.")]
SortParam = Annotated[str, QueryParameter(description="name, status, latency or last_ok.")]


def _filters(status: str | None, q: str | None, agent: str | None) -> Filters:
    statuses: tuple[str, ...] = ()
    if status:
        statuses = tuple(s.strip() for s in status.split(",") if s.strip())
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ApiError(
                400,
                "bad_parameter",
                f"unknown status {bad[0]!r}; expected one of {', '.join(STATUSES)}",
                "status",
            )
    if q is not None and len(q) > 200:
        raise ApiError(400, "bad_parameter", "q is longer than 200 characters", "q")
    if agent is not None and len(agent) > 256:
        raise ApiError(400, "bad_parameter", "agent is longer than 256 characters", "agent")
    return Filters(statuses=statuses, q=q or "", agent=agent or "")


async def _address_page(
    state: State,
    limit: int,
    cursor: str | None,
    status: str | None,
    q: str | None,
    agent: str | None,
    sort: str,
) -> AddressPage:
    if sort not in addresses.SORTS:
        raise ApiError(
            400,
            "bad_parameter",
            f"unknown sort {sort[:40]!r}; expected one of {', '.join(addresses.SORTS)}",
            "sort",
        )
    filters = _filters(status, q, agent)
    try:
        position = addresses.parse_cursor(cursor, sort)
    except BadCursor as exc:
        raise ApiError(400, "bad_parameter", str(exc), "cursor") from None
    async with connection(state.pool) as conn:
        return await addresses.page(conn, filters, sort, position, limit)


@get("/api/v1/addresses", tags=["addresses"])
async def list_addresses(
    state: State,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: StatusParam = None,
    q: TextParam = None,
    agent: AgentParam = None,
    sort: SortParam = "name",
) -> AddressPage:
    """Every address with its latest state, in keyset pages."""
    return await _address_page(state, limit, cursor, status, q, agent, sort)


@get("/api/v1/targets/{target_id:int}", tags=["targets"])
async def get_target(state: State, target_id: TargetId) -> addresses.Address:
    """One target with its current state."""
    async with connection(state.pool) as conn:
        found = await addresses.one(conn, target_id)
    if found is None:
        raise ApiError(404, "not_found", f"no target {target_id}", "target_id")
    return found


@get("/api/v1/targets/{target_id:int}/events", tags=["targets"])
async def target_events(
    state: State, target_id: TargetId, limit: Limit = 100, cursor: CursorParam = None
) -> ProbePage:
    """A target's raw probe events, newest first, in keyset pages."""
    before = None
    if cursor:
        try:
            before = datetime.fromisoformat(decode_time_cursor(cursor))
            if before.tzinfo is None:
                raise ValueError("no timezone")
        except ValueError:
            raise ApiError(400, "bad_parameter", "malformed cursor", "cursor") from None
    async with connection(state.pool) as conn:
        exists = await (
            await conn.execute(sql("target_exists"), {"target_id": target_id})
        ).fetchone()
        if exists is None:
            raise ApiError(404, "not_found", f"no target {target_id}", "target_id")
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql("target_events_page"),
                {"target_id": target_id, "before": before, "limit": limit + 1},
            )
            rows = await cur.fetchall()
    items = [msgspec.convert(row, ProbeRecord) for row in rows[:limit]]
    next_cursor = encode_time_cursor(items[-1].time.isoformat()) if len(rows) > limit else None
    return ProbePage(items=items, next_cursor=next_cursor)


@get("/api/v1/agents", tags=["agents"])
async def list_agents(state: State) -> list[AgentInfo]:
    """Every agent with its last heartbeat."""
    async with connection(state.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("agents_list"))
        return [msgspec.convert(row, AgentInfo) for row in await cur.fetchall()]


@get("/addresses", tags=["pages"], include_in_schema=False)
async def addresses_page(
    state: State,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: StatusParam = None,
    q: TextParam = None,
    agent: AgentParam = None,
    sort: SortParam = "name",
) -> Template:
    """The status table, for people."""
    result = await _address_page(state, limit, cursor, status, q, agent, sort)
    return Template(
        template_name="addresses.html",
        context={
            "page": result,
            "filters": {
                "status": status or "",
                "q": q or "",
                "agent": agent or "",
                "sort": sort,
                "limit": limit,
            },
            "statuses": STATUSES,
            "sorts": list(addresses.SORTS),
        },
    )


@get("/", include_in_schema=False)
async def index() -> Response[None]:
    """The status table is the front page."""
    return Response(None, status_code=302, headers={"Location": "/addresses"})


@get("/metrics", tags=["health"], include_in_schema=True)
async def metrics(state: State) -> Response[bytes]:
    """Prometheus metrics: dockping_target_up and dockping_target_latency_seconds."""
    async with connection(state.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("metrics_targets"))
        rows = await cur.fetchall()
    return Response(exposition(rows), media_type="text/plain; version=0.0.4; charset=utf-8")


def encode_time_cursor(text: str) -> str:
    """An opaque cursor for a time position."""
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_time_cursor(text: str) -> str:
    """The time position of an opaque cursor."""
    import base64
    import binascii

    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None


def _security_headers(settings: Settings) -> Any:
    async def after_request(response: Response[Any]) -> Response[Any]:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return after_request


def _read_token_guard(settings: Settings) -> Any:
    token = settings.query.token

    async def before_request(request: Request[Any, Any, Any]) -> None:
        if (
            not token
            or request.url.path in ("/healthz",)
            or request.url.path.startswith("/static/")
        ):
            return
        given = (
            tokens.bearer(request.headers.get("authorization"))
            or request.cookies.get("dockping_token")
            or request.query_params.get("token")
        )
        if given is None or not tokens.same(given, token):
            raise ApiError(
                401,
                "unauthorized",
                "a read token is required (query.token)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return before_request


def create_app(settings: Settings, database_url: str) -> Litestar:
    """The query app, for these settings and this database."""
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        enable_async=False,
    )
    return Litestar(
        route_handlers=[
            list_addresses,
            get_target,
            target_events,
            list_agents,
            addresses_page,
            index,
            metrics,
            healthz,
            create_static_files_router(
                path="/static", directories=[HERE / "static"], include_in_schema=False
            ),
        ],
        lifespan=[pool_lifespan(database_url, settings.database.pool_size, "query")],
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment)),
        before_request=_read_token_guard(settings),
        after_request=_security_headers(settings),
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="dockping query", version=__version__, path="/schema"),
        logging_config=None,
        debug=False,
    )
