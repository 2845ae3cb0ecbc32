"""What a resync heals, and Podman's ways, against the fake engine.

A resync emits the lifecycle events of what it finds changed without one (a removal, a
network left, an address moved); Podman's event shapes and its 500 "no such container"
are applied like Docker's. Real Podman is in tests/test_podman.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from agent.discovery import Discovery
from tests.fake_docker import FakeDocker, fake_engine, inspect_payload
from tests.test_agent_faults import Running, Seen, event_requests, until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[FakeDocker]:
    """A running fake engine."""
    async with fake_engine() as engine:
        yield engine


def _networks(fake: FakeDocker, container_id: str) -> dict[str, dict[str, str]]:
    networks: dict[str, dict[str, str]] = fake.containers[container_id]["NetworkSettings"][
        "Networks"
    ]
    return networks


def _network_events(run: Running, container_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.action, e.network)
        for e in run.seen.lifecycle
        if e.container_id == container_id and e.action.startswith("network_")
    ]


async def test_podmans_network_events_name_no_network_and_the_difference_says_which(
    fake: FakeDocker,
) -> None:
    """Podman's connect and disconnect (actor the container, no network name) add and drop the right IP."""
    fake.podman = True
    fake.containers["p1"] = inspect_payload("p1", "pod-web", {"podman": "10.88.0.2"})
    async with Running(fake) as run:
        await until(lambda: run.seen.targets.get("p1"), "p1")
        _networks(fake, "p1")["dpn"] = {"IPAddress": "10.89.0.2", "GlobalIPv6Address": ""}
        fake.emit("network", "connect", "p1", name="pod-web", podId="")
        await until(lambda: run.seen.ips("p1") == {"10.88.0.2", "10.89.0.2"}, "the second IP")
        del _networks(fake, "p1")["dpn"]
        fake.emit("network", "disconnect", "p1", name="pod-web", podId="")
        await until(lambda: run.seen.ips("p1") == {"10.88.0.2"}, "the second IP gone")
        assert _network_events(run, "p1") == [
            ("network_connect", "dpn"),
            ("network_disconnect", "dpn"),
        ]


async def test_podmans_remove_and_its_500_are_a_removal_not_an_outage(fake: FakeDocker) -> None:
    """A 500 "no such container" and a `remove` event end the container; the session stays up."""
    fake.podman = True
    fake.containers["p2"] = inspect_payload("p2", "gone-soon", {"podman": "10.88.0.3"})
    async with Running(fake) as run:
        await until(lambda: run.seen.targets.get("p2"), "p2")
        with capture_logs() as logs:
            del fake.containers["p2"]
            fake.emit("container", "died", "p2", name="gone-soon")
            fake.emit("container", "cleanup", "p2", name="gone-soon")
            fake.emit("container", "cleanup", "p2", name="gone-soon")
            fake.emit("container", "kill", "p2", name="gone-soon")  # inspected: the 500
            fake.emit("container", "remove", "p2", name="gone-soon")
            await until(lambda: "destroy" in run.seen.actions("p2"), "the removal")
        assert "p2" not in run.seen.targets
        assert run.seen.actions("p2") == ["start", "kill", "destroy"]
        events = [e["event"] for e in logs]
        assert "docker.unreachable" not in events
        assert len(event_requests(fake)) == 1
        unhandled = [e["action"] for e in logs if e["event"] == "docker.event.unhandled"]
        assert unhandled == ["container.died", "container.cleanup"]  # each logged once
        assert run.discovery.unhandled["container.cleanup"] == 2


async def test_a_stopping_container_is_running_until_it_stops(fake: FakeDocker) -> None:
    """Podman's `stopping` (Running false) keeps the targets, through a resync, until it exits."""
    fake.containers["p3"] = inspect_payload("p3", "slow-stop", {"podman": "10.88.0.4"})
    async with Running(fake, resync=0.2) as run:
        await until(lambda: run.seen.targets.get("p3"), "p3")
        state = fake.containers["p3"]["State"]
        state.update(Running=False, Status="stopping")
        fake.emit("container", "kill", "p3", name="slow-stop")
        resyncs = run.discovery.resyncs
        await until(lambda: run.discovery.resyncs >= resyncs + 2, "two resyncs meanwhile")
        assert run.seen.ips("p3") == {"10.88.0.4"}
        state.update(Status="exited")
        fake.emit("container", "die", "p3", name="slow-stop", exitCode="0")
        await until(lambda: "p3" not in run.seen.targets, "stopped")


async def test_a_resync_emits_what_it_heals_a_network_left_and_a_removal(fake: FakeDocker) -> None:
    """A network left and a container removed without an event: the resync emits network_disconnect and destroy."""
    fake.containers["r1"] = inspect_payload(
        "r1", "two-nets", {"bridge": "10.99.1.2", "backend": "10.98.1.2"}
    )
    fake.containers["r2"] = inspect_payload("r2", "removed", {"bridge": "10.99.1.3"})
    async with Running(fake, resync=0.3) as run:
        await until(lambda: len(run.seen.ips("r1")) == 2 and run.seen.targets.get("r2"), "both")
        del _networks(fake, "r1")["backend"]
        del fake.containers["r2"]
        await until(lambda: "destroy" in run.seen.actions("r2"), "r2's destroy")
        await until(lambda: _network_events(run, "r1"), "r1's disconnect")
        assert _network_events(run, "r1") == [("network_disconnect", "backend")]
        assert run.seen.ips("r1") == {"10.99.1.2"}
        assert run.seen.actions("r2") == ["start", "destroy"]
        await anyio.sleep(0.7)  # more resyncs: nothing is emitted twice
        assert run.seen.actions("r2") == ["start", "destroy"]
        assert _network_events(run, "r1") == [("network_disconnect", "backend")]


