"""Follow status changes: fold new probe events through the rules into the outbox.

The position is per target (notify_targets.last_time, the newest event folded in), written in
the same transaction as the messages it makes. So a crash loses nothing (the next round
reads on from the kept position) and repeats nothing (the outbox's idempotency key). Events
that arrive late, after an agent's spool is shipped, are still newer than the position and
are folded in time order. A probe older than one already folded (out of order within a
target, which one agent's ordered spool does not produce) is history: it is stored, but it
changes no message.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from db.connector import connection
from db.queries import by_target, sql
from dockping import logs
from dockping.freshness import freshness
from dockping.settings import NotifyRule, Settings
from notify.messages import Target, agent_message, sight_message, target_message
from notify.rules import (
    Params,
    State,
    Subject,
    agent_rules,
    outcome,
    params,
    rules_for,
    step,
    uses_details,
)

log = logs.get("dockping.notify")
# Events read per target per transaction; a longer backlog is folded over several.
PER_TARGET = 2000
# Targets folded per transaction when a sweep finds many due.
SWEEP_TARGETS = 5000


def channels(rules: list[NotifyRule]) -> dict[str, list[tuple[str, str]]]:
    """Each rule's channels as (name, Apprise URL); the name is kept with every message."""
    return {
        rule.name: [
            (f"{rule.name}#{index}:{url.partition('://')[0] or 'url'}", url)
            for index, url in enumerate(rule.urls)
        ]
        for rule in rules
    }


async def _targets(
    conn: psycopg.AsyncConnection, ids: list[int]
) -> dict[int, tuple[Target, dict[Any, Any]]]:
    """Each target's details and its container's labels, by target id."""
    cursor = await conn.execute(sql("notify_target_info"), {"target_ids": ids})
    return {row[0]: (Target(*row[:8]), row[8] or {}) for row in await cursor.fetchall()}


def _subject(target: Target, labels: dict[Any, Any], target_id: int) -> Subject:
    """What the rules match a target by."""
    return Subject(
        agent=target.agent,
        project=target.project,
        container=target.container,
        image=target.image,
        labels={str(k): str(v) for k, v in labels.items()},
        target_id=target_id,
    )


@dataclass
class _Outbox:
    change_keys: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    target_ids: list[int | None] = field(default_factory=list)
    agent_ids: list[int | None] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def add(
        self,
        key: str,
        rule_channels: list[tuple[str, str]],
        target_id: int | None,
        agent_id: int | None,
        kind: str,
        title: str,
        body: str,
    ) -> None:
        for channel, _ in rule_channels:
            self.change_keys.append(key)
            self.channels.append(channel)
            self.target_ids.append(target_id)
            self.agent_ids.append(agent_id)
            self.kinds.append(kind)
            self.titles.append(title)
            self.bodies.append(body)

    async def write(self, conn: psycopg.AsyncConnection) -> int:
        if not self.change_keys:
            return 0
        cursor = await conn.execute(sql("notify_insert_outbox"), self.__dict__)
        return len(await cursor.fetchall())


