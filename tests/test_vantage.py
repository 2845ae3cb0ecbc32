"""Vantages: each address probed from where it is reachable, never by the default route.

The agent's own namespace probes what it reaches directly; the rest is probed from inside the
container's network namespace, or, where the agent may not enter it, not at all. Every subnet
here is blackholed in the host namespace first (tests/netns_support.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from agent.netns import Namespace, NamespaceError, SocketMaker, entry_denied
from agent.probes.sockets import open_socket
from agent.targets import Target, container_of
from agent.vantage import Routes, Vantages
from dockping.contract import UNPROBED_NOTE
from tests.docker_support import Containers, docker
from tests.fake_docker import inspect_payload
from tests.netns_support import (
    Listener,
    blackholed,
    fake_engine,
    ip,
    listener_namespace,
    need_root,
    settle,
    unused_subnet,
    veth_pair,
)
from tests.services import wait_for
from tests.test_agent_shipping import Stack, container_id

PORT = 8080


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dpv-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def subnet() -> Iterator[ipaddress.IPv4Network]:
    """An unused /24, blackholed in the host namespace for the whole test."""
    need_root()
    with blackholed(unused_subnet()) as held:
        yield held


@pytest.fixture
def listener(subnet: ipaddress.IPv4Network, scratch: Path) -> Iterator[Listener]:
    """A listener on an address of the blackholed subnet, in a namespace of its own."""
    with listener_namespace(str(subnet[5]), PORT, scratch) as running:
        yield running


def _proc(tmp_path: Path, cap_eff: int) -> Path:
    (tmp_path / "self" / "ns").mkdir(parents=True)
    (tmp_path / "self" / "status").write_text(f"Name:\tagent\nCapEff:\t{cap_eff:016x}\n")
    (tmp_path / "self" / "ns" / "pid").write_text("")
    return tmp_path


def test_entry_is_denied_without_cap_sys_admin(tmp_path: Path) -> None:
    """Without CAP_SYS_ADMIN in the effective set, the reason names the capability."""
    assert entry_denied(_proc(tmp_path, 0x1FFFFDFFFFF)) == "the agent lacks CAP_SYS_ADMIN"


def test_entry_is_denied_outside_the_hosts_pid_namespace(tmp_path: Path) -> None:
    """With CAP_SYS_ADMIN but another PID namespace, the reason names the PID namespace."""
    reason = entry_denied(_proc(tmp_path, 1 << 21))
    assert reason == "the agent is not in the host's PID namespace"


def test_a_target_without_a_namespace_gets_no_socket_of_the_agents_network() -> None:
    """open_socket refuses a container-vantage target that has no namespace handle."""
    with pytest.raises(NamespaceError):
        open_socket(Target("c", "10.213.0.5", 80, "tcp", vantage="container"))


def test_the_agents_own_address_is_direct() -> None:
    """An address of the agent's own namespace is probed from it."""
    assert Routes().direct("127.0.0.1") is True


def test_a_blackholed_address_is_not_direct(subnet: ipaddress.IPv4Network) -> None:
    """An address the host reaches only by a blackhole (or a gateway) is not probed from it."""
    routes = Routes()
    try:
        assert routes.direct(str(subnet[5])) is False
    finally:
        routes.close()


def _inode(path: str) -> int:
    """The inode of a namespace file: the namespace's identity."""
    return Path(path).stat().st_ino


@pytest.mark.anyio
async def test_a_socket_made_in_a_namespace_reaches_what_only_that_namespace_holds(
    listener: Listener,
) -> None:
    """Sockets made (or stocked) in the listener's namespace connect; close lets it all go."""
    maker = SocketMaker()
    namespace = Namespace(listener.pid, maker)
    for _ in range(20):  # past the stock: made at once, then taken from the refilled stock
        sock = namespace.socket(2, 1, 0)  # AF_INET, SOCK_STREAM
        try:
            await asyncio.get_running_loop().sock_connect(sock, (listener.address, PORT))
        finally:
            sock.close()
    assert wait_for(lambda: listener.accepted() == 20, 10, "20 connections accepted")
    worker = next(t for t in threading.enumerate() if t.name == "netns-sockets")
    assert worker.native_id is not None
    thread_namespace = f"/proc/self/task/{worker.native_id}/ns/net"
    assert _inode(thread_namespace) == _inode(f"/proc/{listener.pid}/ns/net")
    stocked = [sock for stock in namespace.stock.values() for sock in stock]
    namespace.close()
    assert _inode(thread_namespace) == _inode("/proc/self/ns/net")
    assert stocked
    assert all(sock.fileno() == -1 for sock in stocked)
    with pytest.raises(NamespaceError):
        namespace.socket(2, 1, 0)


