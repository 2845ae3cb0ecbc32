"""Discovery against a fake engine that misbehaves: it survives every fault and resyncs."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from agent.discovery import Discovery
from agent.targets import Container, Target
from dockping.contract import ContainerEvent
from tests.fake_docker import FakeDocker, inspect_payload

pytestmark = pytest.mark.anyio


class Seen:
    """What discovery told the agent."""

    def __init__(self) -> None:
        self.targets: dict[str, tuple[Target, ...]] = {}
        self.lifecycle: list[ContainerEvent] = []

    def on_container(self, container_id: str, container: Container | None) -> None:
        """Record a container's targets, or its going."""
        if container is None:
            self.targets.pop(container_id, None)
        else:
            self.targets[container_id] = container.targets

    def on_lifecycle(self, event: ContainerEvent) -> None:
        """Record a container event."""
        self.lifecycle.append(event)

    def ips(self, container_id: str) -> set[str]:
        """The IPs probed for a container."""
        return {t.ip for t in self.targets.get(container_id, ())}

    def actions(self, container_id: str) -> list[str]:
        """The container events emitted for a container, in order."""
        return [e.action for e in self.lifecycle if e.container_id == container_id]


async def until(check: Callable[[], object], what: str, timeout: float = 15) -> None:
    """Wait until check() is truthy."""
    deadline = anyio.current_time() + timeout
    while not check():
        if anyio.current_time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for a unix socket (paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="dpf-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def fake(socket_dir: Path) -> AsyncIterator[FakeDocker]:
    """A running fake engine."""
    async with FakeDocker(socket_dir / "docker.sock") as engine:
        yield engine


def event_requests(fake: FakeDocker) -> list[dict[str, list[str]]]:
    """The query of every /events request the fake answered."""
    return [query for path, query in fake.requests if path.endswith("/events")]


class Running:
    """Discovery running in a task group against the fake engine."""

    def __init__(
        self,
        fake: FakeDocker,
        resync: float = 60,
        call_timeout: float = 5,
        inspect_concurrency: int = 16,
    ) -> None:
        self.seen = Seen()
        self.discovery = Discovery(
            fake.url,
            resync,
            False,
            self.seen.on_container,
            self.seen.on_lifecycle,
            call_timeout=call_timeout,
            inspect_concurrency=inspect_concurrency,
        )

    async def __aenter__(self) -> Running:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self.discovery.run)
        await until(lambda: self.discovery.docker_ok, "discovery connected")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)


async def test_events_are_applied_as_they_arrive(fake: FakeDocker) -> None:
    """A start event adds the container's targets at once; a die event removes them with its exit code."""
    async with Running(fake) as run:
        fake.containers["c1"] = inspect_payload(
            "c1", "web", {"bridge": "10.99.0.2"}, ports=(80, 443)
        )
        fake.emit("container", "start", "c1", name="web", image="fake:1")
        await until(lambda: run.seen.targets.get("c1"), "c1's targets")
        assert {(t.ip, t.port) for t in run.seen.targets["c1"]} == {
            ("10.99.0.2", 80),
            ("10.99.0.2", 443),
        }
        fake.containers["c1"]["State"]["Running"] = False
        fake.emit("container", "die", "c1", name="web", exitCode="3")
        await until(lambda: "c1" not in run.seen.targets, "c1 gone")
        die = [e for e in run.seen.lifecycle if e.action == "die"]
        assert [(e.container_id, e.exit_code, e.name) for e in die] == [("c1", 3, "web")]
        assert run.seen.actions("c1") == ["start", "die"]
        assert run.discovery.resyncs == 1


