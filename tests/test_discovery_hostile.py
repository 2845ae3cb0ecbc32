"""Discovery against what a container's owner controls: an event too long to read, a broken stream.

The fake engine sends the lines; tests/test_discovery_docker.py makes the same event on
the real engine with `docker run --label-file`.
"""

from __future__ import annotations

import json

import anyio
import pytest
from structlog.testing import capture_logs

from agent import docker_api
from tests.fake_docker import FakeDocker, inspect_payload, running_fake
from tests.test_agent_faults import (
    Running,
    event_requests,
    until,
)

pytestmark = pytest.mark.anyio


fake = pytest.fixture(running_fake, name="fake")


def _huge_labels() -> dict[str, str]:
    """Ten labels of 200 kB each: the event naming them is 2 MB, over the agent's limit."""
    return {f"big.{i}": chr(ord("a") + i) * 200_000 for i in range(10)}


async def test_an_event_over_the_line_limit_is_skipped_and_its_container_inspected(
    fake: FakeDocker,
) -> None:
    """An event line of 2 MB is logged and skipped, `since` moves past it, and an inspect says what it meant."""
    async with Running(fake) as run:
        labels = _huge_labels()
        fake.containers["h1"] = inspect_payload(
            "h1", "huge", {"bridge": "10.95.0.2"}, labels=labels
        )
        fake.containers["h2"] = inspect_payload("h2", "after", {"bridge": "10.95.0.3"})
        with capture_logs() as logs:
            line = fake.event_json("container", "start", "h1", name="huge", **labels)
            assert len(line) > docker_api.MAX_EVENT_BYTES
            fake.push(line)
            fake.emit("container", "start", "h2", name="after")
            await until(lambda: run.seen.targets.get("h2"), "the container after it")
            await until(lambda: run.seen.targets.get("h1"), "the huge one, from its inspect")
        overlong = [e for e in logs if e["event"] == "docker.event.overlong"]
        assert [(e["container_id"], e["action"]) for e in overlong] == [("h1", "start")]
        assert overlong[0]["bytes"] >= 2_000_000
        assert run.seen.actions("h1") == ["start"]
        assert run.seen.ips("h1") == {"10.95.0.2"}
        assert len(event_requests(fake)) == 1  # the stream was never broken by it
        # A reconnect replays from after it, not from before.
        huge_nanos = json.loads(line)["timeNano"]
        fake.close_streams()
        await until(lambda: len(event_requests(fake)) == 2, "the reconnect")
        since = event_requests(fake)[-1]["since"][0]
        seconds, _, nanos = since.partition(".")
        assert int(seconds) * 1_000_000_000 + int(nanos) > huge_nanos


async def test_an_overlong_line_of_no_known_shape_asks_for_a_resync(fake: FakeDocker) -> None:
    """A 2 MB line that names no container is skipped and a resync finds what it may have meant."""
    async with Running(fake) as run:
        fake.containers["h3"] = inspect_payload("h3", "quiet", {"bridge": "10.95.0.4"})
        fake.push(b'{"x": "' + b"y" * 2_000_000 + b'"}\n')
        await until(lambda: run.seen.targets.get("h3"), "h3 from the resync")
        assert run.discovery.resyncs >= 2
        assert len(event_requests(fake)) == 1


async def test_resyncs_go_on_while_the_stream_is_refused(fake: FakeDocker) -> None:
    """With every /events refused, the resync still runs at its interval and finds new containers."""
    async with Running(fake, resync=0.3) as run:
        fake.refuse_events = True
        fake.close_streams()
        await until(lambda: not run.discovery.docker_ok, "the stream lost")
        resyncs = run.discovery.resyncs
        fake.containers["h4"] = inspect_payload("h4", "meanwhile", {"bridge": "10.95.0.5"})
        await until(lambda: run.seen.targets.get("h4"), "h4 found with the stream down")
        assert run.discovery.resyncs > resyncs
        assert not run.discovery.docker_ok
        await anyio.sleep(0.5)
        assert len(event_requests(fake)) >= 3  # the stream is retried meanwhile
        fake.refuse_events = False
        await until(lambda: run.discovery.docker_ok, "the stream back")
