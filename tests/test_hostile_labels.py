"""A container's labels cannot cost other containers their events, nor flood the store: every
text from Docker is fitted to the contract, a refused record is split, labels are bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.discovery import lifecycle_event
from agent.shipper import Shipper
from agent.targets import Limits, container_of
from agent.untrusted import fit
from dockping.contract import ProbeEvent, decode_batch, encode
from dockping.settings import load
from tests.docker_support import LABEL, Containers
from tests.services import wait_for
from tests.test_agent_shipping import Stack, running

# Any character at all, and often the ones that hurt: NUL, lone surrogates (a JSON \\ud800
# escape decodes to one; Hypothesis makes none by itself) and 3-byte CJK, for length in bytes.
ANY_TEXT = st.text(
    st.one_of(
        st.characters(codec=None, exclude_categories=()),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\u65e5"]),
    ),
    max_size=1500,
)


def inspect_of(name: str, image: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    """An inspect payload of a running container on the bridge network."""
    return {
        "Id": "c" * 64,
        "Name": "/" + name,
        "Config": {"Image": image, "Labels": labels, "ExposedPorts": {"80/tcp": {}}},
        "State": {"Running": True},
        "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.1.2.3"}}},
        **extra,
    }


@given(name=ANY_TEXT, image=ANY_TEXT, key=ANY_TEXT, value=ANY_TEXT, network=ANY_TEXT)
def test_whatever_docker_says_the_agent_builds_only_events_ingest_accepts(
    name: str, image: str, key: str, value: str, network: str
) -> None:
    """NUL, lone surrogates and long texts in a name, image, label or network never make an
    event that the contract refuses: each is fitted where it enters the agent."""
    labels = {key: value, "com.docker.compose.project": value, "com.docker.compose.service": key}
    payload = inspect_of(name, image, labels)
    payload["NetworkSettings"]["Networks"] = {network: {"IPAddress": "10.1.2.3"}}
    container = container_of(payload)
    now = datetime.now(UTC)
    started = lifecycle_event("start", container, now, network=network, health=value)
    [target] = container.targets
    probe = ProbeEvent(
        time=now,
        container_id=target.container_id,
        container_name=target.container_name,
        network=target.network,
        ip=target.ip,
        port=target.port,
        ok=False,
        error="refused",
    )
    body = encode({"agent": "fit-agent", "events": [started, probe]})
    events = decode_batch(body).events
    assert [started, probe] == events


def test_fitting_keeps_what_fits_and_marks_what_it_changed() -> None:
    """A NUL and a lone surrogate become U+FFFD; a long text is cut at a character boundary."""
    assert fit("shop\x00evil") == "shop\ufffdevil"
    assert fit("a\ud800b") == "a\ufffdb"
    assert fit("\u65e5" * 1024) == "\u65e5" * 341  # 1,023 bytes: a 342nd would pass 1,024
    assert fit("plain-name_1.0") == "plain-name_1.0"


@pytest.mark.anyio
async def test_a_refused_record_loses_only_its_bad_event(tmp_path: Path, database_url: str) -> None:
    """Ingest refuses one event of a 10-event record: the other nine are stored, the bad one is
    kept aside alone, and every event is counted as sent or rejected."""
    stack = Stack(tmp_path, database_url)
    stack.start_ingest()
    try:
        settings = load(None, stack.env)
        shipper = Shipper(settings.agent, "shipping-agent", "test-token", tmp_path / "spool")
        now = datetime.now(UTC)
        events = [
            ProbeEvent(
                time=now - timedelta(seconds=port),
                container_id="c-split",
                ip="10.98.0.2",
                port=port,
                ok=True,
                latency_ms=1.0,
            )
            for port in range(1, 11)
        ]
        # An event built by hand, as an agent of another make might: a NUL that ingest refuses.
        bad = json.loads(encode(events[6]))
        bad["container_name"] = "evil\x00name"
        record = b"[" + b",".join([encode(e) for e in events[:6]] + [encode(bad)]) + b","
        record += b",".join(encode(e) for e in events[7:]) + b"]"
        shipper.spool.append(record)
        async with shipper.client(httpx.Timeout(10.0)) as client:
            assert await shipper.send_pending(client)
        stored = {s[2] for s in stack.stored() if s[0] == "c-split"}
        assert stored == set(range(1, 11)) - {7}
        kept = list((tmp_path / "rejected").glob("*.json"))
        assert len(kept) == 1
        assert [e["port"] for e in json.loads(kept[0].read_bytes())["events"]] == [7]
        assert (shipper.sent, shipper.rejected, shipper.spool.size()) == (9, 1, 0)
        assert (tmp_path / "rejected").stat().st_mode & 0o777 == 0o700
        assert kept[0].stat().st_mode & 0o777 == 0o600
    finally:
        stack.close()


@pytest.mark.parametrize("asked", ["2ms", "1us", "0.0000001us"])
def test_an_interval_label_under_the_floor_is_raised_to_it_and_explained(asked: str) -> None:
    """dockping.interval below agent.min_interval probes at the floor, and `limited` says why."""
    container = container_of(inspect_of("fast", "img", {"dockping.interval": asked}))
    assert {t.interval for t in container.targets} == {1.0}
    assert "agent.min_interval" in container.limited
    assert container.note == ""


def test_targets_past_the_cap_are_left_out_and_explained() -> None:
    """60 ports on 10 networks (600 targets) give the first 64; `limited` says how many."""
    networks = {f"net{n}": {"IPAddress": f"10.3.{n}.2"} for n in range(10)}
    ports = ",".join(str(8000 + p) for p in range(60))
    payload = inspect_of("wide", "img", {"dockping.ports": ports})
    payload["NetworkSettings"]["Networks"] = networks
    container = container_of(payload)
    assert len(container.targets) == 64
    assert "600 targets" in container.limited
    assert len(container_of(payload, limits=Limits(max_targets=1000)).targets) == 600


@pytest.fixture
def engine() -> Iterator[httpx.Client]:
    """The Docker Engine API, over its socket: labels the docker CLI cannot write."""
    with httpx.Client(
        transport=httpx.HTTPTransport(uds="/var/run/docker.sock"), base_url="http://docker"
    ) as client:
        yield client


def create(engine: httpx.Client, containers: Containers, labels: dict[str, str]) -> str:
    """Create and start a busybox httpd through the Engine API; return its id."""
    name = containers.name("api")
    containers.names.append(name)
    body = {
        "Image": containers.image,
        "Cmd": ["httpd", "-f", "-p", "8000"],
        "ExposedPorts": {"8000/tcp": {}},
        "Labels": {LABEL: containers.session, **labels},
    }
    made = engine.post("/containers/create", params={"name": name}, json=body)
    assert made.status_code == 201, made.text
    cid: str = made.json()["Id"]
    assert engine.post(f"/containers/{cid}/start").status_code == 204
    return cid


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """Ingest and an agent, running."""
    with running(tmp_path, database_url, DOCKPING_AGENT__RESYNC_INTERVAL="1s") as made:
        yield made


def stored_row(stack: Stack, query: str, cid: str) -> tuple[Any, ...] | None:
    """One row of a query on a container."""
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute(query, (cid,)).fetchone()


@pytest.mark.docker
def test_a_nul_in_a_label_costs_no_event_of_any_container(
    stack: Stack, containers: Containers, engine: httpx.Client, docker_engine: str
) -> None:
    """A compose project label with a NUL, set through the Engine API: the container's start
    and probes are stored (the NUL shown as U+FFFD), a neighbour's too, and nothing is refused."""
    hostile = create(engine, containers, {"com.docker.compose.project": "shop\x00evil"})
    neighbour = create(engine, containers, {})
    for cid in (hostile, neighbour):
        wait_for(lambda c=cid: {s for s in stack.stored() if s[0] == c}, 60, "its probes stored")
    project = stored_row(
        stack, "SELECT compose_project FROM containers WHERE container_id = %s", hostile
    )
    assert project == ("shop\ufffdevil",)
    assert stack.agent is not None
    assert '"ship.rejected"' not in stack.agent.output()
    assert not list((stack.tmp_path / "data" / "rejected").glob("*"))


