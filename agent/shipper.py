"""Ship events to ingest: batched, spooled to disk first, retried, replayed in order.

Every event goes through the spool, so that a crash loses nothing that was spooled;
a record is acknowledged only after ingest answered 202. Changes (a new target, a
status change, a container event) are flushed at once, not held for the batch timer.
Records are spliced into a request as the JSON they were spooled as, not re-encoded.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import anyio
import httpx
import msgspec

from agent.identity_log import IdentityLog
from agent.spool import FILE_MODE, Position, Spool, is_full, private_dir
from dockping import logs
from dockping.contract import Event
from dockping.settings import AgentSettings

log = logs.get("dockping.agent.shipper")
_events_decoder = msgspec.json.Decoder(list[Event])
_raw_events_decoder = msgspec.json.Decoder(list[msgspec.Raw])
# One request carries several records, up to this many events or bytes.
REQUEST_EVENTS = 5000
REQUEST_BYTES = 4 * 1024 * 1024
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 10.0
# Answers that say "not now" rather than "not this": retried, never set aside.
_RETRY = frozenset({401, 403, 408, 425, 429})


def count_events(payload: bytes) -> int:
    """Events in a spooled record (a JSON array of events, each with its "type" first)."""
    return payload.count(b'"type":')


class Shipper:
    """Collects events, writes them to the spool, and sends the spool to ingest."""

    def __init__(
        self,
        settings: AgentSettings,
        agent_id: str,
        token: str,
        spool_dir: Path,
        identities: IdentityLog | None = None,
    ) -> None:
        self.settings = settings
        self.agent_id = agent_id
        self.token = token
        self.identities = identities
        self.spool = Spool(spool_dir, settings.spool_max_bytes, self._on_drop)
        self.rejected_dir = spool_dir.parent / "rejected"
        self._agent_json = msgspec.json.encode(agent_id)
        self._buffer: list[Event] = []
        self._wake = anyio.Event()
        self.sent = 0
        """Events ingest accepted (202) since start."""
        self.rejected = 0
        """Events set aside because ingest refused them (4xx)."""
        self.ingest_ok = True
        self._kept = 0

    @property
    def dropped(self) -> int:
        """Events dropped because the spool was full."""
        return self.spool.dropped

    def add(self, event: Event, urgent: bool = False) -> None:
        """Queue an event; an urgent one is shipped at once."""
        self._buffer.append(event)
        if urgent or len(self._buffer) >= self.settings.batch_max_events:
            self._wake.set()

    def spool_buffer(self) -> None:
        """Make the buffered events durable."""
        while self._buffer:
            chunk = self._buffer[: self.settings.batch_max_events]
            del self._buffer[: len(chunk)]
            self.spool.append(msgspec.json.encode(chunk))
            if self.identities is not None:
                self.identities.write(chunk)

    def _on_drop(self, payload: bytes) -> int:
        try:
            events = _events_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return count_events(payload)
        log.warning("spool.dropped", events=len(events), dropped_total=self.spool.dropped)
        if self.identities is not None:
            self.identities.write(events, dropped=True)
        return len(events)

    def client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        """An HTTP client for ingest, with the token."""
        return httpx.AsyncClient(
            base_url=self.settings.ingest_url,
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )

    async def run(self) -> None:
        """Flush and send until cancelled; retry with capped exponential backoff and jitter."""
        backoff = 0.0
        retry_at = 0.0
        async with self.client(httpx.Timeout(10.0, connect=3.0)) as client:
            while True:
                wait = float(self.settings.batch_interval)
                if retry_at:
                    wait = min(wait, max(0.0, retry_at - time.monotonic()))
                with anyio.move_on_after(wait):
                    await self._wake.wait()
                self._wake = anyio.Event()
                self.spool_buffer()
                if time.monotonic() < retry_at:
                    continue
                if await self.send_pending(client):
                    backoff = 0.0
                    retry_at = 0.0
                else:
                    backoff = min(BACKOFF_CAP, max(BACKOFF_FIRST, backoff * 2))
                    retry_at = time.monotonic() + backoff * random.uniform(0.5, 1.0)  # noqa: S311

    async def flush(self, deadline: float) -> bool:
        """Spool the buffer and send what can be sent before the deadline (monotonic)."""
        self.spool_buffer()
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        async with self.client(httpx.Timeout(left, connect=min(2.0, left))) as client:
            with anyio.move_on_after(left):
                return await self.send_pending(client)
        return False

    def _body(self, records: list[bytes]) -> bytes:
        # Each record is a JSON array of events: splice their insides into one batch.
        return self._body_of([r[1:-1] for r in records if len(r) > 2])

    async def send_pending(self, client: httpx.AsyncClient) -> bool:
        """Send every spooled record in order; False when ingest could not take them now."""
        isolate_until: Position | None = None
        while True:
            records: list[bytes] = []
            events = size = 0
            last: Position | None = None
            for payload, position in self.spool.pending():
                records.append(payload)
                events += count_events(payload)
                size += len(payload)
                last = position
                if isolate_until is not None and position <= isolate_until:
                    break  # one record per request, to find the one ingest refuses
                if events >= REQUEST_EVENTS or size >= REQUEST_BYTES:
                    break
            if last is None:
                self._set_ok(True)
                return True
            body = self._body(records)
            try:
                response = await client.post("/api/v1/events", content=body)
            except httpx.HTTPError as exc:
                self._set_ok(False, f"{type(exc).__name__}: {exc}")
                return False
            status = response.status_code
            if status == 202:
                self.spool.ack(last)
                self.sent += events
                self._set_ok(True)
                continue
            if status in _RETRY or status >= 500 or status < 400:
                self._set_ok(False, f"HTTP {status}: {response.text[:200]}")
                return False
            if len(records) > 1:
                # Keep aside only the record ingest refuses, not the good ones sent with it.
                isolate_until = last
                continue
            # Ingest refused the record for what it is: keep aside only the events it refuses,
            # found by halving the record, so that one bad event cannot take others with it.
            refused = await self._split(client, records[0], response)
            if refused is None:
                return False
            for event, answer in refused:
                self._keep_aside(self._body_of([event]), answer)
            self.rejected += len(refused)
            self.spool.ack(last)

    async def _split(
        self, client: httpx.AsyncClient, record: bytes, response: httpx.Response
    ) -> list[tuple[bytes, httpx.Response]] | None:
        """Send a refused record's events in halves until each refused one is alone; return
        those with their answers, or None when ingest could not take the rest now."""
        try:
            events = [bytes(raw) for raw in _raw_events_decoder.decode(record)]
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [(record[1:-1], response)]  # not a JSON array: kept aside whole
        if len(events) == 1:
            return [(events[0], response)]
        refused: list[tuple[bytes, httpx.Response]] = []
        # Depth first, the first half before the second: events go in the order spooled.
        parts = [events[len(events) // 2 :], events[: len(events) // 2]]
        while parts:
            part = parts.pop()
            try:
                answer = await client.post("/api/v1/events", content=self._body_of(part))
            except httpx.HTTPError as exc:
                self._set_ok(False, f"{type(exc).__name__}: {exc}")
                return None
            status = answer.status_code
            if status == 202:
                self.sent += len(part)
            elif status in _RETRY or status >= 500 or status < 400:
                self._set_ok(False, f"HTTP {status}: {answer.text[:200]}")
                return None
            elif len(part) == 1:
                refused.append((part[0], answer))
            else:
                parts += [part[len(part) // 2 :], part[: len(part) // 2]]
        return refused

    def _body_of(self, events: list[bytes]) -> bytes:
        """A batch of events, each the JSON it was spooled as."""
        return b'{"agent":' + self._agent_json + b',"events":[' + b",".join(events) + b"]}"

    def _keep_aside(self, body: bytes, response: httpx.Response) -> None:
        self._kept += 1
        path = self.rejected_dir / f"{time.time_ns()}-{self._kept}.json"
        try:
            private_dir(self.rejected_dir)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
        except OSError as exc:
            if not is_full(exc):
                raise
            path.unlink(missing_ok=True)
            log.error(
                "ship.rejected",
                status=response.status_code,
                body=response.text[:500],
                kept="nowhere: the disk is full",
            )
            return
        log.error(
            "ship.rejected",
            status=response.status_code,
            body=response.text[:500],
            kept=str(path),
        )

    def _set_ok(self, ok: bool, error: str = "") -> None:
        if ok != self.ingest_ok:
            if ok:
                log.info("ingest.reachable", spool_bytes=self.spool.size())
            else:
                log.warning("ingest.unreachable", error=error, spool_bytes=self.spool.size())
        self.ingest_ok = ok
