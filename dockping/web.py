"""What both HTTP services share: error translation, the pool lifespan, /healthz."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
import psycopg_pool
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from db.connector import (
    Conflict,
    DatabaseUnavailable,
    SchemaError,
    open_pool,
    run_on_connection,
)
from dockping import logs

log = logs.get("dockping.web")
HEALTHZ_WAIT = 2.0
"""Seconds /healthz waits for the database before it answers 503."""


class ApiError(Exception):
    """An answer with a status and a JSON body naming what is wrong."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def _json(
    status: int,
    error: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if field is not None:
        body["field"] = field
    return Response(body, status_code=status, headers=headers or {})


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return _json(exc.status, exc.error, exc.detail, exc.field, exc.headers)


def _unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database.unavailable", error=str(exc))
    return _json(
        503, "unavailable", f"the database is unavailable: {exc}", headers={"Retry-After": "2"}
    )


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    field = None
    detail = exc.detail
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        first = exc.extra[0]
        field = first.get("key")
        detail = f"{first.get('message', detail)}"
    return _json(400, "bad_request", detail, field)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        log.error("http.error", status=exc.status_code, detail=exc.detail)
    return _json(exc.status_code, "http_error", exc.detail, headers=exc.headers or {})


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("http.unhandled", error=type(exc).__name__)
    return _json(500, "internal", "internal error; see the service log")


EXCEPTION_HANDLERS: dict[Any, Callable[..., Response[Any]]] = {
    ApiError: _api_error,
    DatabaseUnavailable: _unavailable,
    Conflict: _unavailable,
    SchemaError: _unavailable,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _internal,
}


def pool_lifespan(
    url: str,
    size: int,
    name: str,
    connected: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
    *,
    check: bool = True,
) -> Callable[[Litestar], Any]:
    """A lifespan that opens the pool without waiting for the database, and closes it;
    `connected` runs on each new connection, and `check` says whether a connection is
    checked each time it is taken (see open_pool)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = open_pool(url, size, name, connected, check=check)
        await pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return lifespan


@get("/healthz", tags=["health"])
async def healthz(state: State) -> dict[str, str]:
    """200 once the database answers; 503 otherwise."""
    pool: psycopg_pool.AsyncConnectionPool = state.pool

    async def select_one(conn: psycopg.AsyncConnection) -> None:
        await conn.execute("SELECT 1")

    # Not the pool's 10 s wait for a connection: healthchecks give up after 3 s, and a 503
    # says more than a timeout.
    with anyio.move_on_after(HEALTHZ_WAIT):
        await run_on_connection(pool, select_one)
        return {"status": "ok"}
    raise DatabaseUnavailable(f"the database did not answer within {HEALTHZ_WAIT:g} s")
