"""The notifier's HTTP API: silences (maintenance windows), /healthz and OpenAPI at /schema."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio
import msgspec
from litestar import Litestar, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.params import PathParameter
from psycopg.types.json import Jsonb

from db.connector import DatabaseDeadline, connection
from db.queries import sql
from dockping import __version__, tokens
from dockping.settings import Duration, Settings, SettingsError
from notify.main import Notifier
from notify.rules import Match
from web.errors import EXCEPTION_HANDLERS, ApiError
from web.pool import healthz, pool_lifespan
from web.ratelimit import FailureLimiter, client_address

MAX_SILENCE = 366 * 86400.0
# A silence shorter than a second could never be seen to act; a typo, or a probe for limits.
MIN_SILENCE = 1.0
MAX_REASON = 1000
MAX_GLOB = 1024
# A silence is a few hundred bytes; anything near this is not one.
MAX_BODY = 64 * 1024
_AT = re.compile(r"^(?P<text>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)


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
    """Let through only requests with the notifier's bearer token; 429 after many wrong ones."""
    expected: str = conn.app.state.token
    failures: FailureLimiter = conn.app.state.failures
    given = tokens.bearer(conn.headers.get("authorization"))
    if not failures.attempt(
        client_address(conn), lambda: given is not None and tokens.same(given, expected)
    ):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def decode_silence(body: bytes) -> SilenceIn:
    """A new silence from its JSON; ApiError 400 naming the bad field otherwise."""
    try:
        silence = msgspec.json.decode(body, type=SilenceIn)
    except msgspec.ValidationError as exc:
        found = _AT.match(str(exc))
        raise ApiError(
            400, "invalid", found.group("text") if found else str(exc), found and found["path"]
        ) from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid", *_undecodable(body)) from None
    texts = {
        f"$.match.{key}": value for key, value in msgspec.structs.asdict(silence.match).items()
    }
    texts["$.reason"] = silence.reason
    for field, value in texts.items():
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, "invalid", "must not hold a NUL character", field)
    for field, value in texts.items():
        limit = MAX_REASON if field == "$.reason" else MAX_GLOB
        if isinstance(value, str) and len(value) > limit:
            raise ApiError(400, "invalid", f"longer than {limit} characters", field)
    return silence


def _undecodable(body: bytes) -> tuple[str, str]:
    """Why msgspec could not decode a body, and where: it says nothing of a lone surrogate
    (an escape such as \\ud800 that is half of a character), which Python's json reads."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"malformed JSON: {exc}", "$"
    for path, value in _strings(data, "$"):
        if any("\ud800" <= char <= "\udfff" for char in value):
            return "holds a lone surrogate (half of a UTF-16 pair), which is no character", path
    return "malformed JSON", "$"


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        found = [(path, str(key)) for key in value]
        for key, item in value.items():
            found += _strings(item, f"{path}.{key}")
        return found
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _strings(item, f"{path}[{i}]")]
    return []


def _duration(value: str | float) -> float:
    if isinstance(value, str):
        try:
            seconds = float(Duration.parse(value))
        except ValueError as exc:
            raise ApiError(400, "invalid", str(exc), "$.duration") from None
    else:
        seconds = float(value)
    if not MIN_SILENCE <= seconds <= MAX_SILENCE:
        raise ApiError(
            400, "invalid", "duration must be at least 1s and at most 366d", "$.duration"
        )
    return seconds


@post("/api/v1/silences", guards=[require_token], tags=["silences"], status_code=201)
async def add_silence(request: Request[Any, Any, Any], state: State) -> Silence:
    """Mute matching notifications for a while (a SilenceIn); the match needs a field."""
    # Decoded here, not by the framework, so that every refusal names its field.
    silence = decode_silence(await request.body())
    seconds = _duration(silence.duration)
    if silence.match.is_empty():
        raise ApiError(400, "invalid", "the match needs at least one field", "$.match")
    if not silence.reason.strip():
        raise ApiError(400, "invalid", "a reason is required", "$.reason")
    ends_at = datetime.now(UTC) + timedelta(seconds=seconds)
    async with connection(state.pool) as conn, conn.transaction():
        cursor = await conn.execute(
            sql("notify_insert_silence"),
            {
                "ends_at": ends_at,
                "match": Jsonb(msgspec.to_builtins(silence.match)),
                "reason": silence.reason.strip(),
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
    try:
        token = tokens.notify_token(
            settings.notify.token, settings.ingest.token, settings.data_path
        )
    except tokens.SameToken as exc:
        raise SettingsError(str(exc)) from None
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
        state=State({"token": token, "notifier": notifier, "failures": FailureLimiter()}),
        request_max_body_size=MAX_BODY,
        middleware=[DefineMiddleware(DatabaseDeadline, seconds=settings.database.request_timeout)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="dockping notify", version=__version__, path="/schema"),
        logging_config=None,
        debug=False,
    )