async def test_a_stream_cut_mid_message_reconnects_replays_and_resyncs(fake: FakeDocker) -> None:
    """Half an event then a dropped connection: the half is never applied, the resync finds the container."""
    async with Running(fake) as run:
        fake.emit("container", "create", "c0", name="early")
        await until(lambda: run.seen.actions("c0"), "the first event")
        fake.containers["c2"] = inspect_payload("c2", "api", {"bridge": "10.99.0.3"})
        fake.cut_mid_message(fake.event_json("container", "start", "c2", name="api"))
        await until(lambda: run.seen.targets.get("c2"), "c2 found by the resync")
        assert run.discovery.resyncs >= 2
        requests = event_requests(fake)
        assert len(requests) >= 2
        assert "since" not in requests[0]
        assert "since" in requests[-1]  # the reconnect replays from the last event seen
        # The cut message was not applied: c2's start came from the resync, at its StartedAt.
        starts = [e for e in run.seen.lifecycle if e.container_id == "c2"]
        assert [e.time.isoformat() for e in starts] == ["2026-11-27T20:00:00.123456+00:00"]
        await until(lambda: run.discovery.docker_ok, "connected again")


async def test_an_event_replayed_after_a_reconnect_is_applied_once(fake: FakeDocker) -> None:
    """The engine sends the events of the newest one's nanosecond again after a reconnect: the
    die already applied is not emitted twice, while another event of that nanosecond is."""
    async with Running(fake) as run:
        fake.containers["c1"] = inspect_payload("c1", "web", {"bridge": "10.99.0.2"}, ports=(80,))
        fake.emit("container", "start", "c1", name="web", image="fake:1")
        await until(lambda: run.seen.targets.get("c1"), "c1's targets")
        fake.containers["c1"]["State"]["Running"] = False
        die = fake.event_json("container", "die", "c1", name="web", exitCode="3")
        fake.push(die)
        await until(lambda: "c1" not in run.seen.targets, "c1 gone")
        fake.close_streams()
        await until(lambda: len(event_requests(fake)) >= 2, "the reconnect")
        await until(lambda: run.discovery.docker_ok, "connected again")
        fake.push(die)  # the replay
        fake.containers["c2"] = inspect_payload("c2", "api", {"bridge": "10.99.0.3"}, ports=(80,))
        fake.push(die.replace(b'"c1"', b'"c2"').replace(b'"die"', b'"start"'))  # same nanosecond
        await until(lambda: run.seen.targets.get("c2"), "c2, of the same nanosecond")
        assert run.seen.actions("c1") == ["start", "die"]
        nanos = json.loads(die)["timeNano"]
        assert event_requests(fake)[-1]["since"] == [f"{nanos // 10**9}.{nanos % 10**9:09d}"]


async def test_garbage_on_the_stream_is_survived(fake: FakeDocker) -> None:
    """Events that are not objects are skipped; a line that is not JSON ends the stream, and the
    agent reconnects, resyncs and applies what came after."""
    async with Running(fake) as run:
        with capture_logs() as logs:
            fake.push(b"[1, 2, 3]\n")
            fake.emit("container", "start", "nope", name="unknown")  # inspect says 404
            fake.emit("container", "start", 123, name="wrong type")  # type: ignore[arg-type]
            await until(
                lambda: [e for e in logs if e["event"] == "docker.event.garbage"],
                "the non-object event skipped",
            )
            assert len(event_requests(fake)) == 1  # skipped on the same stream
            fake.push(b"\x00\xff{not json\n")
            fake.containers["c3"] = inspect_payload("c3", "db", {"bridge": "10.99.0.4"})
            fake.emit("container", "start", "c3", name="db")
            await until(lambda: run.seen.targets.get("c3"), "c3 after the garbage")
        assert len(event_requests(fake)) >= 2  # the garbled line cost one reconnect
        await until(lambda: run.discovery.docker_ok, "connected again")


