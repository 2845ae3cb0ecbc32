"""Connections to PostgreSQL, and the one place where driver errors become domain errors.

A request may set a deadline for each of its uses of a connection (DatabaseDeadline): a
server that is frozen (stopped, swapping, a hung disk) accepts TCP and never answers,
which no server-side timeout can end, so the connection's socket is shut at the deadline
and the request gets "database unavailable" (503) instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from dockping.logs import redact_text

T = TypeVar("T")
# A new connection that has not answered by then is a server that is away or frozen.
CONNECT_TIMEOUT = 2
# How long one use of a connection may take in this context (a request); None: no limit.
_PER_USE: ContextVar[float | None] = ContextVar("dockping_db_per_use", default=None)


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached, or is restarting: try again later."""


class Conflict(Exception):
    """A write lost a race with another writer: try again."""


class SchemaError(Exception):
    """The database schema is missing, or newer than this program knows."""


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn psycopg's errors into the domain errors above."""
    try:
        yield
    except psycopg_pool.PoolTimeout as exc:
        raise DatabaseUnavailable("no database connection available in time") from exc
    except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
        raise Conflict(str(exc)) from exc
    except pg_errors.UndefinedTable as exc:
        raise SchemaError(f"schema not migrated: {exc}") from exc
    except (psycopg.OperationalError, pg_errors.AdminShutdown, pg_errors.CannotConnectNow) as exc:
        raise DatabaseUnavailable(redact_text(str(exc)).strip() or type(exc).__name__) from exc


def open_pool(
    url: str,
    size: int,
    name: str,
    connected: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
    *,
    check: bool = True,
) -> psycopg_pool.AsyncConnectionPool:
    """An async pool that reconnects by itself; open it with `await pool.open()`.

    `connected` runs on each new connection: after a restart, a failover or a restore, what
    a service remembers of the database may no longer hold. With `check`, a connection is
    checked (a round trip) each time it is taken; without, use run_on_connection().
    """
    return psycopg_pool.AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        open=False,
        name=name,
        timeout=10,
        # A connection broken by a server restart is noticed and replaced before use.
        check=_check_within_deadline if check else None,
        configure=_configured(connected),
        reconnect_timeout=0,  # keep trying forever: the database may be down for a while
        kwargs={
            "autocommit": False,
            "application_name": f"dockping-{name}",
            "connect_timeout": CONNECT_TIMEOUT,
        },
    )


def _configured(
    connected: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None,
) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
    """Each new connection: JIT compilation off, then the service's own `connected`.

    The services' queries are short and many; one whose estimate passes jit_above_cost (a
    lateral over every partition, say) spent a second compiling on each run where the server
    has JIT, as Debian's and the official images do. A SET rather than a startup option, which
    a pooler such as PgBouncer refuses by default.
    """

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.execute("SET jit = off")
        await conn.commit()
        if connected is not None:
            await connected(conn)

    return configure


async def _check_within_deadline(conn: psycopg.AsyncConnection) -> None:
    # The pool checks in the caller's task, so the caller's deadline holds for it too.
    with _cut_after(conn, _PER_USE.get()):
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


@contextmanager
def _cut_after(conn: psycopg.AsyncConnection, seconds: float | None) -> Iterator[None]:
    """Shut the connection's socket if the block is still running after `seconds`: what it
    awaits then fails at once (an OperationalError), and the pool discards the connection."""
    if seconds is None:
        yield
        return
    timer = asyncio.get_running_loop().call_later(seconds, _shut, conn)
    try:
        yield
    finally:
        timer.cancel()


def _shut(conn: psycopg.AsyncConnection) -> None:
    try:
        # shutdown() acts on the socket, not the descriptor: through a duplicate, it ends the
        # connection that psycopg waits on without closing a descriptor under its feet.
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed meanwhile: nothing to end


class DatabaseDeadline:
    """ASGI middleware: each use of a connection by a request takes at most `seconds` (the
    wait for a pooled connection included), else DatabaseUnavailable; `paths` limits it to
    those paths (None: every request)."""

    def __init__(self, app: Any, seconds: float, paths: frozenset[str] | None = None) -> None:
        self.app = app
        self.seconds = seconds
        self.paths = paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the request with the deadline set."""
        if scope["type"] != "http" or (self.paths is not None and scope["path"] not in self.paths):
            await self.app(scope, receive, send)
            return
        token = _PER_USE.set(self.seconds)
        try:
            await self.app(scope, receive, send)
        finally:
            _PER_USE.reset(token)


@asynccontextmanager
async def connection(
    pool: psycopg_pool.AsyncConnectionPool,
) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection, with driver errors translated, within the context's deadline."""
    seconds = _PER_USE.get()
    started = time.monotonic()
    with translate_errors(), _unanswered(seconds):
        async with pool.connection(timeout=seconds) as conn:
            with _cut_after(conn, _left(seconds, started)):
                yield conn


def _left(seconds: float | None, started: float) -> float | None:
    """What is left of a deadline of `seconds` from `started`, never quite nothing."""
    return None if seconds is None else max(0.01, started + seconds - time.monotonic())


@contextmanager
def _unanswered(seconds: float | None) -> Iterator[None]:
    """A connection cut at its deadline says so, not what the driver made of it."""
    started = time.monotonic()
    try:
        yield
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        if seconds is not None and time.monotonic() - started >= seconds - 0.01:
            raise DatabaseUnavailable(f"the database did not answer within {seconds:g}s") from exc
        raise


async def run_on_connection(
    pool: psycopg_pool.AsyncConnectionPool,
    work: Callable[[psycopg.AsyncConnection], Awaitable[T]],
) -> T:
    """`work` on a pooled connection, with driver errors translated; for a pool that does not
    check its connections before use (a round trip each time, which ingest spares its
    batches). A connection found broken (the server restarted or failed over while it was
    idle) is dropped, the pool checks the others, and `work` runs again on another; each
    connection of the pool can be found broken once, so the last try is on a fresh one.
    `work` must be safe to repeat, as appending a batch is (its events are stored once)."""
    tries = pool.max_size + 1
    seconds = _PER_USE.get()
    for attempt in range(1, tries + 1):
        started = time.monotonic()
        with translate_errors(), _unanswered(seconds):
            async with pool.connection(timeout=seconds) as conn:
                try:
                    with _cut_after(conn, _left(seconds, started)):
                        return await work(conn)
                except psycopg.OperationalError as exc:
                    cut = seconds is not None and time.monotonic() - started >= seconds - 0.01
                    if cut or attempt == tries or not (conn.closed or _ends_session(exc)):
                        raise
        await pool.check()
    raise AssertionError("unreachable")


def _ends_session(exc: psycopg.Error) -> bool:
    """The server ended the session (57P: shut down, restarting, the database dropped), which
    the connection may not show as closed until it next reads."""
    return (exc.sqlstate or "").startswith("57P")
