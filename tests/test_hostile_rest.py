"""The rest of issue 18: a frozen or absent database is a prompt 503, silences have limits,
console logs escape container text, TimescaleDB not preloaded falls back, the agent follows
ingest's port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from db.embedded import BIN, EmbeddedPostgres
from db.migrate import latest_version, migrate
from dockping.settings import load
from notify.api import create_app as notify_app
from tests.services import Process, service_env, wait_for

NOTIFY_TOKEN = "notify-secret-2b9d"
NOTIFY_AUTH = {"Authorization": f"Bearer {NOTIFY_TOKEN}"}


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster of a cluster and every process it started."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{postmaster}\n" in text:
            pids.append(int(status.parent.name))
    return pids


@contextmanager
def frozen(data_dir: Path) -> Iterator[None]:
    """Every process of a cluster stopped (SIGSTOP) for the block: it accepts TCP, never answers."""
    pids = postgres_pids(data_dir)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL cluster of this test's own (it will be frozen and stopped), migrated."""
    server = EmbeddedPostgres(tmp_path / "own")
    url = server.start()
    migrate(url, "postgres")
    try:
        yield server, url
    finally:
        server.stop()


def answer(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and error of a GET that must come within 2 s (httpx raises otherwise)."""
    response = httpx.get(url, headers=headers, timeout=2.0)
    return response.status_code, response.json().get("error", "") if response.content else ""


def test_a_frozen_or_absent_database_is_a_503_within_two_seconds(
    cluster: tuple[EmbeddedPostgres, str], tmp_path: Path
) -> None:
    """With every PostgreSQL process stopped, /healthz of ingest, query and notify, query's API
    and the silences API answer 503 within 2 s; with the server gone, /healthz does too."""
    server, url = cluster
    env = service_env(
        tmp_path / "data",
        DOCKPING_DATABASE__URL=url,
        DOCKPING_INGEST__TOKEN="rest-token",
        DOCKPING_NOTIFY__TOKEN=NOTIFY_TOKEN,
    )
    base = {
        name: f"http://127.0.0.1:{env[f'DOCKPING_{name.upper()}__PORT']}"
        for name in ("ingest", "query", "notify")
    }
    processes = [Process([name], env, tmp_path / f"{name}.log") for name in base]
    try:
        for where in base.values():
            wait_for(lambda w=where: answer(f"{w}/healthz")[0] == 200, 60, f"{where} healthy")
        pages = [
            (f"{base['ingest']}/healthz", None),
            (f"{base['query']}/healthz", None),
            (f"{base['notify']}/healthz", None),
            (f"{base['query']}/api/v1/addresses", None),
            (f"{base['notify']}/api/v1/silences", NOTIFY_AUTH),
        ]
        with frozen(server.pgdata):
            assert [answer(page, headers) for page, headers in pages] == [(503, "unavailable")] * 5
        for where in base.values():
            wait_for(lambda w=where: answer(f"{w}/healthz")[0] == 200, 30, f"{where} back")
        server.stop()
        assert [answer(f"{where}/healthz") for where in base.values()] == [(503, "unavailable")] * 3
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def silences(tmp_path: Path, database_url: str) -> Iterator[TestClient[Any]]:
    """The silences API on a fresh database."""
    settings = load(
        None,
        {
            "DOCKPING_DATA_DIR": str(tmp_path / "data"),
            "DOCKPING_INGEST__TOKEN": "rest-token",
            "DOCKPING_NOTIFY__TOKEN": NOTIFY_TOKEN,
        },
    )
    with TestClient(app=notify_app(settings, database_url, follow=False)) as client:
        yield client


GOOD = {"match": {"container": "web*"}, "duration": "1h", "reason": "maintenance"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "reason": "a\x00b"}, "$.reason"),
        ({**GOOD, "match": {"container": "we\x00b"}}, "$.match.container"),
        ({**GOOD, "match": {"label": "\x00"}}, "$.match.label"),
        ({**GOOD, "reason": "x" * 1001}, "$.reason"),
        ({**GOOD, "duration": 1e-300}, "$.duration"),
        ({**GOOD, "duration": "0.5s"}, "$.duration"),
        ({**GOOD, "match": {"container": "x" * 1025}}, "$.match.container"),
    ],
)
def test_a_bad_silence_is_a_400_naming_its_field(
    silences: TestClient[Any], body: dict[str, Any], field: str
) -> None:
    """NUL, an overlong reason or glob, and a duration under a second are refused by field."""
    response = silences.post("/api/v1/silences", json=body, headers=NOTIFY_AUTH)
    assert (response.status_code, response.json().get("field")) == (400, field)


def test_a_lone_surrogate_or_a_huge_silence_is_refused_with_a_reason(
    silences: TestClient[Any],
) -> None:
    """A lone surrogate escape names its field; 9 MB is refused before it is read whole."""
    raw = b'{"match": {"container": "web"}, "duration": "1h", "reason": "a\\ud800b"}'
    response = silences.post(
        "/api/v1/silences", content=raw, headers={**NOTIFY_AUTH, "Content-Type": "application/json"}
    )
    assert (response.status_code, response.json().get("field")) == (400, "$.reason")
    huge = silences.post(
        "/api/v1/silences", json={**GOOD, "reason": "x" * 9_000_000}, headers=NOTIFY_AUTH
    )
    assert huge.status_code == 413
    assert silences.post("/api/v1/silences", json=GOOD, headers=NOTIFY_AUTH).status_code == 201


def test_console_logs_escape_what_a_container_chose(tmp_path: Path) -> None:
    """Text with ESC, a bell, a line break and a bidi override is printed escaped, on one line."""
    script = (
        "from dockping import logs\n"
        "from dockping.settings import LogSettings\n"
        "logs.configure(LogSettings(format='console'), 'test')\n"
        "logs.get('t').warning('container.limited', container='web\\x1b[2J\\u202e',"
        " reason='two\\nFAKE lines\\x07')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, cwd=tmp_path
    )
    output = done.stderr.decode()
    assert "\x1b" not in output
    assert "\u202e" not in output
    assert output.count("\n") == 1
    assert "container=web\\x1b[2J\\u202e" in output
    assert "\x07" not in output


@pytest.fixture
def fake_timescaledb(pg_admin_url: str) -> Iterator[None]:
    """An extension named timescaledb whose CREATE EXTENSION ends the session (FATAL), as
    TimescaleDB does when it is installed but not in shared_preload_libraries."""
    if os.environ.get("DOCKPING_TEST_DATABASE_URL"):
        pytest.skip("the fake extension goes in the embedded server's share dir")
    extensions = BIN.parent / "share" / "extension"
    control = extensions / "timescaledb.control"
    if control.exists():
        pytest.skip("a real TimescaleDB is installed in the embedded server")
    script = extensions / "timescaledb--0.0.1.sql"
    control.write_text("default_version = '0.0.1'\nrelocatable = false\nsuperuser = true\n")
    script.write_text("SELECT pg_terminate_backend(pg_backend_pid());\n")
    try:
        yield
    finally:
        control.unlink()
        script.unlink()


def run_migrate(url: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`dockping migrate` against a database."""
    env = {
        **os.environ,
        "DOCKPING_DATABASE__URL": url,
        "DOCKPING_DATA_DIR": str(tmp_path / "data"),
        "DOCKPING_LOG__FORMAT": "json",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "dockping", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )


def test_timescaledb_not_preloaded_falls_back_to_plain_postgresql(
    fake_timescaledb: None, empty_database_url: str, tmp_path: Path
) -> None:
    """`dockping migrate` migrates plain PostgreSQL with a warning naming shared_preload_libraries;
    with database.backend = timescaledb it stops with an error that says the same."""
    asked = run_migrate(empty_database_url, tmp_path, DOCKPING_DATABASE__BACKEND="timescaledb")
    assert asked.returncode == 1, asked.stderr
    assert "shared_preload_libraries" in asked.stderr
    done = run_migrate(empty_database_url, tmp_path)
    assert done.returncode == 0, done.stderr
    events = {json.loads(line)["event"]: json.loads(line) for line in done.stderr.splitlines()}
    assert "shared_preload_libraries" in events["migrate.timescaledb_unavailable"]["reason"]
    assert events["migrate.done"]["backend"] == "postgres"
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute("SELECT max(version), min(backend) FROM dockping_migrations").fetchone()
    assert row == (latest_version(), "postgres")


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({"DOCKPING_INGEST__PORT": "9123"}, "http://127.0.0.1:9123"),
        (
            {"DOCKPING_INGEST__HOST": "0.0.0.0", "DOCKPING_INGEST__PORT": "9124"},
            "http://127.0.0.1:9124",
        ),
        ({"DOCKPING_INGEST__HOST": "::1"}, "http://[::1]:8080"),
        (
            {"DOCKPING_INGEST__PORT": "9125", "DOCKPING_AGENT__INGEST_URL": "http://ingest:80"},
            "http://ingest:80",
        ),
    ],
)
def test_the_agent_follows_ingest_unless_told_otherwise(environ: dict[str, str], url: str) -> None:
    """With agent.ingest_url empty, the agent sends to ingest.host:ingest.port."""
    assert load(None, environ).agent.ingest_url == url
