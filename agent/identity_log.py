"""An optional file of event identities, one JSON line each, for accounting by identity.

A line is written when an event is made durable in the spool, and again, with
"dropped": true, when the full spool drops it unsent. So every identity in the file
is either stored by ingest or counted as dropped: a chaos test can check both. On a full
disk a write is left out whole (never a torn line), counted in `lost` and logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import msgspec

from agent.spool import FILE_MODE, is_full
from dockping import logs
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
log = logs.get("dockping.agent.identity_log")


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
    """Appends identities to a file, each write whole and unbuffered."""

    def __init__(self, path: Path) -> None:
        # The file is private; its directory is the operator's choice, and stays as it is.
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        self.lost = 0
        """Lines left out because the disk or quota was full."""

    def write(self, events: Iterable[Event], dropped: bool = False) -> None:
        """Append one line per event."""
        lines = [_encoder.encode(identity(event, dropped)) + b"\n" for event in events]
        if not lines:
            return
        before = os.fstat(self._fd).st_size
        try:
            view = memoryview(b"".join(lines))
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if not is_full(exc):
                raise
            os.ftruncate(self._fd, before)
            self.lost += len(lines)
            log.warning("identity_log.full", lines=len(lines), lost_total=self.lost)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)
