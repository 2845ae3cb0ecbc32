"""The agent against a real Docker engine, as real processes, with results read from the store."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.docker_support import Containers, docker, unavailable
from tests.services import wait_for
from tests.test_agent_shipping import Stack, container_id, running

pytestmark = pytest.mark.docker


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """Ingest and an agent, running."""
    with running(tmp_path, database_url, DOCKPING_AGENT__RESYNC_INTERVAL="1s") as made:
        yield made


def _records(stack: Stack, query: str, cid: str) -> list[dict[str, Any]]:
    """The rows of a query on one container, as dicts by column name."""
    with psycopg.connect(stack.database_url) as conn:
        cursor = conn.execute(query, (cid,))
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rows(stack: Stack, cid: str) -> list[dict[str, Any]]:
    """The container's addresses in latest_state."""
    return _records(
        stack,
        "SELECT ip, port, protocol, network, status, error, status = 'gone' AS removed,"
        " container_name"
        " FROM latest_state WHERE container_id = %s ORDER BY ip, port",
        cid,
    )


def history(stack: Stack, cid: str) -> list[dict[str, Any]]:
    """The container's lifecycle events, oldest first."""
    return _records(
        stack,
        "SELECT time, action, exit_code, detail, container_name, image"
        " FROM container_history WHERE container_id = %s ORDER BY time",
        cid,
    )


def actions(stack: Stack, cid: str) -> list[str]:
    """The actions of a container's lifecycle events."""
    return [event["action"] for event in history(stack, cid)]


def test_a_started_container_is_probed_and_its_start_stored(
    stack: Stack, containers: Containers
) -> None:
    """A new container's IP and port are probed `up`; its start is stored with name and image."""
    name = containers.run("web", "httpd", "-f", "-p", "8000", expose=(8000,))
    cid = container_id(name)
    found = wait_for(
        lambda: (r := rows(stack, cid)) and r[0]["status"] == "up" and r, 60, "the target up"
    )
    assert [(r["ip"], r["port"], r["protocol"]) for r in found] == [
        (containers.ip(name), 8000, "tcp")
    ]
    start = [e for e in history(stack, cid) if e["action"] == "start"]
    assert [(e["container_name"], e["image"]) for e in start] == [(name, containers.image)]


def test_a_second_network_is_probed_after_connect_and_dropped_after_disconnect(
    stack: Stack, containers: Containers
) -> None:
    """Connecting a network adds its IP to the probes; disconnecting stops them and removes it."""
    network = f"dpt-net-{uuid.uuid4().hex[:8]}"
    docker("network", "create", network)
    try:
        name = containers.run("multi", "httpd", "-f", "-p", "8000", expose=(8000,))
        cid = container_id(name)
        wait_for(lambda: rows(stack, cid), 60, "the first address")
        docker("network", "connect", network, name)
        second = containers.ip(name, network)
        wait_for(
            lambda: any(r["ip"] == second and r["status"] == "up" for r in rows(stack, cid)),
            60,
            "the second IP up",
        )
        assert {r["network"] for r in rows(stack, cid)} == {"bridge", network}
        docker("network", "disconnect", network, name)
        disconnect = wait_for(
            lambda: [e for e in history(stack, cid) if e["action"] == "network_disconnect"],
            60,
            "the disconnect stored",
        )
        time.sleep(2.0)  # several probe intervals: the first IP is still probed meanwhile
        later = disconnect[0]["time"] + timedelta(seconds=0.5)
        after = [i for i in stack.identities(cid) if i[4] > later]
        assert {i[1] for i in after} == {containers.ip(name)}
        # And the store no longer lists the second address; the first one stays.
        listed = {r["ip"]: r["removed"] for r in rows(stack, cid)}
        assert listed == {containers.ip(name): False, second: True}
        connects = [
            (e["action"], e["detail"]["network"])
            for e in history(stack, cid)
            if e["action"].startswith("network_") and e["detail"]["network"] == network
        ]
        # The engine reports a disconnect twice (endpoint and sandbox); both are kept.
        assert connects[0] == ("network_connect", network)
        assert set(connects[1:]) == {("network_disconnect", network)}
    finally:
        docker("rm", "-f", *containers.names, check=False)
        docker("network", "rm", network, check=False)


def test_a_paused_container_times_out(stack: Stack, containers: Containers) -> None:
    """Paused, the container is down at once; once its listener's backlog is full, probes time out."""
    name = containers.run("paused", "httpd", "-f", "-p", "8000", expose=(8000,))
    cid = container_id(name)
    wait_for(lambda: (r := rows(stack, cid)) and r[0]["status"] == "up", 60, "the target up")
    docker("pause", name)
    try:
        # Down from the pause event on; then the probes themselves time out.
        wait_for(lambda: (r := rows(stack, cid)) and r[0]["status"] == "down" and r, 30, "down")
        assert "pause" in actions(stack, cid)
        down = wait_for(
            lambda: (r := rows(stack, cid)) and r[0]["error"] == "timeout" and r, 90, "timeout"
        )
        assert down[0]["status"] == "down"
    finally:
        docker("unpause", name, check=False)


