"""A fake Docker Engine API on a unix socket, for fault injection only.

It serves the three calls the agent makes (list, inspect, events) from a dict of
inspect payloads, and can misbehave on demand: cut the event stream mid-message,
send garbage, or answer slowly. Real behaviour is tested against a real engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def inspect_payload(
    container_id: str,
    name: str,
    networks: dict[str, str],
    ports: tuple[int, ...] = (80,),
    labels: dict[str, str] | None = None,
    running: bool = True,
    paused: bool = False,
    pid: int = 0,
    started_at: str = "2026-11-27T20:00:00.123456789Z",
) -> dict[str, Any]:
    """An inspect payload as the engine returns it, with the fields the agent reads."""
    return {
        "Id": container_id,
        "Name": f"/{name}",
        "Config": {
            "Image": "fake:1",
            "ExposedPorts": {f"{port}/tcp": {} for port in ports},
            "Labels": labels or {},
        },
        "State": {
            "Running": running,
            "Paused": paused,
            "StartedAt": started_at,
            "Pid": pid,  # 0, as the engine says of a stopped container, unless one is given
        },
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {
            "Networks": {
                network: {"IPAddress": ip, "GlobalIPv6Address": ""}
                for network, ip in networks.items()
            }
        },
    }


def _status_text(state: dict[str, Any]) -> str:
    """The listing's Status, as Docker writes it: "Up 1 minute (unhealthy)"."""
    health = (state.get("Health") or {}).get("Status")
    shown = {
        "starting": " (health: starting)",
        "healthy": " (healthy)",
        "unhealthy": " (unhealthy)",
    }
    return "Up 1 minute" + shown.get(health, "")


def _summary(inspect: dict[str, Any]) -> dict[str, Any]:
    state = inspect["State"]
    return {
        "Id": inspect["Id"],
        "Names": [inspect["Name"]],
        "Labels": inspect["Config"]["Labels"],
        "State": "paused" if state["Paused"] else "running" if state["Running"] else "exited",
        "Status": _status_text(state),
        "Ports": [
            {"PrivatePort": int(spec.partition("/")[0]), "Type": "tcp"}
            for spec in inspect["Config"]["ExposedPorts"]
        ],
        "HostConfig": inspect["HostConfig"],
        "NetworkSettings": inspect["NetworkSettings"],
    }


