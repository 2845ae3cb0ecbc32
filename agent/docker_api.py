"""The few Docker Engine API calls the agent makes, through aiodocker.

Every failure (unreachable, slow, a bad answer, a stream cut or garbled mid-message)
becomes DockerUnavailable, except a 404, which is NotFound: the container is gone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiodocker
import aiohttp
import anyio

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
    """Running and paused containers, as the list endpoint describes them."""
    filters = json.dumps({"status": ["running", "paused"]})
    try:
        listed = await docker.containers.list(filters=filters)
    except _FAILURES as exc:
        raise _unavailable("GET /containers/json", exc) from None
    summaries = [getattr(item, "_container", None) for item in listed]
    return [dict(item) for item in summaries if isinstance(item, dict)]


async def inspect_container(docker: aiodocker.Docker, container_id: str) -> dict[str, Any]:
    """One container's inspect payload; NotFound when it is gone."""
    try:
        found = await docker.containers.get(container_id)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise NotFound(container_id) from None
        raise _unavailable(f"GET /containers/{container_id}/json", exc) from None
    except _FAILURES as exc:
        raise _unavailable(f"GET /containers/{container_id}/json", exc) from None
    payload = getattr(found, "_container", None)
    if not isinstance(payload, dict):
        raise DockerUnavailable(f"GET /containers/{container_id}/json: not an object")
    return dict(payload)


@asynccontextmanager
async def event_stream(
    docker: aiodocker.Docker, since: str | None
) -> AsyncIterator[AsyncIterator[dict[str, Any] | None]]:
    """Open the container and network event stream; yields an iterator of events.

    The iterator yields None for an event that is not a JSON object, and raises
    DockerUnavailable when the stream breaks, ends, or carries a line that is not JSON
    (aiodocker ends the stream there; the caller reconnects with `since` and resyncs).
    """
    params: dict[str, str] = {"filters": json.dumps({"type": ["container", "network"]})}
    if since is not None:
        params["since"] = since
    subscriber = docker.events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            await docker.events.run(**params)  # type: ignore[arg-type]
        except _FAILURES as exc:
            failure.append(exc)  # run() publishes None on the way out; the reader reports it

    async def events() -> AsyncIterator[dict[str, Any] | None]:
        while True:
            event = await subscriber.get()
            if event is None:
                reason = f": {type(failure[0]).__name__}: {failure[0]}" if failure else ""
                raise DockerUnavailable(f"the Docker event stream ended{reason}")
            yield event if isinstance(event, dict) else None

    async with anyio.create_task_group() as group:
        group.start_soon(pump)
        try:
            yield events()
        finally:
            group.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await docker.events.stop()  # type: ignore[no-untyped-call]
