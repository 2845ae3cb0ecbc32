"""Start each service: the database URL, the ASGI server, the agent loop, `up`."""

from __future__ import annotations

import gc
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import anyio
import uvicorn

from db.connector import DatabaseUnavailable, SchemaError
from db.embedded import EmbeddedError, EmbeddedPostgres
from db.migrate import migrate
from db.rebuild import rebuild
from dockping import logs, tokens
from dockping.settings import Settings, SettingsError

log = logs.get("dockping")
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL: database.url, or the embedded server (started if need be)."""
    if settings.database.url:
        yield settings.database.url
        return
    server = EmbeddedPostgres(settings.data_path)
    was_running = server.is_running()
    url = server.start()
    try:
        yield url
    finally:
        if not was_running:
            server.stop()


def _refuse_newer_schema(url: str) -> None:
    """Stop before serving when the schema is missing or newer than this program.

    A database that cannot be reached yet is no reason to stop: the pool reconnects.
    """
    import psycopg

    from db.migrate import check_schema

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            check_schema(conn)
    except (psycopg.OperationalError, DatabaseUnavailable):
        log.warning("database.unavailable", error="not reachable at start; retrying as needed")


def _serve(app: object, host: str, port: int, proxies: list[str], loop: str = "asyncio") -> None:
    # Each idle client holds a descriptor and uvicorn has no request-head timeout: with the
    # usual soft limit (1024) a thousand idle connections would lock everyone else out.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        # Named, not "auto": uvloop (about a tenth less CPU per batch in ingest) only where
        # it was measured; the other services keep asyncio's loop.
        loop=loop,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
        server_header=False,
        # X-Forwarded-For only from the proxies named in settings: uvicorn would otherwise
        # believe it from loopback, and a forged one would dodge (or aim) the failure limiter.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=list(proxies) or None,
        # A request head that arrives in pieces is refused past 16 KiB, not buffered on.
        h11_max_incomplete_event_size=16 * 1024,
        # No limit_concurrency: uvicorn counts idle connections in it, so a bound below the
        # descriptor limit would turn idle connections into 503s for real clients.
    )
    # What is loaded by now (modules, the app, its templates) lives as long as the process:
    # kept out of the collector's generations, a full collection scans only what requests
    # make, which shortens its pauses in the tail of response times.
    gc.freeze()
    uvicorn.Server(config).run()


def run(command: str, settings: Settings, settings_path: Path | None) -> int:
    """Run one subcommand."""
    try:
        if command == "up":
            return up(settings, settings_path)
        if command == "agent":
            from agent.main import Agent

            anyio.run(Agent(settings).run)
            return 0
        with database(settings) as url:
            if command == "migrate":
                backend, applied = migrate(url, settings.database.backend)
                log.info("migrate.done", backend=backend, applied=applied)
            elif command == "rebuild":
                log.info("rebuild.done", **rebuild(url))
            elif command == "ingest":
                from ingest.app import create_app as ingest_app

                _refuse_newer_schema(url)
                ingest = settings.ingest
                app = ingest_app(settings, url)
                _serve(app, ingest.host, ingest.port, ingest.trusted_proxies, "uvloop")
            elif command == "query":
                from query.app import create_app as query_app

                _refuse_newer_schema(url)
                query = settings.query
                _serve(query_app(settings, url), query.host, query.port, query.trusted_proxies)
            elif command == "notify":
                from notify.api import create_app as notify_app

                _refuse_newer_schema(url)
                notify = settings.notify
                _serve(notify_app(settings, url), notify.host, notify.port, notify.trusted_proxies)
        return 0
    except (DatabaseUnavailable, SchemaError, EmbeddedError) as exc:
        log.error(f"{command}.failed", error=str(exc))
        return EXIT_FAILED
    except SettingsError as exc:
        print(f"dockping: bad settings: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS


def up(settings: Settings, settings_path: Path | None) -> int:
    """The whole system: database, migrations, ingest, query, notify and agent, stopped together;
    a service that exits is restarted with backoff, and its exits and restarts are shown."""
    stop = {"signal": 0}

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with database(settings) as url:
        backend, applied = migrate(url, settings.database.backend)
        log.info("migrate.done", backend=backend, applied=applied)
        env = dict(os.environ, DOCKPING_DATABASE__URL=url)
        base = [sys.executable, "-m", "dockping"]
        if settings_path is not None:
            base += ["--settings", str(settings_path)]
        children = {name: Child(name, [*base, name], env) for name in SERVICES}
        where = (settings.database.url and "database.url") or "embedded PostgreSQL"
        silences_token = (
            "notify.token"
            if settings.notify.token
            else settings.data_path / tokens.NOTIFY_TOKEN_FILE
        )
        print(
            f"dockping is up:\n"
            f"  addresses  http://{settings.query.host}:{settings.query.port}/addresses\n"
            f"  API        http://{settings.query.host}:{settings.query.port}/api/v1/addresses\n"
            f"  ingest     http://{settings.ingest.host}:{settings.ingest.port}/api/v1/events\n"
            f"  silences   http://{settings.notify.host}:{settings.notify.port}/api/v1/silences"
            f" (token: {silences_token})\n"
            f"  database   {where} ({backend})\n"
            f"  data       {settings.data_path}\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        while not stop["signal"]:
            for child in children.values():
                child.tend()
            time.sleep(0.2)
        # The agent first, so that it can flush to ingest before ingest goes.
        children["agent"].stop(settings.agent.shutdown_timeout + 5)
        children["notify"].stop(15)
        children["ingest"].stop(15)
        children["query"].stop(15)
        log.info("up.stopped")
    return 0


SERVICES = ("ingest", "query", "notify", "agent")
RESTART_FIRST = 1.0
RESTART_MAX = 60.0
# A service that ran this long before it exited failed anew: its backoff starts again.
RESTART_RESET = 60.0


class Child:
    """One service under `dockping up`: restarted with backoff whenever it exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.restarts = 0
        self.backoff = RESTART_FIRST
        self.restart_at: float | None = None
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.started_at = time.monotonic()
        # A session of its own keeps the terminal's Ctrl-C from the child (uvicorn and the
        # agent install their own SIGINT handlers); we stop the children ourselves, in order.
        return subprocess.Popen(self.argv, env=self.env, start_new_session=True)

    def tend(self) -> None:
        """Notice an exit, and restart once its backoff has passed; say both."""
        now = time.monotonic()
        if self.restart_at is None:
            code = self.process.poll()
            if code is None:
                return
            if now - self.started_at >= RESTART_RESET:
                self.backoff = RESTART_FIRST
            self.restart_at = now + self.backoff
            log.error(
                "up.child_exited",
                service=self.name,
                code=code,
                restart_in=round(self.backoff, 1),
                restarts=self.restarts,
            )
            print(
                f"dockping up: {self.name} exited (code {code}); restarting in"
                f" {self.backoff:g}s (restarts so far: {self.restarts})",
                flush=True,
            )
            self.backoff = min(RESTART_MAX, self.backoff * 2)
        elif now >= self.restart_at:
            self.restart_at = None
            self.restarts += 1
            self.process = self._start()
            log.warning(
                "up.child_restarted",
                service=self.name,
                pid=self.process.pid,
                restarts=self.restarts,
            )

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout`; nothing is restarted after this."""
        self.restart_at = None
        _stop(self.process, timeout)


def _stop(child: subprocess.Popen[bytes], timeout: float) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