@pytest.mark.parametrize("fault", ["slow", "garbage"])
async def test_slow_or_garbage_answers_mark_docker_unreachable_until_it_recovers(
    fake: FakeDocker, fault: str
) -> None:
    """A list slower than the call timeout, or not JSON, is an outage: logged once, then healed."""
    fake.containers["c4"] = inspect_payload("c4", "cache", {"bridge": "10.99.0.5"})
    async with Running(fake, call_timeout=0.3) as run:
        await until(lambda: run.seen.targets.get("c4"), "c4")
        with capture_logs() as logs:
            if fault == "slow":
                fake.delay = 1.0
            else:
                fake.garbage = True
            fake.close_streams()
            await until(lambda: not run.discovery.docker_ok, "docker unreachable")
            await anyio.sleep(1.0)  # several reconnects fail meanwhile
            fake.containers["c5"] = inspect_payload("c5", "queue", {"bridge": "10.99.0.6"})
            fake.delay = 0.0
            fake.garbage = False
            await until(lambda: run.discovery.docker_ok, "docker reachable again")
            await until(lambda: run.seen.targets.get("c5"), "c5 found by the resync")
        names = [e["event"] for e in logs]
        assert names.count("docker.unreachable") == 1
        assert names.count("docker.connected") == 1
        # The stream came back at once; the listing was tried again and again, with backoff.
        listings = [path for path, _ in fake.requests if path.endswith("/containers/json")]
        assert len(listings) >= 4
        # Targets known before the outage were kept (and probed) throughout.
        assert run.seen.targets.get("c4")


async def test_the_resync_applies_and_logs_the_diff(fake: FakeDocker) -> None:
    """Containers that came and went without an event are added and removed by the resync."""
    fake.containers["c6"] = inspect_payload("c6", "old", {"bridge": "10.99.0.7"})
    async with Running(fake, resync=0.3) as run:
        await until(lambda: run.seen.targets.get("c6"), "c6")
        with capture_logs() as logs:
            del fake.containers["c6"]
            fake.containers["c7"] = inspect_payload("c7", "new", {"bridge": "10.99.0.8"})
            await until(
                lambda: "c6" not in run.seen.targets and run.seen.targets.get("c7"), "the diff"
            )
        resyncs = [e for e in logs if e["event"] == "docker.resync" and e["log_level"] == "info"]
        assert sum(e["added"] for e in resyncs) == 1
        assert sum(e["removed"] for e in resyncs) == 1
        assert run.seen.actions("c6") == ["start", "destroy"]  # gone, as its inspect says


async def test_network_connect_and_disconnect_change_the_targets(fake: FakeDocker) -> None:
    """A second network's IP is probed after connect and dropped after disconnect."""
    fake.containers["c8"] = inspect_payload("c8", "app", {"bridge": "10.99.0.9"})
    async with Running(fake) as run:
        await until(lambda: run.seen.targets.get("c8"), "c8")
        networks = fake.containers["c8"]["NetworkSettings"]["Networks"]
        networks["backend"] = {"IPAddress": "10.98.0.9", "GlobalIPv6Address": "fd00:98::9"}
        fake.emit("network", "connect", "net1", container="c8", name="backend", type="bridge")
        await until(lambda: len(run.seen.ips("c8")) == 3, "three IPs")
        assert run.seen.ips("c8") == {"10.99.0.9", "10.98.0.9", "fd00:98::9"}
        del networks["backend"]
        fake.emit("network", "disconnect", "net1", container="c8", name="backend", type="bridge")
        await until(lambda: run.seen.ips("c8") == {"10.99.0.9"}, "one IP")
        connects = [e for e in run.seen.lifecycle if e.action.startswith("network_")]
        assert [(e.action, e.network, e.name) for e in connects] == [
            ("network_connect", "backend", "app"),
            ("network_disconnect", "backend", "app"),
        ]


async def test_an_engine_absent_at_start_is_waited_for(socket_dir: Path) -> None:
    """With no engine listening, discovery backs off and connects once the engine appears."""
    path = socket_dir / "late.sock"
    seen = Seen()
    discovery = Discovery(f"unix://{path}", 60, False, seen.on_container, seen.on_lifecycle)
    with capture_logs() as logs:
        async with anyio.create_task_group() as group:
            group.start_soon(discovery.run)
            await anyio.sleep(1.0)
            assert not discovery.docker_ok
            async with FakeDocker(path) as engine:
                engine.containers["c9"] = inspect_payload("c9", "late", {"bridge": "10.99.0.10"})
                await until(lambda: seen.targets.get("c9"), "c9", timeout=20)
                await until(lambda: discovery.docker_ok, "the stream open too")
                group.cancel_scope.cancel()
    names = [e["event"] for e in logs]
    assert names.count("docker.unreachable") == 1
    assert names.count("docker.connected") == 1
    assert names.index("docker.unreachable") < names.index("docker.connected")