@pytest.mark.docker
def test_a_label_asking_too_much_is_clamped_in_a_real_agent(
    stack: Stack, containers: Containers, engine: httpx.Client, docker_engine: str
) -> None:
    """dockping.interval=1us with 100 ports: 64 targets are stored, and the agent logs why."""
    ports = ",".join(str(8000 + p) for p in range(100))
    cid = create(engine, containers, {"dockping.interval": "1us", "dockping.ports": ports})
    query = "SELECT count(DISTINCT port) FROM probe_history WHERE container_id = %s"
    wait_for(lambda: (stored_row(stack, query, cid) or (0,))[0] >= 64, 60, "64 targets probed")
    assert stored_row(stack, query, cid) == (64,)
    assert stack.agent is not None
    limited = [
        json.loads(line)
        for line in stack.agent.output().splitlines()
        if '"container.limited"' in line
    ]
    assert len(limited) == 1
    assert "agent.min_interval" in limited[0]["reason"]
    assert "100 targets" in limited[0]["reason"]


def test_every_spooled_event_is_private_to_the_agent(tmp_path: Path) -> None:
    """spool/ is 0700 and its files 0600: they hold container labels, which may hold secrets."""
    from agent.spool import Spool

    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.append(b"[]")
    spool.ack(next(iter(spool.pending()))[1])
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "spool").iterdir()}
    assert set(modes.values()) == {0o600}
    assert "ack" in modes
    spool.close()
