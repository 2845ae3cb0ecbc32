"""Hostile batches against the event decoder and POST /api/v1/events: 4xx naming the field, nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from dockping.contract import Batch, DecodeError, decode_batch
from dockping.settings import Settings
from ingest.app import create_app
from tests.chaos_support import fingerprint
from tests.events import batch, lifecycle, probe

AUTH = {"Authorization": "Bearer test-token", "Content-Type": "application/json"}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# No lone surrogates: they make the JSON text malformed, with no field to name (a case below).
_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=30,
)
# Values that break one field each, with the field they break.
HOSTILE_PROBE_FIELDS: list[tuple[str, Any]] = [
    ("port", -1),
    ("port", 0),
    ("port", 65536),
    ("port", 2**70),
    ("port", "80"),
    ("ip", "999.1.1.1"),
    ("ip", "10.0.0.1; DROP TABLE targets"),
    ("ip", ""),
    ("ip", "::ffff:zz"),
    ("latency_ms", -0.5),
    ("latency_ms", 1e308),
    ("latency_ms", "NaN"),
    ("latency_ms", "Infinity"),
    ("time", "not a time"),
    ("time", "2026-11-27T20:00:00"),  # no zone
    ("time", "99999-01-01T00:00:00Z"),
    ("container_id", ""),
    ("container_id", "x" * 300),
    ("ok", "yes"),
    ("error", "exploded"),
    ("protocol", "udp"),
]


@pytest.fixture
def client(settings: Settings, database_url: str) -> Iterator[TestClient[Any]]:
    """An ingest app on a fresh database (the token is test-token)."""
    with TestClient(app=create_app(settings, database_url)) as client:
        yield client


def valid_events() -> list[dict[str, Any]]:
    """A few events that are accepted on their own."""
    return [probe(-30), probe(-20, ok=False), lifecycle(-25, "start"), probe(-10, port=443)]


@given(value=json_values)
@FUZZ
def test_the_decoder_answers_any_json_with_a_batch_or_a_named_error(value: Any) -> None:
    """Any JSON value decodes to a Batch or raises DecodeError with a JSON path."""
    body = json.dumps(value).encode()
    outcome: Batch | DecodeError
    try:
        outcome = decode_batch(body)
    except DecodeError as exc:
        outcome = exc
    if isinstance(outcome, DecodeError):
        assert outcome.detail
        assert outcome.field is not None
        assert outcome.field.startswith("$")
    else:
        assert isinstance(outcome, Batch)


@given(
    index=st.integers(min_value=0, max_value=4),
    hostile=st.sampled_from(HOSTILE_PROBE_FIELDS),
)
@FUZZ
def test_a_hostile_field_is_named_by_the_decoder(index: int, hostile: tuple[str, Any]) -> None:
    """A bad value in one event of a batch is rejected naming that event's field."""
    field, value = hostile
    events = valid_events()
    bad = probe(-5)
    bad[field] = value
    events.insert(index, bad)
    with pytest.raises(DecodeError) as caught:
        decode_batch(json.dumps(batch(*events)).encode())
    assert f"$.events[{index}].{field}" == caught.value.field


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        (
            "deep nesting",
            b'{"agent":"a","events":' + b"[" * 5000 + b"]" * 5000 + b"}",
            "$.events[0]",
        ),
        (
            "deep labels",
            b'{"agent":"a","events":[{"type":"container","time":"2026-11-27T20:00:00Z",'
            b'"container_id":"c","action":"die","labels":{"k":'
            + b'{"a":' * 2000
            + b"1"
            + b"}" * 2000
            + b"}}]}",
            "$.events[0].labels",
        ),
        ("huge number", b'{"agent":"a","events":[' + b"9" * 5000 + b"]}", "$.events[0]"),
        ("NaN literal", b'{"agent":"a","events":[{"latency_ms":NaN}]}', None),
        (
            "Infinity as 1e999",
            json.dumps(batch(probe(-1))).replace("1.5", "1e999").encode(),
            "$.events[0].latency_ms",
        ),
        ("not JSON", b"\x00\x01\x02", None),
        ("a lone surrogate", b'{"agent":"a\\ud800","events":[]}', None),
        ("a list", b"[]", "$"),
        (
            "unknown type",
            json.dumps(batch({"type": "exploit", "time": "2026-11-27T20:00:00Z"})).encode(),
            "$.events[0].type",
        ),
        ("no agent", b'{"events":[]}', "$.agent"),
    ],
)
def test_malformed_bodies_are_decode_errors(name: str, body: bytes, field: str | None) -> None:
    """Deep nesting, huge numbers, NaN and non-JSON are DecodeErrors naming where, when there is a where."""
    with pytest.raises(DecodeError) as caught:
        decode_batch(body)
    if field is None:
        assert caught.value.field is None
        assert "malformed" in caught.value.detail
    else:
        assert caught.value.field is not None
        assert caught.value.field.startswith(field), (name, caught.value.field)


def test_invalid_utf8_is_a_decode_error() -> None:
    """Invalid UTF-8 inside a JSON string is a DecodeError."""
    body = json.dumps(batch(probe(-1, name="NAME"))).encode().replace(b"NAME", b"\xc3\x28\xff")
    with pytest.raises(DecodeError):
        decode_batch(body)