class FakeDocker:
    """The fake engine. Start it with `async with`, change it, push events."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.containers: dict[str, dict[str, Any]] = {}
        self.delay = 0.0
        """Seconds to wait before answering a list or an inspect."""
        self.garbage = False
        """Answer a list or an inspect with bytes that are not JSON."""
        self.inspect_delay: dict[str, float] = {}
        """Seconds to wait before answering an inspect, by container id."""
        self.podman = False
        """Answer as Podman does: a 500 "no such container" for a container that is gone."""
        self.refuse_events = False
        """Answer every /events request with a 500, as an engine whose stream is broken."""
        self.inspecting = 0
        """Inspects being answered now."""
        self.most_inspecting = 0
        """The most inspects ever answered at once."""
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self._streams: set[asyncio.Queue[bytes | None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._clock = time.time_ns()

    @property
    def url(self) -> str:
        """The Docker URL to give the agent."""
        return f"unix://{self.socket_path}"

    async def __aenter__(self) -> FakeDocker:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.socket_path))
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close_streams()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def streams(self) -> int:
        """Event streams open now."""
        return len(self._streams)

    def event_json(self, kind: str, action: str, actor: str, **attributes: str) -> bytes:
        """One event line as the engine writes it."""
        self._clock += 1_000_000
        return (
            json.dumps(
                {
                    "Type": kind,
                    "Action": action,
                    "Actor": {"ID": actor, "Attributes": attributes},
                    "time": self._clock // 1_000_000_000,
                    "timeNano": self._clock,
                }
            ).encode()
            + b"\n"
        )

    def push(self, data: bytes) -> None:
        """Send raw bytes on every open event stream."""
        for queue in self._streams:
            queue.put_nowait(data)

    def emit(self, kind: str, action: str, actor: str, **attributes: str) -> None:
        """Send one event on every open event stream."""
        self.push(self.event_json(kind, action, actor, **attributes))

    def cut_mid_message(self, line: bytes) -> None:
        """Send the first half of an event line, then drop the connection without ending it."""
        self.push(line[: len(line) // 2])
        for queue in self._streams:
            queue.put_nowait(None)

    def close_streams(self) -> None:
        """Drop every event stream at once."""
        for queue in self._streams:
            queue.put_nowait(None)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                parts = urlsplit(target)
                query = parse_qs(parts.query)
                self.requests.append((parts.path, query))
                if parts.path.endswith("/events") and not self.refuse_events:
                    await self._events(writer)
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                every = query.get("all", [""])[0] in ("1", "true", "True")
                status, body = await self._answer_in_time(method, parts.path, every)
                if self.garbage:
                    status, body = "200 OK", b"\x00\xffnot json {"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing: a request in flight ends here, unanswered
        finally:
            writer.close()

    async def _answer_in_time(self, method: str, path: str, every: bool) -> tuple[str, bytes]:
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[1] == "containers" and parts[3] == "json":
            self.inspecting += 1
            self.most_inspecting = max(self.most_inspecting, self.inspecting)
            try:
                await asyncio.sleep(self.inspect_delay.get(parts[2], 0.0))
                return self._answer(method, path, every)
            finally:
                self.inspecting -= 1
        return self._answer(method, path, every)

    def inspections(self, container_id: str) -> int:
        """How many times a container was inspected."""
        return sum(
            1 for path, _ in self.requests if path.endswith(f"/containers/{container_id}/json")
        )

    def _answer(self, method: str, path: str, every: bool = False) -> tuple[str, bytes]:
        parts = path.strip("/").split("/")
        if parts and parts[0].startswith("v1."):
            parts = parts[1:]  # clients pin an API version: /v1.41/containers/json
        if parts == ["events"]:
            return "500 Internal Server Error", b'{"message": "the event stream is refused"}'
        if method == "GET" and parts == ["version"]:
            return "200 OK", b'{"ApiVersion": "1.41", "Version": "20.10.24-fake"}'
        if method == "GET" and parts == ["containers", "json"]:
            # all=1 lists stopped containers too; without it, the engine's default: running.
            listed = [
                _summary(c) for c in self.containers.values() if every or c["State"]["Running"]
            ]
            return "200 OK", json.dumps(listed).encode()
        if method == "GET" and len(parts) == 3 and parts[0] == "containers" and parts[2] == "json":
            if parts[1] in self.containers:
                return "200 OK", json.dumps(self.containers[parts[1]]).encode()
            if self.podman:
                return "500 Internal Server Error", (
                    b'{"cause": "no such container", "message": "no such container",'
                    b' "response": 500}'
                )
            return "404 Not Found", b'{"message": "No such container"}'
        return "404 Not Found", b'{"message": "page not found"}'

    async def _events(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._streams.add(queue)
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            await writer.drain()
            while True:
                data = await queue.get()
                if data is None:
                    return  # dropped without the closing chunk: a broken stream
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
        finally:
            self._streams.discard(queue)


@contextlib.asynccontextmanager
async def fake_engine() -> AsyncIterator[FakeDocker]:
    """A running fake engine on a socket in a short directory of its own (unix paths are short)."""
    directory = Path(tempfile.mkdtemp(prefix="dpf-", dir="/tmp"))
    try:
        async with FakeDocker(directory / "docker.sock") as engine:
            yield engine
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def running_fake() -> AsyncIterator[FakeDocker]:
    """A running fake engine, as a test module's fixture: `fake = pytest.fixture(running_fake)`."""
    async with fake_engine() as engine:
        yield engine
