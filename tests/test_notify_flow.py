"""The notifier end to end in one process: real ingest, real PostgreSQL, a real Apprise webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dockping.settings import Duration, NotifyRule, NotifySettings, Settings
from ingest.app import create_app as ingest_app
from notify.api import create_app as notify_app
from tests.events import at, batch, lifecycle, probe

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": "Bearer test-token"}
NOTIFY_AUTH = {"Authorization": "Bearer notify-test-token"}  # the silences API has its own


class Webhook:
    """A tiny HTTP server that Apprise's json:// posts to; it records what it took."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with hook.lock:
                    status = hook.status
                    if status == 200:
                        hook.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The Apprise URL of this webhook."""
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def titles(self) -> list[str]:
        """The titles received so far."""
        with self.lock:
            return [m["title"] for m in self.received]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook served by the test."""
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


def notify_settings(settings: Settings, url: str, **overrides: Any) -> Settings:
    """Settings with one rule to the webhook and short intervals for tests."""
    rule = NotifyRule(name="ops", urls=[url], down_after=overrides.pop("down_after", 3))
    notify = NotifySettings(
        rules=overrides.pop("rules", [rule]),
        digest_wait=Duration(0.3),
        check_interval=Duration(0.5),
        retry_backoff=Duration(0.2),
        retry_max_delay=Duration(1),
        public_url="http://dockping.example:8081",
        token=overrides.pop("token", "notify-test-token"),
        **overrides,
    )
    return msgspec.structs.replace(settings, notify=notify)


@pytest.fixture
async def ingest(settings: Settings, database_url: str) -> AsyncIterator[AsyncTestClient]:
    """The real ingest app on a fresh database."""
    async with AsyncTestClient(app=ingest_app(settings, database_url)) as client:
        yield client


async def post(ingest: AsyncTestClient, *events: dict[str, Any], agent: str = "host-a") -> None:
    """Post one batch to ingest and check it was taken."""
    response = await ingest.post("/api/v1/events", headers=AUTH, json=batch(*events, agent=agent))
    assert response.status_code == 202, response.text


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll until check() is truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await anyio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def settled(url: str) -> bool:
    """Whether the notifier has folded every stored probe and the outbox holds nothing pending."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM target_state s LEFT JOIN notify_targets n USING (target_id)"
            "        WHERE n.last_time IS DISTINCT FROM s.last_probe_at)"
            "     + (SELECT count(*) FROM notify_outbox WHERE done_at IS NULL)"
        ).fetchone()
        assert row is not None
        return row[0] == 0


async def quiet(hook: Webhook, url: str, seconds: float = 1.5) -> list[str]:
    """Wait until every probe is folded, the outbox empty and nothing more arrives; the titles."""
    await eventually(lambda: settled(url), "every probe folded and an empty outbox")
    before = -1
    while before != len(hook.titles()):
        before = len(hook.titles())
        await anyio.sleep(seconds)
    return hook.titles()


def history(url: str) -> list[tuple[Any, ...]]:
    """notification_history rows as (target_id, kind, status), oldest first."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT target_id, kind, status FROM notification_history ORDER BY time, kind"
        ).fetchall()


