"""An optional file of event identities, one JSON line each, for accounting by identity.

A line is written when an event is made durable in the spool, and again, with
"dropped": true, when the full spool drops it unsent. So every identity in the file
is either stored by ingest or counted as dropped: a chaos test can check both.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec

from dockping.contract import ContainerEvent, Event, HeartbeatEvent, InventoryEvent, ProbeEvent


class _Identity(msgspec.Struct, omit_defaults=True):
    type: str
    time: str
    container_id: str | None = None
    ip: str | None = None
    port: int | None = None
    protocol: str | None = None
    action: str | None = None
    dropped: bool = False


_encoder = msgspec.json.Encoder()


def identity(event: Event, dropped: bool = False) -> _Identity:
    """The identity of an event, as ingest deduplicates it."""
    when = msgspec.json.encode(event.time).decode().strip('"')
    if isinstance(event, ProbeEvent):
        return _Identity(
            "probe", when, event.container_id, event.ip, event.port, event.protocol, None, dropped
        )
    if isinstance(event, ContainerEvent):
        return _Identity(
            "container", when, event.container_id, action=event.action, dropped=dropped
        )
    if isinstance(event, InventoryEvent):
        return _Identity("inventory", when, dropped=dropped)
    assert isinstance(event, HeartbeatEvent)
    return _Identity("heartbeat", when, dropped=dropped)


class IdentityLog:
    """Appends identities to a file and flushes after every write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[bytes] = path.open("ab")

    def write(self, events: Iterable[Event], dropped: bool = False) -> None:
        """Append one line per event."""
        lines = [_encoder.encode(identity(event, dropped)) + b"\n" for event in events]
        if lines:
            self._handle.write(b"".join(lines))
            self._handle.flush()

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
