"""Live updates: one LISTEN connection per process, fanned out to server-sent-event streams.

Ingest sends `NOTIFY dockping_events` with the changed target ids and container keys after
each committed batch (null: too many, reload everything). The hub keeps, per subscriber, the
set of its targets that changed since it last looked, so a slow browser coalesces updates
instead of queueing them: memory per subscriber is bounded by the ids it watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import msgspec
import psycopg
import psycopg_pool
from litestar.response import ServerSentEventMessage

from db.connector import connection
from db.queries import sql
from dockping import logs
from dockping.freshness import Freshness
from query.display import live_row

log = logs.get("dockping.query.live")
CHANNEL = "dockping_events"
KEEPALIVE_SECONDS = 15.0
# A browser reconnects by itself; ending streams now and then frees a proxy's idle slots.
MAX_STREAM_SECONDS = 600.0


class _Change(msgspec.Struct):
    agent: str = ""
    targets: list[int] | None = None
    containers: list[int] | None = None


class Subscription:
    """One stream's interest: its target ids, their containers, and what changed since."""

    def __init__(self, target_ids: list[int]) -> None:
        self.target_ids = frozenset(target_ids)
        self.containers: dict[int, set[int]] = {}
        self.pending: set[int] = set(target_ids)  # the first look sends every row
        self.wake = asyncio.Event()
        self.wake.set()

    def offer(self, change: _Change | None) -> None:
        """Note a change (None: anything may have changed)."""
        before = len(self.pending)
        if change is None or change.targets is None or change.containers is None:
            self.pending |= self.target_ids
        else:
            self.pending |= self.target_ids.intersection(change.targets)
            for key in change.containers:
                self.pending |= self.containers.get(key, set())
        if len(self.pending) != before:
            self.wake.set()

    def take(self) -> list[int]:
        """The changed ids, and forget them."""
        taken, self.pending = sorted(self.pending), set()
        self.wake.clear()
        return taken


class Hub:
    """The LISTEN loop and its subscribers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.subscribers: set[Subscription] = set()
        self.listening = asyncio.Event()
        self.closed = False

    def subscribe(self, target_ids: list[int]) -> Subscription:
        """A new subscription for these targets."""
        sub = Subscription(target_ids)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription."""
        self.subscribers.discard(sub)

    def broadcast(self, change: _Change | None) -> None:
        """Hand a change to every subscriber."""
        for sub in list(self.subscribers):
            sub.offer(change)

    def close(self) -> None:
        """End every stream (the service is stopping)."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.wake.set()

    async def run(self) -> None:
        """LISTEN forever; after a lost connection, reconnect and tell everyone to reload."""
        delay = 0.5
        while not self.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, application_name="dockping-query-listen"
                )
            except psycopg.Error as exc:
                log.debug("live.connect_failed", error=logs.redact_text(str(exc)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    log.info("live.listening")
                    delay = 0.5
                    # Anything may have changed while we were not listening.
                    self.broadcast(None)
                    async for notice in conn.notifies():
                        self.broadcast(_parse(notice.payload))
            except psycopg.Error as exc:
                log.warning("live.reconnect", error=logs.redact_text(str(exc)))
            finally:
                self.listening.clear()
            await asyncio.sleep(delay)


def _parse(payload: str) -> _Change | None:
    try:
        return msgspec.json.decode(payload, type=_Change)
    except msgspec.DecodeError:
        return None  # a payload we do not understand: reload everything, lose nothing


async def _rows(
    pool: psycopg_pool.AsyncConnectionPool,
    sub: Subscription,
    ids: list[int],
    fresh: Callable[[datetime], Freshness],
) -> str:
    now = datetime.now(UTC)
    async with connection(pool) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        await cur.execute(sql("stream_rows"), {"target_ids": ids, **fresh(now).params()})
        rows = await cur.fetchall()
    for row in rows:
        sub.containers.setdefault(row["container_key"], set()).add(row["target_id"])
    return msgspec.json.encode([live_row(row, now) for row in rows]).decode()


async def _wakes(hub: Hub, sub: Subscription, ends_at: float) -> AsyncIterator[bool]:
    """Until the hub closes or the loop's clock passes ends_at: True when the subscription wakes,
    False when a keepalive's time passes without it."""
    loop = asyncio.get_running_loop()
    while not hub.closed and loop.time() < ends_at:
        woke = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KEEPALIVE_SECONDS):
                await sub.wake.wait()
                woke = True
        if hub.closed:
            return
        yield woke


async def stream(
    hub: Hub,
    pool: psycopg_pool.AsyncConnectionPool,
    target_ids: list[int],
    fresh: Callable[[datetime], Freshness],
) -> AsyncIterator[ServerSentEventMessage]:
    """Server-sent events for these targets: `rows` with their current state when they change,
    and at every keepalive (a target goes stale with no event: time alone makes it)."""
    sub = hub.subscribe(target_ids)
    ends_at = asyncio.get_running_loop().time() + MAX_STREAM_SECONDS
    try:
        yield ServerSentEventMessage(comment="dockping live", retry=3000)
        async for woke in _wakes(hub, sub, ends_at):
            if not woke:
                yield ServerSentEventMessage(comment="keepalive")
                sub.offer(None)
                continue
            ids = sub.take()
            if not ids:
                continue
            try:
                data = await _rows(pool, sub, ids, fresh)
            except Exception as exc:  # a stream outlives a database outage
                log.warning("live.rows_failed", error=type(exc).__name__)
                sub.pending.update(ids)
                await asyncio.sleep(2)
                sub.wake.set()
                continue
            yield ServerSentEventMessage(event="rows", data=data)
    finally:
        hub.unsubscribe(sub)


def _close_on_sigterm(hub: Hub) -> Callable[[], None]:
    """End the streams as soon as SIGTERM arrives, then let the server's own handler run.

    The server waits for open responses before it stops, and a stream never ends by itself;
    without this, every open browser tab would hold a shutdown for the whole grace period.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(hub.close)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)

    return restore


def hub_lifespan(url: str) -> Any:
    """A lifespan that runs the hub's LISTEN loop next to the app."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        hub = Hub(url)
        app.state.hub = hub
        task = asyncio.create_task(hub.run(), name="dockping-live")
        restore = _close_on_sigterm(hub)
        try:
            yield
        finally:
            restore()
            hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


class AnyChange(Subscription):
    """A stream's interest in every change: the grouped pages, whose rows span many targets."""

    def __init__(self) -> None:
        super().__init__([])

    def offer(self, change: _Change | None) -> None:
        """Any committed batch wakes it."""
        self.wake.set()


# A grouped page refetches its rows on a change: at most this often, however busy ingest is.
CHANGES_EVERY_SECONDS = 1.0


async def changes(hub: Hub) -> AsyncIterator[ServerSentEventMessage]:
    """Server-sent events: `changed` after ingest commits anything, at most once a second."""
    sub = AnyChange()
    sub.wake.clear()
    hub.subscribers.add(sub)
    ends_at = asyncio.get_running_loop().time() + MAX_STREAM_SECONDS
    try:
        yield ServerSentEventMessage(comment="dockping live", retry=3000)
        async for woke in _wakes(hub, sub, ends_at):
            if not woke:
                yield ServerSentEventMessage(comment="keepalive")
                continue
            sub.wake.clear()
            yield ServerSentEventMessage(event="changed", data="1")
            await asyncio.sleep(CHANGES_EVERY_SECONDS)
    finally:
        hub.unsubscribe(sub)
