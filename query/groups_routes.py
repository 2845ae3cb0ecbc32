"""The grouped views: containers and projects (API and pages), the overview, status pages, badges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import PathParameter, QueryParameter
from litestar.response import ServerSentEvent, Template
from psycopg.rows import dict_row

from db.connector import connection
from db.queries import sql
from dockping.freshness import freshness
from query import agents, auth, badges, containers, group_uptime, live, params, projects
from query import status_page as status_pages
from query.api import AgentParam, CursorParam, Limit, TextParam, _errors
from query.cursor import BadCursor
from query.pages import QuietTemplate
from web.errors import ApiError

GroupStatusParam = Annotated[
    str | None,
    QueryParameter(
        description="up, degraded, down, stopped, stale, unknown or gone; several "
        "comma-separated. Without it, every container but the gone ones."
    ),
]
ProjectParam = Annotated[
    str | None,
    QueryParameter(description="Only this compose project or stack; `-` for those without one."),
]
MetricParam = Annotated[
    str, QueryParameter(description="status (the default) or uptime (the last 24 h).")
]
NameParam = Annotated[str, PathParameter(description="The name, followed by .svg.")]
ProjectName = Annotated[str, PathParameter(description="The compose project or stack.")]
BADGE_CACHE = "max-age=30, must-revalidate"


def _text(value: str | None, field: str, longest: int) -> str:
    if value is not None and (len(value) > longest or "\x00" in value):
        params.bad(field, f"{field} must be at most {longest} characters, without NUL")
    return value or ""


def container_filters(
    status: str | None, q: str | None, agent: str | None, project: str | None
) -> containers.Filters:
    """The container listing's filters, each checked."""
    statuses = params.listed(status, "status", containers.STATUSES)
    return containers.Filters(
        statuses=statuses,
        q=_text(q, "q", 200),
        agent=_text(agent, "agent", 256),
        project=_text(project, "project", 1024) or None,
    )


def _cursor(text: str | None) -> Any:
    try:
        return containers.parse_cursor(text)
    except BadCursor as exc:
        params.bad("cursor", str(exc))


@get("/api/v1/containers", tags=["containers"], responses=_errors(400))
async def list_containers(
    state: State,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: GroupStatusParam = None,
    q: TextParam = None,
    agent: AgentParam = None,
    project: ProjectParam = None,
) -> containers.ContainerPage:
    """Every container with the roll-up of its addresses, in name order, in keyset pages."""
    chosen = container_filters(status, q, agent, project)
    position = _cursor(cursor)
    async with connection(state.pool) as conn:
        found, _ = await containers.page(
            conn, chosen, position, limit, datetime.now(UTC), state.uptime_cache
        )
    return found


@get("/api/v1/projects", tags=["projects"], responses=_errors())
async def list_projects(state: State) -> list[projects.Project]:
    """Every compose project or stack (and the group without one) with its containers' roll-up."""
    async with connection(state.pool) as conn:
        return await projects.every(conn, datetime.now(UTC), state.project_uptime)


@get("/api/v1/stream/changes", include_in_schema=False)
async def change_stream(state: State) -> ServerSentEvent:
    """Server-sent events: `changed` whenever ingest commits events (at most once a second)."""
    return ServerSentEvent(live.changes(state.hub))


@get("/containers", include_in_schema=False)
async def containers_page(
    state: State,
    limit: Limit = 50,
    cursor: CursorParam = None,
    status: GroupStatusParam = None,
    q: TextParam = None,
    agent: AgentParam = None,
    project: ProjectParam = None,
) -> Template:
    """The container table, each row expanding to its addresses."""
    chosen = container_filters(status, q, agent, project)
    position = _cursor(cursor)
    now = datetime.now(UTC)
    async with connection(state.pool) as conn:
        found, rows = await containers.page(conn, chosen, position, limit, now, state.uptime_cache)
        silent = await agents.silent(conn, freshness(state.settings, now))
    kept = {
        "status": status or "",
        "q": q or "",
        "agent": agent or "",
        "project": project or "",
    }
    if limit != 50:
        kept["limit"] = str(limit)
    kept = {k: v for k, v in kept.items() if v}
    return QuietTemplate(
        template_name="containers.html",
        context={
            "page": found,
            "rows": [(r, r.addresses) for r in rows],
            "filters": {"status": "", "q": "", "agent": "", "project": "", **kept},
            "statuses": containers.STATUSES,
            "no_project": containers.NO_PROJECT,
            "now": now,
            "silent": silent,
            "next_href": _href("/containers", kept, found.next_cursor),
            "prev_href": _href("/containers", kept, found.prev_cursor),
            "api_query": urlencode({**kept, **({"cursor": cursor} if cursor else {})}),
        },
    )


