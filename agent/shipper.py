"""Ship events to ingest: batched, spooled to disk first, retried, replayed in order.

Every event goes through the spool, so that a crash loses nothing that was spooled;
a record is acknowledged only after ingest answered 202. Changes (a new target, a
status change, a container event) are flushed at once, not held for the batch timer.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import anyio
import httpx
import msgspec

from agent.spool import Spool
from dockping import logs
from dockping.contract import Batch, Event
from dockping.settings import AgentSettings

log = logs.get("dockping.agent.shipper")
_events_decoder = msgspec.json.Decoder(list[Event])
# A replay sends several records in one request, up to this many events.
_REPLAY_EVENTS = 5000


def _count(payload: bytes) -> int:
    return payload.count(b'"type":')


class Shipper:
    """Collects events, writes them to the spool, and sends the spool to ingest."""

    def __init__(self, settings: AgentSettings, agent_id: str, token: str, spool_dir: Path) -> None:
        self.settings = settings
        self.agent_id = agent_id
        self.token = token
        self.spool = Spool(spool_dir, settings.spool_max_bytes, _count)
        self.rejected_dir = spool_dir.parent / "rejected"
        self._buffer: list[Event] = []
        self._wake = anyio.Event()
        self._urgent = False
        self.sent = 0
        self.ingest_ok = True
        self._stopping = False

    @property
    def dropped(self) -> int:
        """Events dropped because the spool was full."""
        return self.spool.dropped

    def add(self, event: Event, urgent: bool = False) -> None:
        """Queue an event; an urgent one is shipped at once."""
        self._buffer.append(event)
        if urgent or len(self._buffer) >= self.settings.batch_max_events:
            self._urgent = True
            self._wake.set()

    def _spool_buffer(self) -> None:
        while self._buffer:
            chunk = self._buffer[: self.settings.batch_max_events]
            del self._buffer[: len(chunk)]
            self.spool.append(msgspec.json.encode(chunk))

    async def run(self) -> None:
        """Flush and send until cancelled."""
        backoff = 0.0
        retry_at = 0.0
        async with httpx.AsyncClient(
            base_url=self.settings.ingest_url,
            timeout=httpx.Timeout(10.0, connect=3.0),
            headers={"Authorization": f"Bearer {self.token}"},
        ) as client:
            while True:
                with anyio.move_on_after(self.settings.batch_interval):
                    await self._wake.wait()
                self._wake = anyio.Event()
                self._urgent = False
                self._spool_buffer()
                if time.monotonic() < retry_at:
                    continue
                if await self.send_pending(client):
                    backoff = 0.0
                    retry_at = 0.0
                else:
                    backoff = min(30.0, max(0.25, backoff * 2))
                    retry_at = time.monotonic() + backoff * random.uniform(0.5, 1.0)  # noqa: S311

    async def flush(self, deadline: float) -> bool:
        """Spool the buffer and send what can be sent before the deadline (monotonic)."""
        self._spool_buffer()
        async with httpx.AsyncClient(
            base_url=self.settings.ingest_url,
            timeout=httpx.Timeout(max(0.5, deadline - time.monotonic()), connect=2.0),
            headers={"Authorization": f"Bearer {self.token}"},
        ) as client:
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                return await self.send_pending(client)
        return False

    async def send_pending(self, client: httpx.AsyncClient) -> bool:
        """Send every spooled record in order; False when ingest could not take them."""
        while True:
            group: list[Event] = []
            last = None
            for payload, position in self.spool.pending():
                group.extend(_events_decoder.decode(payload))
                last = position
                if len(group) >= _REPLAY_EVENTS:
                    break
            if last is None:
                self._set_ok(True)
                return True
            body = msgspec.json.encode(Batch(agent=self.agent_id, events=group))
            try:
                response = await client.post(
                    "/api/v1/events", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                self._set_ok(False, f"{type(exc).__name__}: {exc}")
                return False
            if response.status_code == 202:
                self.spool.ack(last)
                self.sent += len(group)
                self._set_ok(True)
                continue
            if response.status_code in (408, 429) or response.status_code >= 500:
                self._set_ok(False, f"HTTP {response.status_code}: {response.text[:200]}")
                return False
            # Ingest refused the batch for what it is: keep it aside and let the rest flow.
            self._keep_aside(body, response)
            self.spool.ack(last)

    def _keep_aside(self, body: bytes, response: httpx.Response) -> None:
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.json"
        (self.rejected_dir / name).write_bytes(body)
        log.error(
            "ship.rejected",
            status=response.status_code,
            body=response.text[:500],
            kept=str(self.rejected_dir / name),
        )

    def _set_ok(self, ok: bool, error: str = "") -> None:
        if ok != self.ingest_ok:
            if ok:
                log.info("ingest.reachable")
            else:
                log.warning("ingest.unreachable", error=error, spool_bytes=self.spool.size())
        self.ingest_ok = ok
