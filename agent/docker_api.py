"""The few Docker Engine API calls the agent makes, through aiodocker.

Every failure (unreachable, slow, a bad answer, a stream cut or garbled mid-message)
becomes DockerUnavailable, except "no such container" (a 404 from Docker, a 500 from
Podman), which is NotFound: the container is gone.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp

# A list or an inspect slower than this means the engine is not answering.
CALL_TIMEOUT = 10.0
# Pinned rather than "auto", so that connecting costs no extra /version round trip;
# 1.41 (Docker 20.10) has everything the agent reads, and newer engines serve it.
API_VERSION = "v1.41"
_FAILURES = (aiodocker.DockerError, aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError)


class DockerUnavailable(Exception):
    """The Docker engine cannot be reached, or answered something we cannot read."""


class NotFound(Exception):
    """The container does not exist (any more)."""


def client_for(url: str, timeout: float = CALL_TIMEOUT) -> aiodocker.Docker:
    """A Docker client for unix:///path/docker.sock or tcp://host:port; use `async with`."""
    if not url.startswith(("unix://", "tcp://", "http://")):
        raise DockerUnavailable(f"unsupported Docker URL {url!r}: use unix:// or tcp://")
    return aiodocker.Docker(
        url=url,
        timeout=aiohttp.ClientTimeout(total=timeout),
        api_version=API_VERSION,
    )


def _unavailable(what: str, exc: BaseException) -> DockerUnavailable:
    return DockerUnavailable(f"{what}: {type(exc).__name__}: {exc}")


async def list_containers(docker: aiodocker.Docker) -> list[dict[str, Any]]:
    """Every container the engine holds, whatever its state, as the list endpoint describes
    them (`State` says which run)."""
    try:
        listed = await docker.containers.list(all=True)
    except _FAILURES as exc:
        raise _unavailable("GET /containers/json?all=1", exc) from None
    summaries = [getattr(item, "_container", None) for item in listed]
    return [dict(item) for item in summaries if isinstance(item, dict)]


async def inspect_container(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    """One container's inspect payload; NotFound when it is gone."""
    try:
        found = await docker.containers.get(container_id)
    except aiodocker.DockerError as exc:
        # Podman answers 500 for a container being removed: what it says is what counts.
        if exc.status == 404 or "no such container" in str(exc.message).lower():
            raise NotFound(container_id) from None
        raise _unavailable(f"GET /containers/{container_id}/json", exc) from None
    except _FAILURES as exc:
        raise _unavailable(f"GET /containers/{container_id}/json", exc) from None
    payload = getattr(found, "_container", None)
    if not isinstance(payload, dict):
        raise DockerUnavailable(f"GET /containers/{container_id}/json: not an object")
    return dict(payload)


# An event line longer than this is not decoded: a container's labels ride in every one of
# its events, and whoever starts a container chooses them. Its head and tail still say which
# container it was about and when (Docker writes the labels between the two).
MAX_EVENT_BYTES = 1 << 20
_KEEP_BYTES = 4096
_HEAD_FIELDS = {
    "Type": re.compile(rb'"Type"\s*:\s*"([a-z]{1,32})"'),
    "Action": re.compile(rb'"Action"\s*:\s*"([A-Za-z0-9_:. -]{1,64})"'),
    "ID": re.compile(rb'"ID"\s*:\s*"([0-9A-Za-z_.-]{1,128})"'),
}
_TIME_NANO = re.compile(rb'"timeNano"\s*:\s*(\d{1,20})')


@dataclass(frozen=True)
class OverlongEvent:
    """An event line over MAX_EVENT_BYTES, skipped; what its head and tail say of it."""

    size: int
    event: dict[str, Any] | None
    """Type, Action, Actor.ID and timeNano, without attributes; None when they were not found."""


def _overlong(head: bytes, tail: bytes, size: int) -> OverlongEvent:
    # Everything before "Attributes" is Docker's own (type, action, id, image reference);
    # the container's text starts there. timeNano is the last field of the line.
    head = head.split(b'"Attributes"', 1)[0]
    found = {key: pattern.search(head) for key, pattern in _HEAD_FIELDS.items()}
    nanos = _TIME_NANO.findall(tail)
    if not all(found.values()) or not nanos:
        return OverlongEvent(size, None)
    text = {key: match.group(1).decode() for key, match in found.items() if match}
    time_nano = int(nanos[-1])
    event: dict[str, Any] = {
        "Type": text["Type"],
        "Action": text["Action"],
        "Actor": {"ID": text["ID"], "Attributes": {}},
        "time": time_nano // 1_000_000_000,
        "timeNano": time_nano,
    }
    return OverlongEvent(size, event)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes | OverlongEvent]:
    """Split a byte stream into lines, none held beyond MAX_EVENT_BYTES."""
    line = bytearray()
    head = b""
    tail = bytearray()
    skipped = 0  # bytes of the current line over the limit, 0 while it is within it
    async for chunk in chunks:
        start = 0
        while start <= len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if skipped:
                skipped += len(piece)
                tail = (tail + piece)[-_KEEP_BYTES:]
            else:
                line += piece
                if len(line) > MAX_EVENT_BYTES:
                    head, tail, skipped = bytes(line[:_KEEP_BYTES]), line[-_KEEP_BYTES:], len(line)
                    line = bytearray()
            if end < 0:
                break
            if skipped:
                yield _overlong(head, bytes(tail), skipped)
                skipped, tail = 0, bytearray()
            elif line.strip():
                yield bytes(line)
            line = bytearray()
            start = end + 1


EventItem = dict[str, Any] | OverlongEvent | None


@asynccontextmanager
async def event_stream(
    docker: aiodocker.Docker, since: str | None
) -> AsyncIterator[AsyncIterator[EventItem]]:
    """Open the container and network event stream; yields an iterator of events.

    The stream is open (the engine answered) when this enters. The iterator yields each
    event as a dict, None for an event that is not a JSON object, and an OverlongEvent for
    a line too long to decode. It raises DockerUnavailable when the stream breaks, ends,
    or carries a line that is not JSON (the caller reconnects with `since` and resyncs).
    """
    params: dict[str, str] = {"filters": json.dumps({"type": ["container", "network"]})}
    if since is not None:
        params["since"] = since
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=CALL_TIMEOUT)
    try:
        # aiodocker's own events reader splits lines with aiohttp's readline, which fails the
        # whole stream on a line over 512 KiB; the raw response is read here instead.
        response = await docker._do_query("events", method="GET", params=params, timeout=timeout)
    except _FAILURES as exc:
        raise _unavailable("GET /events", exc) from None

    async def events() -> AsyncIterator[EventItem]:
        try:
            async for line in _lines(response.content.iter_any()):
                if isinstance(line, OverlongEvent):
                    yield line
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise _unavailable("GET /events: a line that is not JSON", exc) from None
                yield event if isinstance(event, dict) else None
        except _FAILURES as exc:
            raise _unavailable("GET /events", exc) from None
        raise DockerUnavailable("GET /events: the Docker event stream ended")

    try:
        yield events()
    finally:
        response.close()
