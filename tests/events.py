"""Builders of contract events for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime.now(UTC).replace(microsecond=0)


def at(seconds: float) -> str:
    """An RFC 3339 time `seconds` after the start of the test run (negative: before)."""
    return (NOW + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def probe(
    t: float,
    ok: bool = True,
    *,
    container: str = "c1",
    ip: str = "10.9.0.2",
    port: int | None = 80,
    latency: float = 1.5,
    error: str = "refused",
    name: str = "web",
    protocol: str = "tcp",
) -> dict[str, Any]:
    """A probe event as JSON data."""
    return {
        "type": "probe",
        "time": at(t),
        "container_id": container,
        "container_name": name,
        "network": "bridge",
        "ip": ip,
        "port": port,
        "protocol": protocol,
        "ok": ok,
        "latency_ms": latency if ok else None,
        "error": None if ok else error,
    }


def lifecycle(
    t: float,
    action: str,
    *,
    container: str = "c1",
    name: str = "web",
    image: str = "img:1",
    **extra: Any,
) -> dict[str, Any]:
    """A container event as JSON data."""
    return {
        "type": "container",
        "time": at(t),
        "container_id": container,
        "action": action,
        "name": name,
        "image": image,
        **extra,
    }


def batch(*events: dict[str, Any], agent: str = "host-a") -> dict[str, Any]:
    """A batch body."""
    return {"agent": agent, "events": list(events)}
