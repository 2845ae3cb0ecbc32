"""The event contract: what ingest accepts, and the field it names when it refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockping.contract import (
    LATENCY_MS_MAX,
    ContainerEvent,
    DecodeError,
    HeartbeatEvent,
    ProbeEvent,
    decode_batch,
    encode,
)


def probe(**changes: Any) -> dict[str, Any]:
    """A valid probe event as JSON data, with some fields changed."""
    event: dict[str, Any] = {
        "type": "probe",
        "time": "2026-11-27T20:00:00.123456Z",
        "container_id": "4f0c",
        "container_name": "web",
        "network": "bridge",
        "ip": "172.17.0.2",
        "port": 80,
        "protocol": "tcp",
        "ok": True,
        "latency_ms": 0.41,
        "error": None,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def body(*events: dict[str, Any], agent: str = "host-a") -> bytes:
    """A batch as bytes."""
    return json.dumps({"agent": agent, "events": list(events)}).encode()


def test_the_example_from_the_contract_decodes() -> None:
    """Both event types of the documented example are accepted as they are written."""
    batch = decode_batch(
        body(
            probe(),
            {
                "type": "container",
                "time": "2026-11-27T20:00:01Z",
                "container_id": "4f0c",
                "action": "start",
                "name": "web",
                "image": "nginx:alpine",
            },
        )
    )
    assert batch.agent == "host-a"
    first, second = batch.events
    assert isinstance(first, ProbeEvent)
    assert first.time == datetime(2026, 11, 27, 20, 0, 0, 123456, tzinfo=UTC)
    assert isinstance(second, ContainerEvent)
    assert second.action == "start"


def test_extra_fields_are_ignored() -> None:
    """Fields may be added to the contract later; today's ingest ignores them."""
    batch = decode_batch(body(probe(future_field={"x": 1})))
    assert len(batch.events) == 1


def test_a_failed_probe_has_an_error_and_no_latency() -> None:
    """ok: false with latency null and an error kind is valid."""
    batch = decode_batch(body(probe(ok=False, latency_ms=None, error="refused")))
    event = batch.events[0]
    assert isinstance(event, ProbeEvent)
    assert event.error == "refused"


def test_icmp_probes_have_no_port() -> None:
    """port is null for icmp."""
    event = decode_batch(body(probe(protocol="icmp", port=None))).events[0]
    assert isinstance(event, ProbeEvent)
    assert event.port is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ip": "172.17.0.300"}, "$.events[0].ip"),
        ({"ip": "not-an-ip"}, "$.events[0].ip"),
        ({"port": 0}, "$.events[0].port"),
        ({"port": -1}, "$.events[0].port"),
        ({"port": 65536}, "$.events[0].port"),
        ({"port": "80"}, "$.events[0].port"),
        ({"port": None}, "$.events[0].port"),
        ({"latency_ms": -0.5}, "$.events[0].latency_ms"),
        ({"latency_ms": 1e300}, "$.events[0].latency_ms"),
        ({"latency_ms": None}, "$.events[0].latency_ms"),
        ({"ok": False, "latency_ms": None, "error": None}, "$.events[0].error"),
        ({"ok": False, "latency_ms": None, "error": "gremlins"}, "$.events[0].error"),
        ({"ok": False, "latency_ms": 3.0, "error": "refused"}, "$.events[0].latency_ms"),
        ({"time": "2026-11-27T20:00:00"}, "$.events[0].time"),
        ({"time": "yesterday"}, "$.events[0].time"),
        ({"container_id": ...}, "$.events[0].container_id"),
        ({"container_id": ""}, "$.events[0].container_id"),
        ({"type": "gossip"}, "$.events[0].type"),
        ({"protocol": "udp"}, "$.events[0].protocol"),
        ({"protocol": "icmp", "port": 7}, "$.events[0].port"),
    ],
)
def test_bad_events_name_the_first_bad_field(changes: dict[str, Any], field: str) -> None:
    """Every kind of bad event is refused with a path to the field."""
    with pytest.raises(DecodeError) as caught:
        decode_batch(body(probe(**changes)))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{", None),
        (b"[]", "$"),
        (b'{"events": []}', "$.agent"),
        (b'{"agent": "", "events": []}', "$.agent"),
        (b'{"agent": "a"}', "$.events"),
        (b'{"agent": "a", "events": {}}', "$.events"),
        (b'{"agent": "a", "events": [1]}', "$.events[0]"),
    ],
)
def test_bad_batches_name_the_field(raw: bytes, field: str | None) -> None:
    """Malformed JSON and wrong shapes are refused; the path names where."""
    with pytest.raises(DecodeError) as caught:
        decode_batch(raw)
    assert caught.value.field == field


@given(
    st.lists(
        st.builds(
            ProbeEvent,
            time=st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
            container_id=st.text(
                st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1,
                max_size=64,
            ),
            ip=st.ip_addresses().map(str),
            port=st.integers(1, 65535),
            ok=st.just(True),
            latency_ms=st.floats(0, LATENCY_MS_MAX, allow_nan=False, allow_infinity=False),
            container_name=st.text(
                st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=50,
            ),
        ),
        max_size=20,
    )
)
def test_encoded_probes_decode_to_themselves(events: list[ProbeEvent]) -> None:
    """What an agent encodes, ingest decodes unchanged."""
    raw = encode({"agent": "a", "events": events})
    assert decode_batch(raw).events == events


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_random_json_is_refused_with_a_reason_or_accepted(value: object) -> None:
    """Arbitrary JSON never crashes the decoder: it is a batch or a DecodeError."""
    try:
        raw = json.dumps(value).encode()
    except ValueError:
        return
    try:
        decode_batch(raw)
    except DecodeError as exc:
        reason = exc.detail
    else:
        reason = "accepted"
    assert reason


def test_infinite_latency_is_refused() -> None:
    """A number too large for a float (1e400) is refused by name, not read as infinity."""
    raw = body(probe()).replace(b'"latency_ms": 0.41', b'"latency_ms": 1e400')
    with pytest.raises(DecodeError) as caught:
        decode_batch(raw)
    assert caught.value.field == "$.events[0].latency_ms"


def test_heartbeats_default_their_counters() -> None:
    """A minimal heartbeat is valid."""
    event = decode_batch(body({"type": "heartbeat", "time": "2026-11-27T20:00:00Z"})).events[0]
    assert isinstance(event, HeartbeatEvent)
    assert event.dropped == 0
