"""The agent on Podman's Docker-compatible API, as real processes, results read from the store.

The resync interval is long, so that what changes is seen through Podman's event stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.podman_support import IMAGE, Podman, podman, podman_engine  # noqa: F401 - fixtures
from tests.services import wait_for
from tests.test_agent_docker import history, rows
from tests.test_agent_shipping import Stack, running

pytestmark = pytest.mark.podman


@pytest.fixture
def stack(tmp_path: Path, database_url: str, podman_engine: Podman) -> Iterator[Stack]:  # noqa: F811
    """Ingest and an agent watching the Podman."""
    with running(
        tmp_path,
        database_url,
        connected=True,
        DOCKPING_AGENT__DOCKER_URL=podman_engine.url,
        DOCKPING_AGENT__RESYNC_INTERVAL="10m",
    ) as made:
        yield made


def _id(podman: Podman, name: str) -> str:  # noqa: F811
    return podman("inspect", "-f", "{{.Id}}", name)


def _by_port(stack: Stack, cid: str) -> dict[int | None, str]:
    return {r["port"]: r["status"] for r in rows(stack, cid) if not r["removed"]}


def test_start_pause_stop_and_removal_on_podman(stack: Stack, podman: Podman) -> None:  # noqa: F811
    """A container is up (and a closed port down), paused down, stopped, started again; `rm -f` removes its rows."""
    name = podman.run("life", "--label", "dockping.ports=8000,9")
    cid = _id(podman, name)
    wait_for(lambda: _by_port(stack, cid) == {8000: "up", 9: "down"}, 60, "up and down")
    assert {r["error"] for r in rows(stack, cid) if r["port"] == 9} == {"refused"}
    assert {r["ip"] for r in rows(stack, cid)} == {podman.ip(name)}
    podman("pause", name)
    wait_for(lambda: set(_by_port(stack, cid).values()) == {"down"}, 60, "paused down")
    podman("unpause", name)
    wait_for(lambda: _by_port(stack, cid).get(8000) == "up", 60, "up again")
    podman("stop", "-t", "1", name)
    import time

    time.sleep(5)
    print("ROWS", rows(stack, cid))
    print("HIST", [(e["time"], e["action"]) for e in history(stack, cid)])
    wait_for(lambda: set(_by_port(stack, cid).values()) == {"stopped"}, 60, "stopped")
    podman("start", name)
    wait_for(lambda: _by_port(stack, cid).get(8000) == "up", 60, "started again")
    podman("rm", "-f", "-t", "0", name)
    wait_for(lambda: all(r["removed"] for r in rows(stack, cid)), 60, "the rows gone")
    actions = [e["action"] for e in history(stack, cid)]
    assert actions[-1] == "destroy"
    assert actions.count("destroy") == 1
    assert stack.agent is not None
    assert "docker.unreachable" not in stack.agent.output()


def test_a_network_connected_and_disconnected_on_podman(stack: Stack, podman: Podman) -> None:  # noqa: F811
    """Podman's nameless network events: the second address appears, then leaves the listing."""
    network = podman.name("net")
    podman("network", "create", network)
    name = podman.run("nets", "--label", "dockping.ports=8000")
    cid = _id(podman, name)
    first = podman.ip(name)
    wait_for(lambda: _by_port(stack, cid) == {8000: "up"}, 60, "the first address up")
    podman("network", "connect", network, name)
    second = podman.ip(name, network)
    wait_for(
        lambda: {r["ip"]: r["status"] for r in rows(stack, cid)} == {first: "up", second: "up"},
        60,
        "the second address up",
    )
    podman("network", "disconnect", network, name)
    wait_for(
        lambda: {r["ip"]: r["removed"] for r in rows(stack, cid)} == {first: False, second: True},
        60,
        "the second address gone",
    )
    networks = [
        (e["action"], e["detail"]["network"])
        for e in history(stack, cid)
        if e["action"].startswith("network_") and e["detail"]["network"] == network
    ]
    assert networks == [("network_connect", network), ("network_disconnect", network)]


def test_a_restart_with_a_new_ip_on_podman_drops_the_old_address(
    stack: Stack,
    podman: Podman,  # noqa: F811
) -> None:
    """Stopped, its IP taken by another, started again: the old address leaves, the new one is up."""
    name = podman.run("moving", "--label", "dockping.ports=8000")
    cid = _id(podman, name)
    old = podman.ip(name)
    wait_for(lambda: _by_port(stack, cid) == {8000: "up"}, 60, "up")
    podman("stop", "-t", "0", name)
    podman.run("taker", "--label", "dockping.ports=8000")  # the next start gets another IP
    podman("start", name)
    new = podman.ip(name)
    assert new != old
    wait_for(lambda: _by_port(stack, cid) == {8000: "up"}, 60, "up again")
    try:
        wait_for(
            lambda: {r["ip"]: r["removed"] for r in rows(stack, cid)} == {old: True, new: False},
            30,
            "the old address gone",
        )
    except AssertionError:
        print("ROWS", rows(stack, cid))
        print("HIST", [(e["time"], e["action"], e["detail"]) for e in history(stack, cid)])
        raise
    up = [r["ip"] for r in rows(stack, cid) if r["status"] == "up" and not r["removed"]]
    assert up == [new]


def test_a_pod_is_probed_once_as_its_infra_container(stack: Stack, podman: Podman) -> None:  # noqa: F811
    """Two members of a pod, each with a port label: one address with both ports, attributed to the pod's infra container."""
    pod = podman.name("pod")
    podman("pod", "create", "--name", pod)
    first = podman.run("m1", "--pod", pod, "--label", "dockping.ports=8000")
    podman(
        "run",
        "-d",
        "--pod",
        pod,
        "--name",
        podman.name("m2"),
        "--label",
        "dockping.ports=8001",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "8001",
    )
    infra = podman("pod", "inspect", "-f", "{{.InfraContainerID}}", pod)
    wait_for(lambda: _by_port(stack, infra) == {8000: "up", 8001: "up"}, 60, "the pod's ports up")
    assert {r["ip"] for r in rows(stack, infra)} == {podman.ip(first)}
    assert rows(stack, _id(podman, first)) == []