def test_invalid_utf8_gets_a_400_and_stores_nothing(
    client: TestClient[Any], database_url: str
) -> None:
    """A batch with invalid UTF-8 in a string gets a 400 and none of its events is stored."""
    before = fingerprint(database_url)
    body = json.dumps(batch(*valid_events(), probe(-1, name="NAME"))).encode()
    response = post_raw(client, body.replace(b"NAME", b"\xc3\x28\xff"))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid"
    assert before == fingerprint(database_url)


def post_raw(client: TestClient[Any], body: bytes) -> Any:
    """POST a raw body to the events endpoint."""
    return client.post("/api/v1/events", content=body, headers=AUTH)


@given(
    index=st.integers(min_value=0, max_value=4),
    hostile=st.sampled_from(
        [
            *HOSTILE_PROBE_FIELDS,
            ("time", "0001-01-01T00:00:00Z"),
            ("time", "9999-12-31T23:59:59Z"),
            ("time", "1970-01-01T00:00:00+14:00"),
        ]
    ),
)
@FUZZ
def test_a_batch_with_one_hostile_event_is_refused_whole(
    client: TestClient[Any], database_url: str, index: int, hostile: tuple[str, Any]
) -> None:
    """A batch with one bad event gets a 4xx naming its field, and none of its events is stored."""
    before = fingerprint(database_url)
    field, value = hostile
    events = valid_events()
    bad = probe(-5)
    bad[field] = value
    events.insert(index, bad)
    response = post_raw(client, json.dumps(batch(*events)).encode())
    assert response.status_code in (400, 413, 422), response.text
    assert f"$.events[{index}].{field}" == response.json()["field"]
    assert before == fingerprint(database_url)


@given(value=json_values)
@FUZZ
def test_random_json_never_gets_a_server_error(
    client: TestClient[Any], database_url: str, value: Any
) -> None:
    """Random JSON gets a 4xx naming what is wrong (or a 202), never a 5xx."""
    response = post_raw(client, json.dumps(value).encode())
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert {"error", "detail"} <= set(response.json())


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"agent":"a","events":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400),
        (b'{"agent":"a","events":[{"type":"probe","latency_ms":NaN}]}', 400),
        (b'{"agent":"a","events":[{"type":"probe","latency_ms":-Infinity}]}', 400),
        (b'{"agent":"a","events":[' + b"1" * 100_000 + b"]}", 400),
        (b"", 400),
    ],
)
def test_malformed_bodies_get_a_400_and_store_nothing(
    client: TestClient[Any], database_url: str, body: bytes, status: int
) -> None:
    """Deep nesting, NaN, Infinity, huge numbers and empty bodies get a 400 and store nothing."""
    before = fingerprint(database_url)
    response = post_raw(client, body)
    assert status == response.status_code, response.text
    assert response.json()["error"] == "invalid"
    assert before == fingerprint(database_url)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        pytest.param(
            lifecycle(-5, "die", exit_code=2**40),
            "$.events[4].exit_code",
        ),
        pytest.param(
            {"type": "heartbeat", "time": probe(-5)["time"], "targets": 2**40},
            "$.events[4].targets",
        ),
        pytest.param(
            probe(-5, ip="10.0.0.1\u0000"),
            "$.events[4].ip",
        ),
    ],
)
def test_values_beyond_the_store_are_refused_with_a_4xx(
    client: TestClient[Any], database_url: str, event: dict[str, Any], field: str
) -> None:
    """Values the contract's types allow but the store cannot hold get a 4xx naming the field."""
    before = fingerprint(database_url)
    response = post_raw(client, json.dumps(batch(*valid_events(), event)).encode())
    assert 400 <= response.status_code < 500, response.text
    assert field == response.json()["field"]
    assert before == fingerprint(database_url)


@pytest.mark.parametrize("key", ["k\u0000", "k" * 2000])
def test_a_bad_label_key_is_named(key: str) -> None:
    """A label key that breaks the contract is refused naming the event's labels."""
    body = json.dumps(batch(probe(-2), lifecycle(-1, "start", labels={key: "v"}))).encode()
    with pytest.raises(DecodeError) as caught:
        decode_batch(body)
    assert (caught.value.field or "").startswith("$.events[1].labels")


HEARTBEAT = {"type": "heartbeat", "time": probe(-5)["time"]}


@pytest.mark.parametrize(
    ("agent", "event", "where"),
    [
        ("host-a", probe(-5, name="a\u0000b"), "$.events[4]"),
        pytest.param(
            "host-a",
            lifecycle(-5, "start", name="n\u0000", image="i\u0000"),
            "$.events[4]",
        ),
        pytest.param(
            "host-a",
            lifecycle(-5, "start", labels={"k\u0000": "v\u0000"}),
            "$.events[4]",
        ),
        pytest.param(
            "agent\u0000name",
            HEARTBEAT,
            "$.agent",
        ),
        pytest.param(
            "host-a",
            {**HEARTBEAT, "version": "\u0000"},
            "$.events[4]",
        ),
    ],
)
def test_nul_characters_never_get_a_server_error(
    client: TestClient[Any], database_url: str, agent: str, event: dict[str, Any], where: str
) -> None:
    """A NUL character in a string is stored or refused with a 4xx naming it, never a 5xx."""
    before = fingerprint(database_url)
    body = {**batch(*valid_events(), event), "agent": agent}
    response = client.post("/api/v1/events", json=body, headers=AUTH)
    assert response.status_code in (202, 400, 422), response.text
    if response.status_code != 202:
        assert response.json()["field"].startswith(where)
        assert before == fingerprint(database_url)
