"""Ingest under abusive clients: slow bodies, huge headers and bodies, 10,000 idle connections."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos_support import AUTH, Service, raise_nofile, rss_kib, running
from tests.events import batch, probe

IDLE_CONNECTIONS = 10_000
# Opened over 20 s: 500 new loopback connections a second, well under the 1,000/s rule.
OPEN_PER_SECOND = 500
# What 10,000 idle connections may add to ingest's memory: about 10 KiB each, with room.
IDLE_GROWTH_KIB = 256 * 1024
BODY_GROWTH_KIB = 64 * 1024


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[Service]:
    """`dockping ingest` on a fresh database."""
    with running("ingest", database_url, tmp_path / "data", tmp_path / "ingest.log") as service:
        yield service


def open_files_limit(pid: int) -> int:
    """The soft limit on open files of a process, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit for {pid}")


def still_serving(ingest: Service, second: float = 0) -> None:
    """A normal client still gets its batch accepted."""
    response = httpx.post(
        f"{ingest.url}/api/v1/events",
        json=batch(probe(-60 + second, container=f"serving-{time.monotonic_ns()}")),
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 202, response.text


def connect(ingest: Service) -> socket.socket:
    """A raw TCP connection to ingest."""
    port = int(ingest.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def request_head(ingest: Service, length: int) -> bytes:
    """The head of a POST with a declared body length."""
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: {ingest.url[7:]}\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def status_of(sock: socket.socket) -> int:
    """The status code of the answer on a raw connection."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_slow_bodies_and_slow_headers_do_not_stop_other_clients(ingest: Service) -> None:
    """While 100 clients trickle their headers or bodies a byte at a time, others are served."""
    body = b'{"agent": "slow", "events": []}'
    slow_bodies = [connect(ingest) for _ in range(50)]
    slow_heads = [connect(ingest) for _ in range(50)]
    head = request_head(ingest, len(body))
    for sock in slow_bodies:
        sock.sendall(head)
    try:
        for step in range(10):
            for sock in slow_bodies:
                sock.sendall(body[step : step + 1])
            for sock in slow_heads:
                sock.sendall(head[step : step + 1])
            still_serving(ingest, step)
            time.sleep(0.3)
        # The slow ones finish in the end and are answered like anyone.
        for sock in slow_bodies:
            sock.sendall(body[10:])
        assert {202} == {status_of(sock) for sock in slow_bodies}
    finally:
        for sock in slow_bodies + slow_heads:
            sock.close()
    still_serving(ingest)


def test_an_oversize_header_is_refused_and_others_are_served(ingest: Service) -> None:
    """A 1 MB header gets a 4xx (or the connection closed), and ingest keeps serving."""
    with connect(ingest) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000)
        try:
            status = status_of(sock)
        except (ConnectionResetError, BrokenPipeError, IndexError):
            status = 400  # closed before an answer: refused all the same
        assert 400 <= status < 500
    with httpx.Client(timeout=10) as client:
        try:
            status = client.get(f"{ingest.url}/healthz", headers={"X-Big": "a" * 1_000_000})
        except httpx.HTTPError:
            pass  # closed before an answer: refused all the same
        else:
            assert 400 <= status.status_code < 500
    still_serving(ingest)


def test_a_100_mb_body_is_refused_without_reading_it_into_memory(ingest: Service) -> None:
    """A 100 MB body, declared or chunked, gets a 413 and memory stays bounded."""
    before = rss_kib(ingest.pid)
    with connect(ingest) as sock:
        sock.sendall(request_head(ingest, 100 * 1024 * 1024))
        assert status_of(sock) == 413

    def chunks() -> Iterator[bytes]:
        block = b'{"agent": "big", "events": [' + b" " * (1024 * 1024 - 30)
        yield block
        for _ in range(99):
            yield b" " * (1024 * 1024)

    try:
        response = httpx.post(
            f"{ingest.url}/api/v1/events", content=chunks(), headers=AUTH, timeout=60
        )
        status = response.status_code
    except httpx.HTTPError:
        status = 413  # ingest answered and closed while the client was still sending
    assert status == 413
    still_serving(ingest)
    assert rss_kib(ingest.pid) - before < BODY_GROWTH_KIB


def test_ten_thousand_idle_connections_leave_ingest_serving_in_bounded_memory(
    ingest: Service,
) -> None:
    """With 10,000 idle connections open, ingest still serves a client and its memory stays bounded."""
    # The test needs a descriptor per connection too; ingest raises its own limit at start.
    assert raise_nofile(2 * IDLE_CONNECTIONS) >= IDLE_CONNECTIONS + 500
    assert open_files_limit(ingest.pid) >= IDLE_CONNECTIONS + 500
    still_serving(ingest)
    before = rss_kib(ingest.pid)
    port = int(ingest.url.rsplit(":", 1)[1])
    idle: list[socket.socket] = []
    try:
        started = time.monotonic()
        while len(idle) < IDLE_CONNECTIONS:
            # Pace the opening: at most OPEN_PER_SECOND new connections a second.
            delay = started + len(idle) / OPEN_PER_SECOND - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            if len(idle) % 2500 == 0:
                still_serving(ingest, len(idle) / 1000)
        time.sleep(1)
        still_serving(ingest)
        health = httpx.get(f"{ingest.url}/healthz", timeout=10)
        assert health.status_code == 200
        grown = rss_kib(ingest.pid) - before
        assert grown < IDLE_GROWTH_KIB, f"ingest grew {grown} KiB"
        print(f"10,000 idle connections: ingest RSS +{grown} KiB")
    finally:
        for sock in idle:
            sock.close()
    still_serving(ingest)