def test_addresses_get_their_vantage_and_the_denial_is_logged_once(listener: Listener) -> None:
    """Loopback is host; a blackholed address is container, or none (logged once) when denied."""
    payload = inspect_payload(
        "c1", "mixed", {"bridge": "127.0.0.1", "overlay": listener.address}, pid=listener.pid
    )
    container = container_of(payload)
    allowed = Vantages(enter_namespaces=True)
    try:
        placed = {t.ip: t.vantage for t in allowed.place(container)}
        assert {"127.0.0.1": "host", listener.address: "container"} == placed
        assert allowed.held == 1
        allowed.forget("c1")
        assert allowed.held == 0
    finally:
        allowed.close()
    denied = Vantages(enter_namespaces=False)
    with capture_logs() as logs:
        first = {t.ip: t.vantage for t in denied.place(container)}
        second = container_of({**payload, "Id": "c2"})
        again = {t.ip: t.vantage for t in denied.place(second)}
    denied.close()
    assert {"127.0.0.1": "host", listener.address: "none"} == first == again
    told = [entry for entry in logs if entry["event"] == "vantage.no_entry"]
    assert [entry["note"] for entry in told] == [UNPROBED_NOTE]


def _state(database_url: str, container_id: str) -> list[tuple[str, str, str | None, int]]:
    """Per target of a container: ip, status, vantage (stored) and probe events stored."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT l.ip, l.status, v.vantage,"
            " (SELECT count(*) FROM probe_history h WHERE h.target_id = l.target_id)::int"
            " FROM latest_state l JOIN targets t USING (target_id)"
            " LEFT JOIN target_vantages v ON v.code = t.vantage"
            " WHERE l.container_id = %s ORDER BY l.ip",
            (container_id,),
        ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


@contextlib.contextmanager
def _overlay_stack(
    tmp_path: Path, database_url: str, scratch: Path, listener: Listener, **overrides: str
) -> Iterator[Stack]:
    """Ingest and an agent, the fake engine reporting one Swarm task on an overlay network."""
    payload = inspect_payload(
        "task1",
        "web.1.abc",
        {"my-overlay": listener.address},
        ports=(PORT,),
        labels={
            "com.docker.stack.namespace": "shop",
            "com.docker.swarm.service.name": "shop_web",
        },
        pid=listener.pid,
    )
    with fake_engine(scratch / "docker.sock", {"task1": payload}):
        stack = Stack(
            tmp_path,
            database_url,
            DOCKPING_AGENT__DOCKER_URL=f"unix://{scratch / 'docker.sock'}",
            **overrides,
        )
        stack.start_ingest()
        stack.start_agent()
        try:
            yield stack
        finally:
            stack.close()


def test_an_overlay_task_is_probed_from_inside_its_namespace(
    tmp_path: Path, database_url: str, scratch: Path, listener: Listener
) -> None:
    """A task on an overlay network shows up, probed from its namespace, with stack and service."""
    with _overlay_stack(tmp_path, database_url, scratch, listener) as stack:
        found = wait_for(
            lambda: (s := _state(database_url, "task1")) and s[0][1] == "up" and s,
            60,
            "the overlay task up",
        )
        assert [(listener.address, "up", "container")] == [r[:3] for r in found]
        assert listener.accepted() >= 1
        with psycopg.connect(stack.database_url) as conn:
            row = conn.execute(
                "SELECT compose_project, compose_service FROM containers"
                " WHERE container_id = 'task1'"
            ).fetchone()
        assert row == ("shop", "shop_web")


def test_without_namespace_entry_an_overlay_task_is_unknown_and_nothing_is_sent(
    tmp_path: Path, database_url: str, scratch: Path, listener: Listener
) -> None:
    """With entry denied the task is declared unprobed: unknown, no probe event, no connection."""
    with _overlay_stack(
        tmp_path, database_url, scratch, listener, DOCKPING_AGENT__ENTER_NAMESPACES="false"
    ) as stack:
        found = wait_for(lambda: _state(database_url, "task1"), 60, "the task declared")
        settle(3)  # three probe intervals
        assert [(listener.address, "unknown", "none", 0)] == _state(database_url, "task1")
        assert found[0][2] == "none"
        assert listener.accepted() == 0
        assert stack.agent is not None
        told = [
            line for line in stack.agent.log.read_text().splitlines() if "vantage.no_entry" in line
        ]
        assert len(told) == 1


def _kernel_has(kind: str, parent: str) -> str | None:
    """Why the kernel cannot make a `kind` link on `parent` (None: it can)."""
    probe = f"dpk{os.getpid() % 100000}"
    try:
        ip("link", "add", "link", parent, "name", probe, "type", *kind.split())
    except RuntimeError as exc:
        return f"the kernel cannot make {kind.split()[0]} links here: {exc}"
    ip("link", "del", probe, check=False)
    return None


@contextlib.contextmanager
def _engine_network(
    driver: str, subnet: ipaddress.IPv4Network, parent: str, *options: str
) -> Iterator[str]:
    """A Docker network of `driver` on the veth parent, in the blackholed subnet."""
    name = f"dpt-{driver}-{uuid.uuid4().hex[:8]}"
    docker(
        "network",
        "create",
        "-d",
        driver,
        "--subnet",
        str(subnet),
        "-o",
        f"parent={parent}",
        *options,
        name,
    )
    try:
        yield name
    finally:
        # The test's containers are still on it (the fixture removes them later): without them
        # first, the network would stay, and its subnet with it.
        on_it = docker("ps", "-aq", "--filter", f"network={name}", check=False).split()
        if on_it:
            docker("rm", "-f", *on_it, check=False)
        docker("network", "rm", name, check=False)


def _real_engine_case(
    tmp_path: Path,
    database_url: str,
    containers: Containers,
    network: str,
    **overrides: str,
) -> tuple[Stack, str, str, str]:
    """An agent, a listening and a refusing container on `network`, and one on the bridge."""
    listening = containers.run(
        "vl-up", "httpd", "-f", "-p", "8000", expose=(8000,), network=network
    )
    refusing = containers.run(
        "vl-down", "httpd", "-f", "-p", "8000", labels={"dockping.ports": "8001"}, network=network
    )
    bridged = containers.run("vl-bridge", "httpd", "-f", "-p", "8000", expose=(8000,))
    stack = Stack(tmp_path, database_url, DOCKPING_AGENT__RESYNC_INTERVAL="1s", **overrides)
    stack.start_ingest()
    stack.start_agent()
    return stack, container_id(listening), container_id(refusing), container_id(bridged)


def _vantage_and_error(database_url: str, cid: str) -> list[tuple[str, str | None, str | None]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT l.status, l.error, v.vantage FROM latest_state l JOIN targets t"
            " USING (target_id) LEFT JOIN target_vantages v ON v.code = t.vantage"
            " WHERE l.container_id = %s",
            (cid,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _check_probed_from_inside(database_url: str, up: str, down: str, bridged: str) -> None:
    assert wait_for(
        lambda: (r := _vantage_and_error(database_url, up)) and r[0][0] == "up" and r,
        90,
        "the listening container up",
    ) == [("up", None, "container")]
    assert wait_for(
        lambda: (r := _vantage_and_error(database_url, down)) and r[0][0] == "down" and r,
        90,
        "the refusing container down",
    ) == [("down", "refused", "container")]
    assert wait_for(
        lambda: (r := _vantage_and_error(database_url, bridged)) and r[0][0] == "up" and r,
        90,
        "the bridge container up",
    ) == [("up", None, "host")]


@pytest.mark.docker
@pytest.mark.parametrize("entry", ["allowed", "denied"])
def test_macvlan_containers_are_probed_from_inside_their_namespace(
    tmp_path: Path,
    database_url: str,
    containers: Containers,
    subnet: ipaddress.IPv4Network,
    entry: str,
) -> None:
    """On macvlan, a listener is up and a closed port down (refused), both probed from inside;
    with entry denied both are unknown and never probed, while the bridge one stays up."""
    with veth_pair() as parent, _engine_network("macvlan", subnet, parent) as network:
        overrides = {"DOCKPING_AGENT__ENTER_NAMESPACES": "false"} if entry == "denied" else {}
        stack, up, down, bridged = _real_engine_case(
            tmp_path, database_url, containers, network, **overrides
        )
        try:
            if entry == "allowed":
                _check_probed_from_inside(database_url, up, down, bridged)
            else:
                wait_for(
                    lambda: (r := _vantage_and_error(database_url, bridged)) and r[0][0] == "up",
                    90,
                    "the bridge container up",
                )
                wait_for(lambda: _state(database_url, down), 30, "the unprobed targets declared")
                settle(3)
                for cid in (up, down):
                    [(_ip_address, status, vantage, events)] = _state(database_url, cid)
                    assert (status, vantage, events) == ("unknown", "none", 0)
        finally:
            stack.close()


@pytest.mark.docker
def test_ipvlan_l2_containers_are_probed_from_inside_their_namespace(
    tmp_path: Path,
    database_url: str,
    containers: Containers,
    subnet: ipaddress.IPv4Network,
) -> None:
    """On ipvlan (l2), a listener is up and a closed port down (refused), both from inside."""
    with veth_pair() as parent:
        reason = _kernel_has("ipvlan mode l2", parent)
        if reason is not None:
            pytest.skip(reason)
        with _engine_network("ipvlan", subnet, parent, "-o", "ipvlan_mode=l2") as network:
            stack, up, down, bridged = _real_engine_case(
                tmp_path, database_url, containers, network
            )
            try:
                _check_probed_from_inside(database_url, up, down, bridged)
            finally:
                stack.close()