async def test_a_network_joined_by_an_event_and_left_unseen_is_healed(fake: FakeDocker) -> None:
    """A network joined by an event, then left while the stream missed it: the next resync
    emits network_disconnect, though the listing looks as it did before the join."""
    fake.containers["j1"] = inspect_payload("j1", "joiner", {"bridge": "10.99.2.2"})
    async with Running(fake) as run:
        await until(lambda: run.seen.ips("j1") == {"10.99.2.2"}, "j1 on its bridge")
        _networks(fake, "j1")["backend"] = {"IPAddress": "10.98.2.2", "GlobalIPv6Address": ""}
        fake.emit("network", "connect", "net-backend", container="j1", name="backend")
        await until(lambda: len(run.seen.ips("j1")) == 2, "the joined network's address")
        del _networks(fake, "j1")["backend"]  # no event: the stream missed it
        run.discovery._resync_wanted.set()
        await until(lambda: run.seen.ips("j1") == {"10.99.2.2"}, "the left address dropped")
        assert _network_events(run, "j1") == [
            ("network_connect", "backend"),
            ("network_disconnect", "backend"),
        ]


async def test_a_restart_with_a_new_ip_detaches_the_old_address(fake: FakeDocker) -> None:
    """Stopped without a disconnect (as Podman does) and started with a new IP: the old address is detached."""
    fake.containers["r3"] = inspect_payload("r3", "moving", {"podman": "10.88.1.2"})
    async with Running(fake) as run:
        await until(lambda: run.seen.targets.get("r3"), "r3")
        fake.containers["r3"]["State"]["Running"] = False
        fake.emit("container", "die", "r3", name="moving", exitCode="0")
        await until(lambda: "r3" not in run.seen.targets, "stopped")
        fake.containers["r3"] = inspect_payload(
            "r3", "moving", {"podman": "10.88.1.9"}, started_at="2026-11-27T21:00:00Z"
        )
        fake.emit("container", "start", "r3", name="moving")
        await until(lambda: run.seen.ips("r3") == {"10.88.1.9"}, "the new IP")
        assert run.seen.actions("r3") == ["start", "die", "start", "network_disconnect"]
        disconnect = run.seen.lifecycle[-1]
        assert (disconnect.network, disconnect.container_id) == ("podman", "r3")
        assert disconnect.time > run.seen.lifecycle[-2].time


async def test_a_start_seen_by_the_resync_and_replayed_by_the_stream_is_one_event(
    fake: FakeDocker,
) -> None:
    """The resync's start and the stream's for the same container both take StartedAt: one is emitted."""
    async with Running(fake) as run:
        fake.containers["s1"] = inspect_payload("s1", "twice", {"bridge": "10.99.2.2"})
        fake.close_streams()  # the reconnect's resync finds it first
        await until(lambda: run.seen.targets.get("s1"), "s1 from the resync")
        fake.emit("container", "start", "s1", name="twice")  # as a replay with `since` would
        fake.emit("container", "pause", "s1", name="twice")
        await until(lambda: "pause" in run.seen.actions("s1"), "the pause after it")
        assert run.seen.actions("s1") == ["start", "pause"]


async def test_the_warning_names_the_engines_error(socket_dir_path: Path) -> None:
    """docker.unreachable says what failed (the socket is missing), not that a task group failed."""
    seen = Seen()
    discovery = Discovery(
        f"unix://{socket_dir_path}/none.sock", 60, False, seen.on_container, seen.on_lifecycle
    )
    with capture_logs() as logs:
        async with anyio.create_task_group() as group:
            group.start_soon(discovery.run)
            await until(lambda: [e for e in logs if e["event"] == "docker.unreachable"], "it")
            group.cancel_scope.cancel()
    warning = next(e for e in logs if e["event"] == "docker.unreachable")
    assert "No such file or directory" in warning["error"]
    assert "TaskGroup" not in warning["error"]


@pytest.fixture
def socket_dir_path(tmp_path: Path) -> Path:
    """A directory where no engine listens."""
    return tmp_path


async def test_containers_sharing_a_network_namespace_give_one_set_of_targets(
    fake: FakeDocker,
) -> None:
    """Two members of a pod (NetworkMode container:infra) are probed once, as the infra container, on their ports."""
    fake.containers["i1"] = inspect_payload("i1", "pod-infra", {"podman": "10.88.3.2"}, ports=())
    for member, port in (("m1", 8000), ("m2", 8001)):
        fake.containers[member] = inspect_payload(
            member, f"pod-{member}", {"podman": "10.88.3.2"}, ports=(port,)
        )
        fake.containers[member]["HostConfig"]["NetworkMode"] = "container:i1"
    async with Running(fake) as run:
        await until(lambda: len(run.seen.targets.get("i1", ())) == 2, "the pod's two ports")
        assert {(t.ip, t.port, t.container_name) for t in run.seen.targets["i1"]} == {
            ("10.88.3.2", 8000, "pod-infra"),
            ("10.88.3.2", 8001, "pod-infra"),
        }
        assert run.seen.targets["m1"] == ()
        assert run.seen.targets["m2"] == ()
        fake.containers["m2"]["State"]["Running"] = False
        fake.emit("container", "die", "m2", name="pod-m2", exitCode="0")
        await until(lambda: len(run.seen.targets.get("i1", ())) == 1, "one port left")
        assert {t.port for t in run.seen.targets["i1"]} == {8000}
