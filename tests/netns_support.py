"""Blackhole routes, veth pairs, network namespaces and a threaded fake engine, for vantage tests.

Every subnet a test gives a network that is not a bridge is blackholed in the host namespace
before the network exists and until it is gone: a probe sent the wrong way (by the default
route) then fails on this machine instead of leaving it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests import required
from tests.docker_support import docker
from tests.fake_docker import FakeDocker

# Counts the connections it accepts on ADDRESS:PORT into COUNT_FILE; prints "ready".
LISTENER = r"""
import socket, sys
address, port, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, port))
server.listen(64)
open(count_file, "w").write("0")
print("ready", flush=True)
accepted = 0
while True:
    conn, _ = server.accept()
    conn.close()
    accepted += 1
    open(count_file, "w").write(str(accepted))
"""


def ip(*args: str, check: bool = True) -> str:
    """Run iproute2's ip and return its output."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def need_root() -> None:
    """Skip (or fail where DOCKPING_REQUIRE_NETNS=1) without root and iproute2."""
    if os.geteuid() != 0:
        required.unavailable("netns", "needs root to make network namespaces and routes")
    if shutil.which("ip") is None:
        required.unavailable("netns", "needs iproute2 (ip)")


def unused_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.213.0.0/16 that no route of this machine overlaps."""
    routes = json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]")
    taken = []
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.ip_network(dst, strict=False))
    # Docker's own networks hold their subnets too, macvlan ones without any route.
    engine = docker("network", "ls", "-q", check=False).split() if shutil.which("docker") else []
    if engine:
        inspected = json.loads(docker("network", "inspect", *engine, check=False) or "[]")
        for network in inspected:
            for config in (network.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, TypeError):
                    taken.append(ipaddress.ip_network(config.get("Subnet"), strict=False))
    for third in random.sample(range(1, 255), 254):
        subnet = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise RuntimeError("no free /24 in 10.213.0.0/16")


@contextlib.contextmanager
def blackholed(subnet: ipaddress.IPv4Network) -> Iterator[ipaddress.IPv4Network]:
    """The subnet blackholed in the host namespace while the block runs."""
    ip("route", "add", "blackhole", str(subnet))
    try:
        yield subnet
    finally:
        ip("route", "del", "blackhole", str(subnet), check=False)


@contextlib.contextmanager
def veth_pair() -> Iterator[str]:
    """A veth pair, both ends up; yields the name of the end to use as a parent."""
    stem = f"dpv{uuid.uuid4().hex[:6]}"
    ip("link", "add", f"{stem}a", "type", "veth", "peer", "name", f"{stem}b")
    try:
        ip("link", "set", f"{stem}a", "up")
        ip("link", "set", f"{stem}b", "up")
        yield f"{stem}a"
    finally:
        ip("link", "del", f"{stem}a", check=False)


class Listener:
    """A process listening on an address inside a network namespace of its own."""

    def __init__(
        self, namespace: str, address: str, process: subprocess.Popen[str], count_file: Path
    ) -> None:
        self.namespace = namespace
        self.address = address
        self.process = process
        self.count_file = count_file

    @property
    def pid(self) -> int:
        """The listener's PID: what the fake engine reports as the container's State.Pid."""
        return self.process.pid

    def accepted(self) -> int:
        """Connections accepted so far."""
        return int(self.count_file.read_text() or 0)


@contextlib.contextmanager
def listener_namespace(address: str, port: int, scratch: Path) -> Iterator[Listener]:
    """A fresh network namespace holding `address` on its loopback, with a listener on it."""
    name = f"dpt-ns-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    process: subprocess.Popen[str] | None = None
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "addr", "add", f"{address}/32", "dev", "lo")
        count_file = scratch / f"{name}.count"
        # ip netns exec switches namespace and execs: the listener keeps the PID it started with.
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                name,
                sys.executable,
                "-c",
                LISTENER,
                address,
                str(port),
                str(count_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the listener did not start")
        yield Listener(name, address, process, count_file)
    finally:
        if process is not None:
            process.kill()
            process.wait(10)
        ip("netns", "del", name, check=False)


@contextlib.contextmanager
def fake_engine(socket_path: Path, containers: dict[str, dict[str, Any]]) -> Iterator[FakeDocker]:
    """The fake Engine API serving these inspect payloads, on a loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    served: list[FakeDocker] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with FakeDocker(socket_path) as engine:
            engine.containers.update(containers)
            served.append(engine)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the fake engine did not start")
    try:
        yield served[0]
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def settle(seconds: float) -> None:
    """Let several probe intervals pass (for tests that assert something never happens)."""
    time.sleep(seconds)