def _href(path: str, kept: dict[str, str], cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return f"{path}?{urlencode({**kept, 'cursor': cursor})}"


async def _projects_page(state: State, overview: bool) -> Template:
    now = datetime.now(UTC)
    async with connection(state.pool) as conn:
        found = await projects.every(conn, now, state.project_uptime)
        silent = await agents.silent(conn, freshness(state.settings, now))
    totals = {
        "containers_up": sum(p.containers_up for p in found),
        "containers_total": sum(p.containers_total for p in found),
        "addresses_up": sum(p.addresses_up for p in found),
        "addresses_total": sum(p.addresses_total for p in found),
    }
    return QuietTemplate(
        template_name="projects.html",
        context={
            "projects": found,
            "totals": totals,
            "overview": overview,
            "no_project": containers.NO_PROJECT,
            "now": now,
            "silent": silent,
        },
    )


@get("/", include_in_schema=False)
async def overview(state: State) -> Template:
    """The front page: every project at a glance, with a link to every view."""
    return await _projects_page(state, overview=True)


@get("/projects", include_in_schema=False)
async def projects_page(state: State) -> Template:
    """Every project with its containers' roll-up."""
    return await _projects_page(state, overview=False)


@get("/status/{project:path}", include_in_schema=False)
async def status_page(state: State, project: ProjectName) -> Template:
    """A project's compact, read-only status page, to share."""
    name = _text(project.removeprefix("/"), "project", 1024)
    async with connection(state.pool) as conn:
        page = await status_pages.read(
            conn,
            name,
            datetime.now(UTC),
            state.hourly_uptime_cache,
            detail=state.settings.query.status_detail,
        )
    if page is None:
        raise ApiError(404, "not_found", f"no project {name[:64]!r}", "project")
    return QuietTemplate(
        template_name="status.html",
        context={"p": page, "now": datetime.now(UTC), "days": status_pages.DAYS},
    )


def _allowed(request: Request[Any, Any, Any], state: State, projects_of: list[str]) -> bool:
    token: str = state.read_token
    if not token or auth.allowed(request, token):
        return True
    public = set(state.settings.query.public_status)
    return bool(projects_of) and all(p in public for p in projects_of)


def _badge(request: Request[Any, Any, Any], body: str) -> Response[bytes]:
    tag = badges.etag(body)
    headers = {"ETag": tag, "Cache-Control": BADGE_CACHE}
    if tag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(body.encode(), media_type="image/svg+xml; charset=utf-8", headers=headers)


def _svg_name(name: str) -> str:
    name = name.removeprefix("/")  # a path parameter keeps its leading slash
    if not name.endswith(".svg"):
        raise ApiError(404, "not_found", "a badge's path ends in .svg", "name")
    return _text(name[: -len(".svg")], "name", 1024)


def _metric(metric: str) -> str:
    if metric not in ("status", "uptime"):
        params.bad("metric", "metric must be status or uptime")
    return metric


async def _render(
    state: State,
    label: str,
    metric: str,
    status: str | None,
    target_ids: list[int],
    *,
    hourly: bool = False,
) -> str:
    if metric == "status":
        return badges.status_badge(label, status)
    share = None
    if status is not None:
        async with connection(state.pool) as conn:
            now = datetime.now(UTC)
            counts = await (
                group_uptime.counts(
                    conn, target_ids, now, state.hourly_uptime_cache, group_uptime.HOURLY
                )
                if hourly
                else group_uptime.counts(conn, target_ids, now, state.uptime_cache)
            )
        share = group_uptime.share(counts, target_ids)
    return badges.uptime_badge(label, share)


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a read token is required: Authorization: Bearer <query.token>",
        headers={"WWW-Authenticate": "Bearer"},
    )


@get("/badge/project/{name:path}", tags=["badges"], responses=_errors())
async def project_badge(
    request: Request[Any, Any, Any], state: State, name: NameParam, metric: MetricParam = "status"
) -> Response[bytes]:
    """A project's status (or 24 h uptime) as an SVG badge; grey "unknown" for no such project."""
    project, chosen = _svg_name(name), _metric(metric)
    if not _allowed(request, state, [project]):
        raise _unauthorized()
    async with connection(state.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("badge_project").encode(), {"name": project})
        row = await cur.fetchone()
    status = row["status"] if row else None
    ids = row["target_ids"] if row else []
    body = await _render(state, project or "project", chosen, status, ids, hourly=True)
    return _badge(request, body)


@get("/badge/container/{name:path}", tags=["badges"], responses=_errors())
async def container_badge(
    request: Request[Any, Any, Any], state: State, name: NameParam, metric: MetricParam = "status"
) -> Response[bytes]:
    """A container's status (or 24 h uptime) by name, as an SVG badge."""
    container, chosen = _svg_name(name), _metric(metric)
    async with connection(state.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("badge_container").encode(), {"name": container})
        row = await cur.fetchone()
    if not _allowed(request, state, row["projects"] if row else []):
        raise _unauthorized()
    status = row["status"] if row else None
    body = await _render(
        state, container or "container", chosen, status, row["target_ids"] if row else []
    )
    return _badge(request, body)


@get("/badge/target/{name:path}", tags=["badges"], responses=_errors(400))
async def target_badge(
    request: Request[Any, Any, Any], state: State, name: NameParam, metric: MetricParam = "status"
) -> Response[bytes]:
    """One address's status (or 24 h uptime) by target id, as an SVG badge."""
    text, chosen = _svg_name(name), _metric(metric)
    if not text.isdigit() or len(text) > 10 or int(text) >= 2**31:
        params.bad("id", "a target badge is /badge/target/{id}.svg, id a target id")
    target_id = int(text)
    async with connection(state.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql("badge_target").encode(), {"target_id": target_id})
        row = await cur.fetchone()
    if not _allowed(request, state, [row["compose_project"]] if row else []):
        raise _unauthorized()
    status = row["status"] if row else None
    body = await _render(state, f"target {target_id}", chosen, status, [target_id])
    return _badge(request, body)


HANDLERS = [
    list_containers,
    list_projects,
    change_stream,
    containers_page,
    overview,
    projects_page,
    status_page,
    project_badge,
    container_badge,
    target_badge,
]