async def test_container_events_carry_health_compose_and_the_no_probe_reason(
    fake: FakeDocker,
) -> None:
    """A health event has its status; compose labels ride along; a container without a probe says why."""
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": "db"}
    fake.containers["c10"] = inspect_payload(
        "c10", "shop-db-1", {"bridge": "10.99.0.11"}, ports=(), labels=labels
    )
    async with Running(fake) as run:
        await until(lambda: run.seen.actions("c10"), "c10's start")
        fake.emit("container", "health_status: unhealthy", "c10", name="shop-db-1", **labels)
        await until(lambda: "health_status" in run.seen.actions("c10"), "the health event")
    start, health = [e for e in run.seen.lifecycle if e.container_id == "c10"]
    assert (start.action, start.compose_project, start.compose_service) == ("start", "shop", "db")
    assert start.note is not None
    assert "ICMP" in start.note
    assert run.seen.targets.get("c10") == ()
    assert (health.health, health.compose_project, health.name) == (
        "unhealthy",
        "shop",
        "shop-db-1",
    )


async def test_an_answer_of_an_unforeseen_shape_is_survived(fake: FakeDocker) -> None:
    """A listing the agent cannot read is logged and retried, never the end of discovery."""
    async with Running(fake) as run:
        with capture_logs() as logs:
            odd = inspect_payload("c11", "odd", {"bridge": "10.99.0.12"})
            odd["NetworkSettings"] = ["not", "an", "object"]
            fake.containers["c11"] = odd
            fake.close_streams()
            await until(
                lambda: "docker.session.failed" in [e["event"] for e in logs], "the failure seen"
            )
            fake.containers["c11"] = inspect_payload("c11", "odd", {"bridge": "10.99.0.12"})
            await until(lambda: run.seen.targets.get("c11"), "c11 once readable")
        assert [e["event"] for e in logs].count("docker.unreachable") == 1
        assert run.discovery.docker_ok


async def test_docker_health_comes_from_inspects_and_events_once_each(fake: FakeDocker) -> None:
    """A health found by an inspect is sent at Docker's last check; an event's is sent once, not again by the next resync; one missed is found by a resync."""
    from datetime import UTC, datetime

    fake.containers["c1"] = inspect_payload("c1", "web", {"bridge": "10.99.0.2"})
    fake.containers["c1"]["State"]["Health"] = {
        "Status": "unhealthy",
        "Log": [{"End": "2026-11-27T20:00:05.500000001Z", "ExitCode": 1}],
    }
    async with Running(fake, resync=0.2) as run:
        await until(lambda: "health_status" in run.seen.actions("c1"), "the inspected health")
        [found] = [e for e in run.seen.lifecycle if e.action == "health_status"]
        assert (found.health, found.time) == (
            "unhealthy",
            datetime(2026, 11, 27, 20, 0, 5, 500000, tzinfo=UTC),
        )
        fake.containers["c1"]["State"]["Health"]["Status"] = "healthy"
        fake.emit("container", "health_status: healthy", "c1", name="web")
        await until(lambda: run.seen.actions("c1").count("health_status") == 2, "the event")
        resyncs = run.discovery.resyncs
        await until(lambda: run.discovery.resyncs >= resyncs + 3, "three more resyncs")
        healths = [e.health for e in run.seen.lifecycle if e.action == "health_status"]
        assert healths == ["unhealthy", "healthy"]
        # An event missed: the listing's Status changes, and a resync's inspect finds it.
        fake.containers["c1"]["State"]["Health"]["Status"] = "unhealthy"
        await until(lambda: run.seen.actions("c1").count("health_status") == 3, "the resync")
        assert run.seen.lifecycle[-1].health == "unhealthy"
