"""The notifier's loops: follow ingest's NOTIFY (with a catch-up sweep), and deliver."""

from __future__ import annotations

import time

import anyio
import apprise
import msgspec
import psycopg
import psycopg_pool

from db.connector import translate_errors
from db.queries import sql
from dockping import logs
from dockping.settings import Settings
from notify.follower import Follower
from notify.sender import Sender

log = logs.get("dockping.notify")
CHANNEL = "dockping_events"
DRAIN_SECONDS = 0.05  # NOTIFYs that come this close together are folded in one round
EXPIRE_EVERY = 3600.0  # seconds between two drops of what is past the retention
DELIVER_POLL = 0.5  # the outbox is looked at this often (and at once when something is queued)


class _Payload(msgspec.Struct):
    agent: str = ""
    targets: list[int] | None = None


class Notifier:
    """One notifier: it holds the notifier lock, follows changes and delivers messages."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.follower = Follower(settings)
        self.sender = Sender(settings)
        self.active = False
        self._wake = anyio.Event()

    async def run(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        """Follow and deliver until cancelled."""
        self._check_rules()
        async with anyio.create_task_group() as group:
            group.start_soon(self._follow, pool)
            group.start_soon(self._deliver, pool)

    def _check_rules(self) -> None:
        """Say at start what would otherwise only show as dropped messages."""
        rules = self.settings.notify.rules
        if not rules:
            log.warning("notify.no_rules", hint="add [[notify.rules]] to settings.toml")
        for rule in rules:
            for index, url in enumerate(rule.urls):
                if not apprise.Apprise().add(url):
                    log.error("notify.bad_url", rule=rule.name, index=index)
            if not rule.urls:
                log.warning("notify.rule_without_urls", rule=rule.name)

    async def _follow(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        while True:
            try:
                with translate_errors():
                    listen = await psycopg.AsyncConnection.connect(
                        self.database_url, autocommit=True, application_name="dockping-notify"
                    )
                    async with listen:
                        await self._follow_on(listen, pool)
            except Exception as exc:  # keep following whatever broke; the log says what
                self.active = False
                log.warning("notify.follow.retry", error=str(exc) or type(exc).__name__)
                await anyio.sleep(1)

    async def _follow_on(
        self, listen: psycopg.AsyncConnection, pool: psycopg_pool.AsyncConnectionPool
    ) -> None:
        interval = self.settings.notify.check_interval
        # One notifier at a time: a second one waits here until the first one's lock goes.
        waiting = False
        while not (await (await listen.execute(sql("notify_try_lock"))).fetchone() or [False])[0]:
            if not waiting:
                log.info("notify.standby", reason="another notifier holds the lock")
                waiting = True
            await anyio.sleep(interval)
        # LISTEN before the catch-up, so that nothing committed in between is missed.
        await listen.execute(sql("notify_listen"))
        self.active = True
        log.info("notify.following")
        expired_at = -EXPIRE_EVERY
        while True:
            if time.monotonic() - expired_at >= EXPIRE_EVERY:
                await self.follower.expire(pool)
                expired_at = time.monotonic()
            # The sweep catches up every target (after a restart, a lost connection, or a
            # NOTIFY that named no targets) and checks the agents' heartbeats.
            await self._queued(await self.follower.fold(pool, None))
            await self._queued(await self.follower.check_agents(pool))
            await self._queued(await self.follower.check_stale(pool))
            deadline = time.monotonic() + interval
            # No cancel scope around the folds: a fold cut short mid-query would leave its
            # connection in doubt. The waits time out by themselves instead.
            while (remaining := deadline - time.monotonic()) > 0:
                targets = await self._next(listen, remaining)
                if targets is None:
                    break  # a NOTIFY without target ids: sweep now
                if targets:
                    await self._queued(await self.follower.fold(pool, sorted(targets)))

    async def _next(self, listen: psycopg.AsyncConnection, timeout: float) -> set[int] | None:
        """Target ids named by the NOTIFYs within timeout; None when one names everything."""
        targets: set[int] = set()
        everything = False
        wait = timeout
        while True:
            got = False
            async for notify in listen.notifies(timeout=wait, stop_after=1):
                got = True
                try:
                    payload = msgspec.json.decode(notify.payload, type=_Payload)
                except msgspec.DecodeError:
                    everything = True
                    continue
                if payload.targets is None:
                    everything = True
                else:
                    targets.update(payload.targets)
            if not got:
                return None if everything else targets
            wait = DRAIN_SECONDS

    async def _queued(self, count: int) -> None:
        if count:
            self._wake.set()

    async def _deliver(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        while True:
            if self.active:
                try:
                    await self.sender.deliver_due(pool)
                except Exception as exc:  # a failed round is retried; the log says why
                    log.warning("notify.deliver.retry", error=str(exc) or type(exc).__name__)
            with anyio.move_on_after(DELIVER_POLL):
                await self._wake.wait()
            self._wake = anyio.Event()