async def test_one_down_message_after_down_after_and_one_recovered(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """Three failures make exactly one down message with address, error and link; one success one recovered."""
    config = notify_settings(settings, webhook.url)
    async with AsyncTestClient(app=notify_app(config, database_url)):
        await post(ingest, probe(0), probe(1, ok=False, error="timeout"))
        await post(ingest, probe(2, ok=False, error="timeout"))
        assert await quiet(webhook, database_url, 1.0) == []
        await post(ingest, probe(3, ok=False, error="refused"))
        await post(ingest, probe(4, ok=False), probe(5, ok=False))
        await eventually(webhook.titles, "a down message")
        await post(ingest, probe(6))
        titles = await eventually(lambda: len(webhook.titles()) >= 2 and webhook.titles(), "2")
        titles = await quiet(webhook, database_url)
    assert titles == [
        "DOWN: web 10.9.0.2:80/tcp on host-a",
        "RECOVERED: web 10.9.0.2:80/tcp on host-a",
    ]
    down, recovered = webhook.received
    assert "last error: refused" in down["message"]
    assert at(1).replace("T", " ") in down["message"]
    assert "http://dockping.example:8081/targets/" in down["message"]
    assert down["type"] == "failure"
    assert "up again after 5s down" in recovered["message"]
    assert [(k, s) for _, k, s in history(database_url)] == [
        ("down", "sent"),
        ("recovered", "sent"),
    ]


async def test_a_flapping_target_is_damped(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """More than flap_changes changes make one flapping message instead of one per change."""
    config = notify_settings(
        settings, webhook.url, down_after=1, flap_changes=2, flap_window=Duration(600)
    )
    async with AsyncTestClient(app=notify_app(config, database_url)):
        await post(ingest, probe(0))
        for second in range(1, 13):
            await post(ingest, probe(second, ok=second % 2 == 0))
        titles = await quiet(webhook, database_url)
    assert [t.split(":")[0] for t in titles] == ["DOWN", "RECOVERED", "FLAPPING"]


async def test_fifty_targets_down_together_arrive_as_one_digest(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """A change hitting 50 targets at once is one digest message, and each target's history has it."""
    config = notify_settings(settings, webhook.url, digest_threshold=10)
    ips = [f"10.9.1.{n}" for n in range(1, 51)]
    async with AsyncTestClient(app=notify_app(config, database_url)):
        await post(ingest, *(probe(0, ip=ip) for ip in ips))
        for second in (1, 2, 3):
            await post(ingest, *(probe(second, ok=False, ip=ip) for ip in ips))
        titles = await quiet(webhook, database_url)
    assert titles == ["DOWN: 50 addresses"]
    lines = webhook.received[0]["message"].splitlines()
    assert (len(lines), lines[-1]) == (21, "... and 30 more")
    assert all(line.startswith("- web 10.9.1.") for line in lines[:20])
    rows = history(database_url)
    assert len({target for target, _, _ in rows}) == 50
    assert {(kind, status) for _, kind, status in rows} == {("down", "sent")}


async def test_a_silence_mutes_matching_messages(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """While a silence matches a container, its changes are stored as muted and not sent."""
    config = notify_settings(settings, webhook.url)
    async with AsyncTestClient(app=notify_app(config, database_url)) as api:
        response = await api.post(
            "/api/v1/silences",
            headers=NOTIFY_AUTH,
            json={"match": {"container": "we*"}, "duration": "1h", "reason": "maintenance"},
        )
        assert response.status_code == 201, response.text
        for second in range(4):
            await post(
                ingest,
                probe(second, ok=second == 0),
                probe(second, ok=second == 0, name="db", container="c2"),
            )
        titles = await quiet(webhook, database_url)
    assert titles == ["DOWN: db 10.9.0.2:80/tcp on host-a"]
    assert sorted((kind, status) for _, kind, status in history(database_url)) == [
        ("down", "muted"),
        ("down", "sent"),
    ]


async def test_a_failing_channel_is_retried_and_every_attempt_is_stored(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """A channel answering 500 gets the message again with backoff; each failure is an event."""
    webhook.status = 500
    config = notify_settings(settings, webhook.url)
    async with AsyncTestClient(app=notify_app(config, database_url)):
        await post(ingest, *(probe(s, ok=s == 0) for s in range(4)))
        await eventually(
            lambda: [s for _, _, s in history(database_url)].count("failed") >= 2,
            "two failed attempts",
        )
        webhook.status = 200
        titles = await quiet(webhook, database_url)
    assert titles == ["DOWN: web 10.9.0.2:80/tcp on host-a"]
    statuses = [s for _, _, s in history(database_url)]
    assert statuses[-1] == "sent"
    assert set(statuses[:-1]) == {"failed"}


async def test_an_agent_without_heartbeats_is_reported_silent_then_back(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """No heartbeat for 3 resync intervals makes one agent-silent message; a new one, agent-back."""
    config = notify_settings(settings, webhook.url)
    config = msgspec.structs.replace(
        config, agent=msgspec.structs.replace(config.agent, resync_interval=Duration(1))
    )
    beat = {
        "type": "heartbeat",
        "version": "t",
        "docker_ok": True,
        "targets": 0,
        "spool_bytes": 0,
        "dropped": 0,
    }
    async with AsyncTestClient(app=notify_app(config, database_url)):
        await post(ingest, {**beat, "time": at(-60)}, agent="host-b")
        await eventually(webhook.titles, "an agent-silent message")
        now = datetime.now(UTC).isoformat()
        await post(ingest, {**beat, "time": now}, agent="host-b")
        titles = await eventually(lambda: len(webhook.titles()) >= 2 and webhook.titles(), "back")
        # Once back, it falls silent again after 3 s without heartbeats: one more message.
        titles = await quiet(webhook, database_url, 1.0)
    assert titles[:2] == ["AGENT SILENT: host-b", "AGENT BACK: host-b"]
    assert all(t.startswith("AGENT SILENT") for t in titles[2:])


async def test_labels_opt_out_and_route(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """dockping.notify=false silences a container; dockping.notify=NAME sends it to rule NAME only."""
    other = Webhook()
    try:
        rules = [
            NotifyRule(name="all", urls=[webhook.url]),
            NotifyRule(name="ops", container="nothing-matches", urls=[other.url]),
        ]
        config = notify_settings(settings, webhook.url, rules=rules)
        await post(
            ingest,
            lifecycle(0, "start", container="c1"),
            lifecycle(0, "start", container="c2", name="db"),
        )
        # The store keeps no labels yet (the contract carries none); a future agent would put
        # them in container_events.detail, which the notifier reads.
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE container_events SET detail = jsonb_build_object('labels', jsonb_build_object("
                "'dockping.notify', CASE WHEN container_key = (SELECT container_key FROM containers"
                " WHERE container_id = 'c1') THEN 'false' ELSE 'ops' END))"
            )
        async with AsyncTestClient(app=notify_app(config, database_url)):
            for second in range(1, 5):
                await post(
                    ingest,
                    probe(second, ok=second == 1),
                    probe(second, ok=second == 1, name="db", container="c2"),
                )
            await quiet(other, database_url)
        assert webhook.titles() == []
        assert other.titles() == ["DOWN: db 10.9.0.2:80/tcp on host-a"]
    finally:
        other.close()


async def test_the_silences_api_checks_tokens_and_input(
    settings: Settings, database_url: str, webhook: Webhook
) -> None:
    """Silences are listed and deleted; bad input is a 4xx naming the field; no token is a 401."""
    config = notify_settings(settings, webhook.url)
    async with AsyncTestClient(app=notify_app(config, database_url, follow=False)) as api:
        good = {"match": {"project": "shop"}, "duration": "30m", "reason": "deploy"}
        assert (await api.post("/api/v1/silences", json=good)).status_code == 401
        assert (
            await api.get("/api/v1/silences", headers={"Authorization": "Bearer no"})
        ).status_code == 401
        for body, field in [
            ({**good, "duration": "soon"}, "$.duration"),
            ({**good, "duration": -5}, "$.duration"),
            ({**good, "match": {}}, "$.match"),
            ({**good, "reason": " "}, "$.reason"),
        ]:
            response = await api.post("/api/v1/silences", headers=NOTIFY_AUTH, json=body)
            assert (response.status_code, response.json().get("field")) == (400, field)
        unknown = await api.post(
            "/api/v1/silences", headers=NOTIFY_AUTH, json={**good, "match": {"colour": "red"}}
        )
        assert unknown.status_code == 400
        assert "colour" in unknown.text
        made = await api.post("/api/v1/silences", headers=NOTIFY_AUTH, json=good)
        assert made.status_code == 201
        silence = made.json()
        listed = await api.get("/api/v1/silences", headers=NOTIFY_AUTH)
        assert [s["id"] for s in listed.json()["items"]] == [silence["id"]]
        assert listed.json()["items"][0]["match"]["project"] == "shop"
        removed = await api.delete(f"/api/v1/silences/{silence['id']}", headers=NOTIFY_AUTH)
        assert removed.status_code == 204
        assert (await api.get("/api/v1/silences", headers=NOTIFY_AUTH)).json()["items"] == []
        again = await api.delete(f"/api/v1/silences/{silence['id']}", headers=NOTIFY_AUTH)
        assert again.status_code == 404
        schema = await api.get("/schema/openapi.json")
        assert "/api/v1/silences" in schema.json()["paths"]


async def test_two_notifiers_at_once_send_each_change_once(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """A second notifier on the same database waits on the lock instead of sending again."""
    config = notify_settings(settings, webhook.url)
    async with (
        AsyncTestClient(app=notify_app(config, database_url)),
        AsyncTestClient(app=notify_app(config, database_url)),
    ):
        for second in range(5):
            await post(ingest, probe(second, ok=second in (0, 4)))
        titles = await quiet(webhook, database_url)
    assert [t.split(":")[0] for t in titles] == ["DOWN", "RECOVERED"]


async def test_late_events_newer_than_the_position_are_folded_older_ones_are_history(
    settings: Settings, database_url: str, ingest: AsyncTestClient, webhook: Webhook
) -> None:
    """A spool shipped late still makes its down message; failures older than a folded success make none."""
    config = notify_settings(settings, webhook.url)
    async with AsyncTestClient(app=notify_app(config, database_url)):
        await post(ingest, probe(-120), probe(-60))
        await quiet(webhook, database_url, 0.5)
        await post(ingest, *(probe(-100 + s, ok=False) for s in range(5)))  # older than -60
        assert await quiet(webhook, database_url, 1.0) == []
        await post(ingest, *(probe(-50 + s, ok=False) for s in range(5)))  # newer, shipped late
        titles = await quiet(webhook, database_url)
    assert titles == ["DOWN: web 10.9.0.2:80/tcp on host-a"]
    assert at(-50).replace("T", " ") in webhook.received[0]["message"]
