"""Deliver queued messages through Apprise: silences, digests, retries with backoff.

Each attempt is kept as a notification event. A message is marked done only after its
channel took it, so a notifier killed in between sends it again on restart (at least once);
the outbox holds one row per change per channel, so nothing else is ever sent twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import anyio
import apprise
import msgspec
import psycopg
import psycopg_pool

from db.connector import connection
from db.queries import sql
from dockping import logs
from dockping.settings import Settings
from notify.follower import channels
from notify.messages import NOTIFY_TYPES, Text, digest
from notify.rules import Match, Subject, matches

log = logs.get("dockping.notify")
BATCH = 1000
DIGEST_KINDS = ("down", "recovered")


class Delivery(NamedTuple):
    """One pending outbox row."""

    delivery_id: int
    change_key: str
    channel: str
    target_id: int | None
    agent_id: int | None
    kind: str
    title: str
    body: str
    attempts: int
    agent: str | None


class Silence(NamedTuple):
    """An active silence."""

    silence_id: int
    match: Match


def send(url: str, text: Text, notify_type: str) -> str | None:
    """Send one message to one Apprise URL; None when it was taken, else what went wrong."""
    client = apprise.Apprise()
    if not client.add(url):
        return "not a valid Apprise URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
        try:
            ok = client.notify(title=text.title, body=text.body, notify_type=notify_type)
        except Exception as exc:  # a plugin's bug is this channel's failure, retried like one
            return f"{type(exc).__name__}: {exc}"[:500]
    if ok:
        return None
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "the channel did not take the message"


@dataclass
class _Events:
    times: list[datetime] = field(default_factory=list)
    delivery_ids: list[int] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    target_ids: list[int | None] = field(default_factory=list)
    agent_ids: list[int | None] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)


class Sender:
    """Sends due outbox rows and records what became of them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.urls = {
            name: url for chans in channels(settings.notify.rules).values() for name, url in chans
        }

    async def deliver_due(self, pool: psycopg_pool.AsyncConnectionPool) -> int:
        """Send what is due now; return how many rows were settled or retried."""
        notify = self.settings.notify
        now = datetime.now(UTC)
        async with connection(pool) as conn:
            async with conn.transaction():
                cursor = await conn.execute(
                    sql("notify_due"),
                    {
                        "now": now,
                        "ready_before": now - timedelta(seconds=notify.digest_wait),
                        "limit": BATCH,
                    },
                )
                due = [Delivery(*row) for row in await cursor.fetchall()]
                if not due:
                    return 0
                silences = await _silences(conn, now)
                subjects = await _subjects(conn, due)
            muted = [d for d in due if _muted(d, subjects, silences)]
            muted_ids = {d.delivery_id for d in muted}
            lost = [d for d in due if d.delivery_id not in muted_ids and d.channel not in self.urls]
            settled = muted_ids | {d.delivery_id for d in lost}
            if muted:
                await _finish(conn, muted, "muted", None, "", 0)
            if lost:
                await _finish(
                    conn, lost, "dropped", "the channel is no longer in the settings", "", 0
                )
            grouped: dict[str, list[Delivery]] = defaultdict(list)
            for delivery in due:
                if delivery.delivery_id not in settled:
                    grouped[delivery.channel].append(delivery)
            for channel, rows in grouped.items():
                for batch, text, notify_type in self._messages(rows):
                    error = await anyio.to_thread.run_sync(
                        send, self.urls[channel], text, notify_type
                    )
                    note = f" (in a digest of {len(batch)})" if len(batch) > 1 else ""
                    if error is None:
                        log.info(
                            "notify.sent", channel=channel, kind=batch[0].kind, rows=len(batch)
                        )
                        await _finish(conn, batch, "sent", None, note, 0)
                    else:
                        log.warning("notify.failed", channel=channel, error=error, rows=len(batch))
                        await _finish(conn, batch, "failed", error, note, self._backoff(batch))
        return len(due)

    def _messages(self, rows: list[Delivery]) -> list[tuple[list[Delivery], Text, str]]:
        """Rows in queue order as messages; many of one kind make one digest where the first was."""
        threshold = self.settings.notify.digest_threshold
        by_kind: dict[str, list[Delivery]] = defaultdict(list)
        for row in rows:
            by_kind[row.kind].append(row)
        digested = {
            k for k, batch in by_kind.items() if k in DIGEST_KINDS and len(batch) >= threshold
        }
        out: list[tuple[list[Delivery], Text, str]] = []
        for row in rows:
            if row.kind not in digested:
                out.append(([row], Text(row.title, row.body), NOTIFY_TYPES.get(row.kind, "info")))
            elif row is by_kind[row.kind][0]:
                batch = by_kind[row.kind]
                out.append(
                    (batch, digest(row.kind, [r.title for r in batch]), NOTIFY_TYPES[row.kind])
                )
        return out

    def _backoff(self, batch: list[Delivery]) -> float:
        notify = self.settings.notify
        attempts = max(d.attempts for d in batch)
        if attempts + 1 >= notify.max_attempts:
            return -1.0  # given up
        return float(min(notify.retry_backoff * 2**attempts, notify.retry_max_delay))


