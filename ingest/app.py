"""The ingest service: POST /api/v1/events appends batches to the event store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import psycopg
import psycopg_pool
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from db.append import AppendResult, EventWriter
from db.compaction import compact_closed_partitions
from db.connector import (
    DatabaseDeadline,
    DatabaseUnavailable,
    SchemaError,
    connection,
    run_on_connection,
)
from db.migrate import check_schema_async
from db.queries import sql
from dockping import __version__, logs, tokens
from dockping.contract import (
    Accepted,
    Batch,
    ContainerEvent,
    DecodeError,
    Event,
    ProbeEvent,
    canonical_ip,
    decode_batch,
)
from dockping.settings import Settings
from ingest.metrics import IngestMetrics
from ingest.rollups import refresh_rollups
from web.errors import EXCEPTION_HANDLERS, ApiError
from web.pool import healthz, pool_lifespan
from web.ratelimit import FailureLimiter, client_address

log = logs.get("dockping.ingest")


class Ingest:
    """What the handlers need: settings, tokens, the writer and the metrics."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.shared_token = tokens.shared_token(settings.ingest.token, settings.data_path)
        self.agent_tokens = dict(settings.ingest.agent_tokens)
        self.metrics = IngestMetrics()
        self.failures = FailureLimiter()
        self.writer: EventWriter | None = None

    async def forget(self, conn: psycopg.AsyncConnection) -> None:
        """Drop the writer, and with it every id and stored event it remembers: called on each
        new connection, since the database behind it may have been restored or replaced (its
        ids made anew, its newest events lost). The next batch makes a new writer. The pool
        replaces each connection after an hour, which also bounds what a writer remembers to
        about an hour of containers coming and going."""
        self.writer = None

    async def writer_for(self, conn: psycopg.AsyncConnection) -> EventWriter:
        """The writer; made on first use, once the schema's backend is known."""
        if self.writer is None:
            backend = await check_schema_async(conn)
            self.writer = EventWriter(backend, self.settings.database.partition_interval)
        return self.writer

    async def maintain(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        """Make partitions ahead and drop those past retention, every hour."""
        step = timedelta(seconds=self.settings.database.partition_interval)
        retention = timedelta(seconds=self.settings.database.retention)
        configured = False
        while True:
            try:
                async with connection(pool) as conn:
                    writer = await self.writer_for(conn)
                    now = datetime.now(UTC)
                    await writer.ensure_partitions(conn, now - step, now + 2 * step)
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(dockping_lock('storage'))")
                        if not configured:
                            # Chunk interval, compression and retention follow the settings.
                            await conn.execute(
                                sql("configure_storage"),
                                {
                                    "partition_interval": step,
                                    "compress_after": timedelta(
                                        seconds=self.settings.database.compress_after
                                    ),
                                    "retention": retention,
                                },
                            )
                        cursor = await conn.execute(
                            sql("drop_partitions"), {"cutoff": now - retention}
                        )
                        row = await cursor.fetchone()
                    configured = True  # committed: not before, or a rollback would skip it
                    if row and row[0]:
                        log.info("retention.dropped", partitions=row[0])
                    if writer.backend == "postgres":
                        await self._compact(conn, now)
                await anyio.sleep(3600)
            except (DatabaseUnavailable, SchemaError) as exc:
                log.warning("maintenance.retry", error=str(exc))
                await anyio.sleep(5)

    async def _compact(self, conn: psycopg.AsyncConnection, before: datetime) -> None:
        try:
            compacted = await compact_closed_partitions(conn, before)
        except psycopg.Error as exc:
            # Only space is lost; the next round tries again.
            log.warning("partitions.compact_failed", error=str(exc))
            return
        if compacted:
            log.info("partitions.compacted", partitions=compacted)

    def authorize(self, header: str | None) -> str:
        """Return the token if it is one we know; raise 401 otherwise."""
        given = tokens.bearer(header)
        if given is None:
            self.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(
                401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        known = [self.shared_token, *self.agent_tokens.values()]
        # Compare with every token, so that the time taken does not tell which one is near.
        if not any([tokens.same(given, token) for token in known]):  # noqa: C419
            self.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(
                401, "unauthorized", "invalid token", headers={"WWW-Authenticate": "Bearer"}
            )
        return given

    def check_agent(self, token: str, agent: str) -> None:
        """An agent with a token of its own must use it; others use the shared token."""
        expected = self.agent_tokens.get(agent, self.shared_token)
        if not tokens.same(token, expected):
            self.metrics.rejected.labels("unauthorized").inc()
            raise ApiError(
                401,
                "unauthorized",
                f"the token is not valid for agent {agent!r}",
                field="$.agent",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def check_limits(self, batch: Batch) -> None:
        """Refuse batches too large, or with times too far ahead or older than retention."""
        limits = self.settings.ingest
        if len(batch.events) > limits.max_events:
            self.metrics.rejected.labels("too_many_events").inc()
            raise ApiError(
                413,
                "too_many_events",
                f"{len(batch.events)} events; at most {limits.max_events} per batch",
                "$.events",
            )
        now = datetime.now(UTC)
        newest = now + timedelta(seconds=limits.max_future_skew)
        oldest = now - timedelta(seconds=self.settings.database.retention)
        for index, event in enumerate(batch.events):
            if event.time > newest:
                self.metrics.rejected.labels("time_skew").inc()
                raise ApiError(
                    422,
                    "time_out_of_range",
                    f"time {event.time.isoformat()} is more than "
                    f"{limits.max_future_skew:g}s in the future",
                    f"$.events[{index}].time",
                )
            if event.time < oldest:
                self.metrics.rejected.labels("time_skew").inc()
                raise ApiError(
                    422,
                    "time_out_of_range",
                    f"time {event.time.isoformat()} is older than the retention",
                    f"$.events[{index}].time",
                )


def identity_key(event: Event) -> tuple[object, ...]:
    """What makes an event the same event in the store, whatever else it says."""
    if isinstance(event, ProbeEvent):
        ip = canonical_ip(event.ip)
        return ("probe", event.container_id, ip, event.port, event.protocol, event.time)
    if isinstance(event, ContainerEvent):
        return ("container", event.container_id, event.action, event.time)
    return ("heartbeat", event.time)


def check_duplicates(batch: Batch) -> None:
    """400 naming both when one batch holds the same event twice with different contents.

    The store keeps one event per identity; which of two different ones it would keep is
    no rule anyone can rely on. The same event twice, word for word, is stored once.
    """
    first: dict[tuple[object, ...], int] = {}
    for index, event in enumerate(batch.events):
        seen = first.setdefault(identity_key(event), index)
        if seen != index and batch.events[seen] != event:
            raise ApiError(
                400,
                "conflicting_duplicates",
                f"events {seen} and {index} are the same event (type, container, address or"
                " action, and time) with different contents: send one of them",
                f"$.events[{index}]",
            )


async def _read_body(request: Request[object, object, State], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@post(
    "/api/v1/events",
    status_code=202,
    tags=["ingest"],
    summary="Append a batch of events",
    responses={},
)
async def post_events(request: Request[object, object, State], state: State) -> Accepted:
    """Append a batch; events already stored (by identity) are counted as duplicates."""
    ingest: Ingest = state.ingest
    address = client_address(request)
    ingest.failures.check(address)
    try:
        token = ingest.authorize(request.headers.get("authorization"))
    except ApiError:
        ingest.failures.failed(address)
        raise
    body = await _read_body(request, ingest.settings.ingest.max_body_bytes)
    try:
        batch = decode_batch(body)
    except DecodeError as exc:
        ingest.metrics.rejected.labels("invalid").inc()
        raise ApiError(400, "invalid", exc.detail, exc.field) from None
    try:
        ingest.check_agent(token, batch.agent)
    except ApiError:
        ingest.failures.failed(address)  # another agent's token counts as a failed attempt too
        raise
    ingest.check_limits(batch)
    check_duplicates(batch)

    async def write(conn: psycopg.AsyncConnection) -> AppendResult:
        writer = await ingest.writer_for(conn)
        return await writer.append(conn, batch)

    started = time.perf_counter()
    result = await run_on_connection(state.pool, write)
    ingest.metrics.write_seconds.observe(time.perf_counter() - started)
    ingest.metrics.batches.inc()
    ingest.metrics.events.labels("accepted").inc(result.accepted)
    ingest.metrics.events.labels("duplicate").inc(result.duplicates)
    return Accepted(accepted=result.accepted, duplicates=result.duplicates)


@get("/metrics", tags=["health"], media_type=CONTENT_TYPE_LATEST)
async def metrics(state: State) -> Response[bytes]:
    """Prometheus metrics of this ingest process."""
    ingest: Ingest = state.ingest
    stats = state.pool.get_stats()
    ingest.metrics.pool_size.labels("total").set(stats.get("pool_size", 0))
    ingest.metrics.pool_size.labels("idle").set(stats.get("pool_available", 0))
    ingest.metrics.pool_size.labels("waiting").set(stats.get("requests_waiting", 0))
    return Response(generate_latest(ingest.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, database_url: str) -> Litestar:
    """The ingest app, for these settings and this database."""
    ingest = Ingest(settings, database_url)
    # Unchecked: a check is a round trip per batch; a batch that meets a connection broken
    # while idle runs again on a fresh one (run_on_connection).
    open_pool = pool_lifespan(
        database_url, settings.database.pool_size, "ingest", connected=ingest.forget, check=False
    )

    @asynccontextmanager
    async def maintenance(app: Litestar) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(ingest.maintain, app.state.pool)
            group.start_soon(refresh_rollups, app.state.pool, settings.database.rollup_interval)
            yield
            group.cancel_scope.cancel()

    return Litestar(
        route_handlers=[post_events, healthz, metrics],
        lifespan=[open_pool, maintenance],
        state=State({"ingest": ingest}),
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.ingest.max_body_bytes,
        # Only /healthz: a batch may take longer than a health check, and the agent retries.
        middleware=[
            DefineMiddleware(
                DatabaseDeadline,
                seconds=settings.database.request_timeout,
                paths=frozenset({"/healthz"}),
            )
        ],
        openapi_config=OpenAPIConfig(title="dockping ingest", version=__version__, path="/schema"),
        logging_config=None,
        debug=False,
    )
