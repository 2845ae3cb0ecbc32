"""The query service: the /addresses page, the JSON API under /api/v1, and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Litestar
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from db.connector import DatabaseDeadline
from dockping import __version__
from dockping.freshness import freshness, view_settings
from dockping.settings import Settings
from query import api, auth, display, group_uptime, groups_routes, pages, public_status
from query.addresses import UptimeCache
from query.headers import security_headers
from query.live import hub_lifespan
from web.errors import EXCEPTION_HANDLERS
from web.pool import healthz, pool_lifespan
from web.ratelimit import FailureLimiter

HERE = Path(__file__).parent


def templates() -> Environment:
    """The Jinja environment, autoescaping everything, with the display filters."""
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        enable_async=False,
    )
    environment.filters.update(
        latency=display.latency,
        when=display.when,
        uptime=display.uptime,
        percent=group_uptime.percent,
    )
    environment.globals.update(since=display.since, note=display.note)
    return environment


def views_as_the_settings(
    settings: Settings,
) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
    """Each new connection's views (latest_state, the roll-ups) take their freshness from
    these settings, as the queries that are given it explicitly do."""
    values = view_settings(freshness(settings, datetime.now(UTC)))

    async def connected(conn: psycopg.AsyncConnection) -> None:
        for name, value in values.items():
            await conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        await conn.commit()

    return connected


class RefuseNulPaths:
    """ASGI middleware: a static file's path with a NUL (%00) names no file; 400, not a 500
    from the file system. (Other routes name the bad parameter themselves.)"""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer 400 to a static path with a NUL; pass anything else on."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/static/") and "\x00" in path:
            body = msgspec.json.encode(
                {
                    "error": "bad_request",
                    "detail": "the path holds a NUL character (%00)",
                    "field": "path",
                }
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings, database_url: str) -> Litestar:
    """The query app, for these settings and this database."""

    app = Litestar(
        route_handlers=[
            *api.HANDLERS,
            *pages.HANDLERS,
            *groups_routes.HANDLERS,
            auth.login_form,
            auth.login,
            auth.logout,
            healthz,
            create_static_files_router(
                path="/static", directories=[HERE / "static"], include_in_schema=False
            ),
        ],
        lifespan=[
            pool_lifespan(
                database_url,
                settings.database.pool_size,
                "query",
                views_as_the_settings(settings),
            ),
            hub_lifespan(database_url),
        ],
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(templates())),
        before_request=public_status.guard(
            settings.query.token, settings.query.public_status, auth.guard(settings.query.token)
        ),
        before_send=[security_headers],
        middleware=[
            RefuseNulPaths,
            DefineMiddleware(DatabaseDeadline, seconds=settings.database.request_timeout),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="dockping query",
            version=__version__,
            path="/schema",
            description="The read side of dockping: addresses, targets, latency, events, agents.",
        ),
        logging_config=None,
        debug=False,
    )
    app.state.settings = settings
    app.state.read_token = settings.query.token
    app.state.sessions = auth.Sessions(settings.query.token, settings.query.session_lifetime)
    app.state.failures = FailureLimiter()
    app.state.uptime_cache = UptimeCache()
    app.state.hourly_uptime_cache = UptimeCache()
    app.state.project_uptime = group_uptime.ProjectUptime()
    return app