def test_a_stopped_container_is_stopped_then_gone_once_removed(
    stack: Stack, containers: Containers
) -> None:
    """docker stop shows `stopped` with the exit code stored; docker rm removes the address."""
    name = containers.run("stop", "httpd", "-f", "-p", "8000", expose=(8000,))
    cid = container_id(name)
    wait_for(lambda: (r := rows(stack, cid)) and r[0]["status"] == "up", 60, "the target up")
    docker("stop", "-t", "1", name)
    wait_for(lambda: rows(stack, cid)[0]["status"] == "stopped", 60, "stopped")
    # `kill` (sent first by docker stop) already shows `stopped`; `die` follows it.
    die = wait_for(
        lambda: [e for e in history(stack, cid) if e["action"] == "die"], 60, "the die event"
    )
    assert len(die) == 1
    assert die[0]["exit_code"] is not None
    docker("rm", name)
    wait_for(lambda: rows(stack, cid)[0]["removed"], 60, "removed")
    assert actions(stack, cid)[-1] == "destroy"


def test_labels_disable_replace_ports_and_set_the_interval(
    stack: Stack, containers: Containers
) -> None:
    """dockping.enable=false is never probed; dockping.ports replaces the ports; dockping.interval is kept."""
    off = container_id(
        containers.run(
            "off", "httpd", "-f", "-p", "8000", expose=(8000,), labels={"dockping.enable": "false"}
        )
    )
    ports = container_id(
        containers.run(
            "ports",
            "httpd",
            "-f",
            "-p",
            "8000",
            expose=(8000,),
            labels={"dockping.ports": "8000,9"},
        )
    )
    slow = container_id(
        containers.run(
            "slow", "httpd", "-f", "-p", "8000", expose=(8000,), labels={"dockping.interval": "1h"}
        )
    )
    found = wait_for(
        lambda: (
            (r := rows(stack, ports))
            and len(r) == 2
            and all(x["status"] != "unknown" for x in r)
            and r
        ),
        60,
        "both ports probed",
    )
    assert {(r["port"], r["status"], r["error"]) for r in found} == {
        (8000, "up", None),
        (9, "down", "refused"),
    }
    wait_for(
        lambda: len(stack.identities(ports)) >= 8, 60, "several probes of the default interval"
    )
    # One hour between probes: only the first probe, made at once, in the same time.
    assert len(stack.identities(slow)) == 1
    assert rows(stack, off) == []
    assert stack.identities(off) == set()
    assert history(stack, off) == []


def test_a_container_without_a_port_or_icmp_is_explained(
    stack: Stack, containers: Containers
) -> None:
    """With no TCP port and no unprivileged ICMP, the container is not probed and the agent says why."""
    if Path("/proc/sys/net/ipv4/ping_group_range").read_text().split() != ["1", "0"]:
        pytest.skip("this system allows unprivileged ICMP: the container gets an ICMP probe")
    name = containers.run("bare", "sleep", "3600")
    cid = container_id(name)
    wait_for(lambda: "start" in actions(stack, cid), 60, "the start stored")
    assert rows(stack, cid) == []
    assert stack.agent is not None
    notes = [
        json.loads(line)
        for line in stack.agent.output().splitlines()
        if '"container.no_probe"' in line and name in line
    ]
    assert len(notes) == 1
    assert "ICMP" in notes[0]["reason"]


def _dockerd() -> tuple[int, list[str]]:
    found = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False)
    pids = found.stdout.split()
    if len(pids) != 1:
        unavailable(f"need exactly one dockerd process to restart, found {len(pids)}")
    pid = int(pids[0])
    command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    return pid, [part.decode() for part in command]


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _restart_dockerd() -> None:
    """Stop dockerd and start it again exactly as found: a plain `dockerd` in the background."""
    pid, command = _dockerd()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Through a shell that exits at once, as .ci/run does: dockerd is then nobody's child
    # here, so that whoever restarts it next sees it exit rather than linger as our zombie.
    line = " ".join(shlex.quote(part) for part in command)
    subprocess.run(["sh", "-c", f"{line} >>/tmp/dockping-test-dockerd.log 2>&1 &"], check=True)
    wait_for(
        lambda: (
            subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
        ),
        60,
        "docker info answering after the restart",
    )


# Restarting dockerd stops every container on the engine, other test runs' included.
RESTART_ALLOWED = (
    os.environ.get("CI") == "true" or os.environ.get("DOCKPING_TEST_RESTART_DOCKERD") == "1"
)


@pytest.mark.skipif(
    not RESTART_ALLOWED,
    reason="restarts the shared dockerd: runs in CI (CI=true) or with DOCKPING_TEST_RESTART_DOCKERD=1",
)
def test_the_agent_recovers_from_a_dockerd_restart(stack: Stack, containers: Containers) -> None:
    """dockerd goes away and comes back: the agent logs it once each way, resyncs, and probes new containers."""
    before = container_id(containers.run("before", "httpd", "-f", "-p", "8000", expose=(8000,)))
    wait_for(lambda: (r := rows(stack, before)) and r[0]["status"] == "up", 60, "the target up")
    _restart_dockerd()
    if docker("info", "-f", "{{.LiveRestoreEnabled}}") != "true":
        # Without live-restore the engine stopped the container: the resync says so.
        wait_for(lambda: rows(stack, before)[0]["status"] == "stopped", 60, "stopped")
    after = container_id(containers.run("after", "httpd", "-f", "-p", "8000", expose=(8000,)))
    wait_for(lambda: (r := rows(stack, after)) and r[0]["status"] == "up", 60, "a new target up")
    assert stack.agent is not None
    assert stack.agent.process.poll() is None
    log = stack.agent.output()
    # A daemon shutting down may still answer a whole resync between two signs of its end, so
    # the outage can be told more than once; each is told, and each ends in a recovery.
    outages = log.count('"docker.unreachable"')
    assert outages >= 1, log
    assert log.count('"docker.connected"') == outages + 1, log
    assert stack.agent.stop() == 0
    assert "Traceback" not in log
