"""`dockping notify` as a real process, killed mid-way and restarted: nothing twice, nothing missed."""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.events import batch, probe
from tests.services import Process, free_port, service_env, wait_for
from tests.test_notify_flow import Webhook, webhook  # noqa: F401 - the fixture is used by name

AUTH = {"Authorization": "Bearer test-token"}


def settings_file(path: Path, url: str) -> Path:
    """A settings file with one rule to the webhook and short intervals."""
    path.write_text(
        f"""
[notify]
digest_wait = "200ms"
check_interval = "500ms"
retry_backoff = "200ms"
retry_max_delay = "1s"

[[notify.rules]]
name = "ops"
urls = ["{url}"]
down_after = 3
""",
        encoding="utf-8",
    )
    return path


def failed_attempts(url: str) -> int:
    """Failed delivery attempts stored so far."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM notification_history WHERE status = 'failed'"
        ).fetchone()
        assert row is not None
        return int(row[0])


def pending(url: str) -> int:
    """Outbox rows not yet done."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM notify_outbox WHERE done_at IS NULL").fetchone()
        assert row is not None
        return int(row[0])


def down_then(ip: str, start: int = 0) -> list[dict[str, Any]]:
    """One success, then three failures of one address."""
    return [probe(start, ip=ip)] + [probe(start + s, ok=False, ip=ip) for s in (1, 2, 3)]


def test_a_killed_notifier_resends_nothing_and_misses_nothing(
    tmp_path: Path,
    database_url: str,
    webhook: Webhook,  # noqa: F811 - the fixture
) -> None:
    """Sent messages are not sent again after SIGKILL; pending and newer changes arrive once."""
    config = settings_file(tmp_path / "settings.toml", webhook.url)
    notify_port = free_port()
    env = service_env(
        tmp_path / "data",
        DOCKPING_DATABASE__URL=database_url,
        DOCKPING_INGEST__TOKEN="test-token",
        DOCKPING_NOTIFY__PORT=str(notify_port),
    )
    ingest_url = f"http://127.0.0.1:{env['DOCKPING_INGEST__PORT']}"
    args = ["--settings", str(config)]
    ingest = Process([*args, "ingest"], env, tmp_path / "ingest.log")
    notify = Process([*args, "notify"], env, tmp_path / "notify-1.log")
    restarted: Process | None = None
    try:
        for url in (ingest_url, f"http://127.0.0.1:{notify_port}"):
            wait_for(lambda u=url: httpx.get(f"{u}/healthz").status_code == 200, 30, f"{url}")

        def post(*events: dict[str, Any]) -> None:
            response = httpx.post(f"{ingest_url}/api/v1/events", headers=AUTH, json=batch(*events))
            assert response.status_code == 202, response.text

        # Delivered before the kill: two targets down.
        post(*down_then("10.9.2.1"), *down_then("10.9.2.2"))
        wait_for(lambda: len(webhook.titles()) >= 2, 30, "two down messages")
        # Failing when it is killed: a third target down, its channel answering 500.
        webhook.status = 500
        post(*down_then("10.9.2.3"))
        wait_for(lambda: failed_attempts(database_url) >= 2, 30, "failed attempts")
        os.killpg(notify.process.pid, signal.SIGKILL)
        notify.stop()
        # Made while no notifier runs: the first target recovers.
        post(probe(10, ip="10.9.2.1"))
        webhook.status = 200
        restarted = Process([*args, "notify"], env, tmp_path / "notify-2.log")
        wait_for(lambda: len(webhook.titles()) >= 4, 30, "four messages")
        wait_for(lambda: pending(database_url) == 0, 30, "an empty outbox")
        time.sleep(2)  # time for any duplicate to show up
    finally:
        if restarted is not None:
            restarted.stop()
        notify.stop()
        ingest.stop()
    counts = collections.Counter(webhook.titles())
    assert counts == {
        "DOWN: web 10.9.2.1:80/tcp on host-a": 1,
        "DOWN: web 10.9.2.2:80/tcp on host-a": 1,
        "DOWN: web 10.9.2.3:80/tcp on host-a": 1,
        "RECOVERED: web 10.9.2.1:80/tcp on host-a": 1,
    }
