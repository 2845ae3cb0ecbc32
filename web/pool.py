"""The services' connection pool: opened in the app's lifespan, and checked by /healthz."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
import psycopg_pool
from litestar import Litestar, get
from litestar.datastructures import State

from db.connector import DatabaseUnavailable, open_pool, run_on_connection

HEALTHZ_WAIT = 2.0
"""Seconds /healthz waits for the database before it answers 503."""


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
