"""Probes on real sockets: a listener is up, a closed port is refused, a hung one times out."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.probing import classify
from agent.targets import Target
from tests.probe_support import probe_once

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parent.parent


async def test_a_listening_port_succeeds_with_a_latency() -> None:
    """A connect to a listener on 127.0.0.1:0 succeeds and is timed."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = await probe_once(Target("c", "127.0.0.1", port, "tcp"), 2.0)
    assert result.ok
    assert result.error is None
    assert result.latency_ms is not None
    assert result.latency_ms >= 0


async def test_a_closed_port_is_refused() -> None:
    """Nothing listens: the probe fails with `refused`."""
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    result = await probe_once(Target("c", "127.0.0.1", port, "tcp"), 2.0)
    assert (result.ok, result.error, result.latency_ms) == (False, "refused", None)


async def test_a_full_backlog_times_out(hung: int) -> None:
    """A listener that never accepts, with its backlog full, makes the probe time out."""
    result = await probe_once(Target("c", "127.0.0.1", hung, "tcp"), 0.3)
    assert (result.ok, result.error) == (False, "timeout")


def test_errors_are_classified() -> None:
    """OS errors map to the contract's error kinds."""
    import errno

    assert classify(ConnectionRefusedError()) == "refused"
    assert classify(TimeoutError()) == "timeout"
    assert classify(OSError(errno.EHOSTUNREACH, "x")) == "unreachable"
    assert classify(ConnectionResetError()) == "reset"
    assert classify(ValueError()) == "other"


def test_icmp_echo_works_where_unprivileged_icmp_is_allowed() -> None:
    """In a network namespace of our own that allows unprivileged ICMP, an echo to 127.0.0.1 succeeds."""
    import os
    import shutil
    import subprocess
    import sys
    import uuid

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace of its own")
    namespace = f"dpt-icmp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        inside = ["ip", "netns", "exec", namespace]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [*inside, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647"], check=True
        )
        script = (
            "import anyio\n"
            "from agent.probes import icmp_available\n"
            "from agent.targets import Target\n"
            "from tests.probe_support import probe_once\n"
            "print(icmp_available())\n"
            "r = anyio.run(probe_once, Target('c', '127.0.0.1', None, 'icmp'), 2.0)\n"
            "print(r.ok, r.error, r.latency_ms is not None)\n"
        )
        done = subprocess.run(
            [*inside, sys.executable, "-c", script],
            cwd=ROOT,  # where `tests` is importable from
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["True", "True None True"]


def test_the_registry_holds_one_probe_per_protocol() -> None:
    """Probes are looked up by protocol: tcp, icmp, http and https, as the contract names them."""
    from agent.probes import REGISTRY

    assert sorted(REGISTRY) == ["http", "https", "icmp", "tcp"]
