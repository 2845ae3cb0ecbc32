"""Connections to PostgreSQL, and the one place where driver errors become domain errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from dockping.logs import redact_text

T = TypeVar("T")


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
        check=psycopg_pool.AsyncConnectionPool.check_connection if check else None,
        configure=connected,
        reconnect_timeout=0,  # keep trying forever: the database may be down for a while
        kwargs={"autocommit": False, "application_name": f"dockping-{name}"},
    )


@asynccontextmanager
async def connection(
    pool: psycopg_pool.AsyncConnectionPool,
) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection, with driver errors translated."""
    with translate_errors():
        async with pool.connection() as conn:
            yield conn


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
    for attempt in range(1, tries + 1):
        with translate_errors():
            async with pool.connection() as conn:
                try:
                    return await work(conn)
                except psycopg.OperationalError as exc:
                    if attempt == tries or not (conn.closed or _ends_session(exc)):
                        raise
        await pool.check()
    raise AssertionError("unreachable")


def _ends_session(exc: psycopg.Error) -> bool:
    """The server ended the session (57P: shut down, restarting, the database dropped), which
    the connection may not show as closed until it next reads."""
    return (exc.sqlstate or "").startswith("57P")
