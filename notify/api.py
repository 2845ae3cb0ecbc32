"""The notifier's HTTP API: silences (maintenance windows), /healthz and OpenAPI at /schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Litestar, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import Body, PathParameter
from psycopg.types.json import Jsonb

from db.connector import connection
from db.queries import sql
from dockping import __version__, tokens
from dockping.settings import Duration, Settings
from dockping.web import EXCEPTION_HANDLERS, ApiError, healthz, pool_lifespan
from notify.main import Notifier
from notify.rules import Match

MAX_SILENCE = 366 * 86400.0


class SilenceIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new silence: what it mutes, for how long ("2h", or seconds), and why."""

    match: Match
    duration: str | float
    reason: str


class Silence(msgspec.Struct):
    """A silence as stored."""

    id: int
    created_at: datetime
    ends_at: datetime
    match: Match
    reason: str


class Silences(msgspec.Struct):
    """The active silences."""

    items: list[Silence]


def _silence(row: tuple[Any, ...]) -> Silence:
    return Silence(row[0], row[1], row[2], msgspec.convert(row[3], Match, strict=False), row[4])


async def require_token(conn: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Let through only requests with the notifier's bearer token."""
    expected: str = conn.app.state.token
    given = tokens.bearer(conn.headers.get("authorization"))
    if given is None or not tokens.same(given, expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _duration(value: str | float) -> float:
    if isinstance(value, str):
        try:
            seconds = float(Duration.parse(value))
        except ValueError as exc:
            raise ApiError(400, "invalid", str(exc), "$.duration") from None
    else:
        seconds = float(value)
    if not 0 < seconds <= MAX_SILENCE:
        raise ApiError(
            400, "invalid", "duration must be longer than zero and at most 366d", "$.duration"
        )
    return seconds


@post("/api/v1/silences", guards=[require_token], tags=["silences"], status_code=201)
async def add_silence(
    data: Annotated[SilenceIn, Body(description="The silence to add.")], state: State
) -> Silence:
    """Mute matching notifications for a while; the match needs at least one field."""
    seconds = _duration(data.duration)
    if data.match.is_empty():
        raise ApiError(400, "invalid", "the match needs at least one field", "$.match")
    if not data.reason.strip():
        raise ApiError(400, "invalid", "a reason is required", "$.reason")
    ends_at = datetime.now(UTC) + timedelta(seconds=seconds)
    async with connection(state.pool) as conn, conn.transaction():
        cursor = await conn.execute(
            sql("notify_insert_silence"),
            {
                "ends_at": ends_at,
                "match": Jsonb(msgspec.to_builtins(data.match)),
                "reason": data.reason.strip(),
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return _silence(row)


@get("/api/v1/silences", guards=[require_token], tags=["silences"])
async def list_silences(state: State) -> Silences:
    """The silences that are not over yet."""
    async with connection(state.pool) as conn, conn.transaction():
        cursor = await conn.execute(sql("notify_active_silences"), {"now": datetime.now(UTC)})
        rows = await cursor.fetchall()
    return Silences([_silence(row) for row in rows])


@delete("/api/v1/silences/{silence_id:int}", guards=[require_token], tags=["silences"])
async def remove_silence(
    silence_id: Annotated[int, PathParameter(description="The silence's id.", ge=1)], state: State
) -> None:
    """End a silence now; 404 when there is none with that id."""
    async with connection(state.pool) as conn, conn.transaction():
        cursor = await conn.execute(sql("notify_delete_silence"), {"silence_id": silence_id})
        row = await cursor.fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"no silence {silence_id}", "silence_id")


def create_app(settings: Settings, database_url: str, *, follow: bool = True) -> Litestar:
    """The notifier app; with follow, its lifespan also runs the notifier itself."""
    token = settings.notify.token or tokens.shared_token(settings.ingest.token, settings.data_path)
    open_pool = pool_lifespan(database_url, settings.database.pool_size, "notify")
    notifier = Notifier(settings, database_url)

    @asynccontextmanager
    async def run_notifier(app: Litestar) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            if follow:
                group.start_soon(notifier.run, app.state.pool)
            yield
            group.cancel_scope.cancel()

    return Litestar(
        route_handlers=[add_silence, list_silences, remove_silence, healthz],
        lifespan=[open_pool, run_notifier],
        state=State({"token": token, "notifier": notifier}),
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="dockping notify", version=__version__, path="/schema"),
        logging_config=None,
        debug=False,
    )