async def _silences(conn: psycopg.AsyncConnection, now: datetime) -> list[Silence]:
    cursor = await conn.execute(sql("notify_active_silences"), {"now": now})
    return [
        Silence(row[0], msgspec.convert(row[3], Match, strict=False))
        for row in await cursor.fetchall()
    ]


async def _subjects(conn: psycopg.AsyncConnection, due: list[Delivery]) -> dict[int, Subject]:
    ids = sorted({d.target_id for d in due if d.target_id is not None})
    if not ids:
        return {}
    cursor = await conn.execute(sql("notify_target_info"), {"target_ids": ids})
    subjects: dict[int, Subject] = {}
    for row in await cursor.fetchall():
        labels = {str(k): str(v) for k, v in (row[8] or {}).items()}
        subjects[row[0]] = Subject(row[1], row[4], row[2], row[3], labels, row[0])
    return subjects


def _muted(delivery: Delivery, subjects: dict[int, Subject], silences: list[Silence]) -> bool:
    if delivery.target_id is not None:
        subject = subjects.get(delivery.target_id)
    else:
        subject = Subject(agent=delivery.agent or "")
    return subject is not None and any(matches(s.match, subject) for s in silences)


async def _finish(
    conn: psycopg.AsyncConnection,
    batch: list[Delivery],
    status: str,
    error: str | None,
    note: str,
    retry_in: float,
) -> None:
    """Record one attempt of a batch: its events and its outbox rows, in one transaction."""
    now = datetime.now(UTC)
    attempted = 1 if status in ("sent", "failed") else 0  # muted and dropped send nothing
    done = status != "failed" or retry_in < 0
    if status == "failed" and retry_in < 0:
        status = "dropped"
    events = _Events()
    for d in batch:
        events.times.append(now)
        events.delivery_ids.append(d.delivery_id)
        events.attempts.append(d.attempts + attempted)
        events.target_ids.append(d.target_id)
        events.agent_ids.append(d.agent_id)
        events.kinds.append(d.kind)
        events.channels.append(d.channel)
        events.statuses.append(status)
        events.messages.append(d.title + note)
        events.errors.append(error)
    params: dict[str, Any] = {
        "now": now,
        "delivery_ids": [d.delivery_id for d in batch],
        "attempted": [attempted] * len(batch),
        "done": [done] * len(batch),
        "next_attempt_at": [now + timedelta(seconds=max(retry_in, 0))] * len(batch),
    }
    async with conn.transaction():
        await conn.execute(sql("notify_finish"), params)
        await conn.execute(sql("notify_insert_events"), events.__dict__)