class Follower:
    """Turns stored probe events and heartbeats into queued messages."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        notify = settings.notify
        self.rules = list(notify.rules)
        self.params: dict[str, Params] = {
            rule.name: params(rule, notify.flap_changes, notify.flap_window) for rule in self.rules
        }
        self.channels = channels(self.rules)
        self.public_url = notify.public_url or f"http://{settings.query.host}:{settings.query.port}"

    async def fold(
        self, pool: psycopg_pool.AsyncConnectionPool, target_ids: list[int] | None
    ) -> int:
        """Fold every event newer than the kept positions (of some targets, or all); count queued."""
        if target_ids is None:
            async with connection(pool) as conn:
                cursor = await conn.execute(sql("notify_due_targets"), {"horizon": self._horizon()})
                target_ids = [row[0] for row in await cursor.fetchall()]
        queued = 0
        # A sweep after a long stop may find every target due: folded some at a time.
        for first in range(0, len(target_ids), SWEEP_TARGETS):
            some = target_ids[first : first + SWEEP_TARGETS]
            while some:
                async with connection(pool) as conn, conn.transaction():
                    made, some = await self._fold_once(conn, some)
                queued += made
        return queued

    def _horizon(self, now: datetime | None = None) -> datetime:
        """How far back a target first seen is read (as of now)."""
        return (now or datetime.now(UTC)) - timedelta(seconds=self.settings.notify.max_catch_up)

    async def _fold_once(
        self, conn: psycopg.AsyncConnection, target_ids: list[int]
    ) -> tuple[int, list[int]]:
        horizon = self._horizon()
        # The certificate and health of each probe are read only where a rule asks for them.
        detailed = any(uses_details(p) for p in self.params.values())
        cursor = await conn.execute(
            sql("notify_pending_probes"),
            {
                "target_ids": target_ids,
                "horizon": horizon,
                "per_target": PER_TARGET,
                "detailed": detailed,
            },
        )
        probes: dict[int, list[tuple[datetime, int, datetime | None, str | None]]] = defaultdict(
            list
        )
        for target_id, time, latency_us, tls_not_after, health in await cursor.fetchall():
            probes[target_id].append((time, latency_us, tls_not_after, health))
        if not probes:
            return 0, []
        ids = sorted(probes)
        info = await _targets(conn, ids)
        cursor = await conn.execute(sql("notify_select_states"), {"target_ids": ids})
        stored: dict[int, Any] = {row[0]: row[1] for row in await cursor.fetchall()}
        outbox = _Outbox()
        last_times: list[datetime] = []
        states: list[Jsonb] = []
        for target_id in ids:
            target, labels = info[target_id]
            subject = _subject(target, labels, target_id)
            old = msgspec.convert(stored.get(target_id) or {}, dict[str, State], strict=False)
            kept: dict[str, State] = {}
            for rule in rules_for(self.rules, subject):
                state = old.get(rule.name) or State()
                p = self.params[rule.name]
                for time, latency_us, tls_not_after, health in probes[target_id]:
                    result = outcome(p, time, latency_us, tls_not_after, health)
                    for change in step(state, p, time, result):
                        text = target_message(
                            change, target, self.public_url, self.settings.notify.flap_window
                        )
                        key = f"t{target_id}:{change.kind}:{change.time.isoformat()}"
                        outbox.add(
                            key,
                            self.channels[rule.name],
                            target_id,
                            None,
                            change.kind,
                            text.title,
                            text.body,
                        )
                kept[rule.name] = state
            last_times.append(probes[target_id][-1][0])
            states.append(Jsonb(msgspec.to_builtins(kept)))
        await conn.execute(
            sql("notify_upsert_states"),
            {"target_ids": ids, "last_times": last_times, "states": states},
        )
        made = await outbox.write(conn)
        more = [target_id for target_id in ids if len(probes[target_id]) >= PER_TARGET]
        if made:
            log.info("notify.queued", messages=made, targets=len(ids))
        return made, more

    async def check_agents(self, pool: psycopg_pool.AsyncConnectionPool) -> int:
        """Queue a message for each agent that fell silent or came back; count queued."""
        after = self.settings.notify.agent_silent_after * self.settings.agent.resync_interval
        now = datetime.now(UTC)
        async with connection(pool) as conn, conn.transaction():
            cursor = await conn.execute(sql("notify_agent_heartbeats"))
            outbox = _Outbox()
            for agent_id, name, last_heartbeat_at, was_silent in await cursor.fetchall():
                silent = (now - last_heartbeat_at).total_seconds() > after
                if was_silent is not None and silent == was_silent:
                    continue
                await conn.execute(
                    sql("notify_upsert_agent"),
                    {
                        "agent_id": agent_id,
                        "silent": silent,
                        "last_heartbeat_at": last_heartbeat_at,
                    },
                )
                # An agent first seen alive is no news; one first seen silent is.
                if was_silent is None and not silent:
                    continue
                kind = "agent_silent" if silent else "agent_back"
                text = agent_message(name, silent, last_heartbeat_at, after)
                key = f"a{agent_id}:{kind}:{last_heartbeat_at.isoformat()}"
                for rule in agent_rules(self.rules, name):
                    outbox.add(
                        key, self.channels[rule.name], None, agent_id, kind, text.title, text.body
                    )
            return await outbox.write(conn)

    async def check_stale(self, pool: psycopg_pool.AsyncConnectionPool) -> int:
        """Queue "lost sight of" for each target whose status went stale, and "sees again"
        when it leaves stale (silently when it is gone); count queued. A target stale since
        before notify.max_catch_up is recorded without a message, as at a first start, and so
        is one whose agent fell silent: the agent's own message says so for all of them."""
        now = datetime.now(UTC)
        horizon = self._horizon(now)
        async with connection(pool) as conn, conn.transaction():
            cursor = await conn.execute(
                sql("notify_stale_changes"),
                {
                    **freshness(
                        self.settings, now, self.settings.notify.agent_silent_after
                    ).params(),
                    "stale": "stale",
                },
            )
            rows = await cursor.fetchall()
            if not rows:
                return 0
            info = await _targets(conn, [row[0] for row in rows])
            outbox = _Outbox()
            told: dict[int, tuple[datetime, bool]] = {}
            forgotten: list[int] = []
            for row in rows:
                target_id, status, stale_since, last_probe_at, told_since, silent, by_silence = row
                lost = status == "stale"
                if lost:
                    told[target_id] = (stale_since or now, bool(silent))
                else:
                    forgotten.append(target_id)
                quiet = silent if lost else by_silence
                if quiet or (lost and (stale_since or now) < horizon) or status == "gone":
                    continue
                target, labels = info[target_id]
                subject = _subject(target, labels, target_id)
                kind = "lost_sight" if lost else "back_in_sight"
                since = told[target_id][0] if lost else told_since
                text = sight_message(target, lost, last_probe_at, self.public_url)
                key = f"t{target_id}:{kind}:{since.isoformat()}"
                for rule in rules_for(self.rules, subject):
                    outbox.add(
                        key, self.channels[rule.name], target_id, None, kind, text.title, text.body
                    )
            if told:
                await conn.execute(sql("notify_told_stale"), by_target(told, "since", "by_silence"))
            if forgotten:
                await conn.execute(sql("notify_forget_stale"), {"target_ids": forgotten})
            return await outbox.write(conn)

    async def expire(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        """Drop notification events and finished outbox rows older than the retention."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.database.retention)
        async with connection(pool) as conn, conn.transaction():
            await conn.execute(sql("notify_expire_outbox"), {"cutoff": cutoff})
            await conn.execute(sql("notify_expire_events"), {"cutoff": cutoff})
