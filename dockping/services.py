"""Start each service: the database URL, the ASGI server, the agent loop, `up`."""

from __future__ import annotations

import os
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
from dockping import logs
from dockping.settings import Settings

log = logs.get("dockping")
EXIT_FAILED = 1


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


def _serve(app: object, host: str, port: int) -> None:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
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
                backend, applied = migrate(url, "auto")
                log.info("migrate.done", backend=backend, applied=applied)
            elif command == "rebuild":
                log.info("rebuild.done", **rebuild(url))
            elif command == "ingest":
                from ingest.app import create_app as ingest_app

                _serve(ingest_app(settings, url), settings.ingest.host, settings.ingest.port)
            elif command == "query":
                from query.app import create_app as query_app

                _serve(query_app(settings, url), settings.query.host, settings.query.port)
        return 0
    except (DatabaseUnavailable, SchemaError, EmbeddedError) as exc:
        log.error(f"{command}.failed", error=str(exc))
        return EXIT_FAILED


def up(settings: Settings, settings_path: Path | None) -> int:
    """The whole system: database, migrations, ingest, query and agent, stopped together."""
    stop = {"signal": 0}

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with database(settings) as url:
        backend, applied = migrate(url, "auto")
        log.info("migrate.done", backend=backend, applied=applied)
        env = dict(os.environ, DOCKPING_DATABASE__URL=url)
        base = [sys.executable, "-m", "dockping"]
        if settings_path is not None:
            base += ["--settings", str(settings_path)]
        children: dict[str, subprocess.Popen[bytes]] = {}
        for name in ("ingest", "query", "agent"):
            # A child ignores Ctrl-C from the terminal; we stop it ourselves, in order.
            children[name] = subprocess.Popen([*base, name], env=env, preexec_fn=_ignore_sigint)
        where = (settings.database.url and "database.url") or "embedded PostgreSQL"
        print(
            f"dockping is up:\n"
            f"  addresses  http://{settings.query.host}:{settings.query.port}/addresses\n"
            f"  API        http://{settings.query.host}:{settings.query.port}/api/v1/addresses\n"
            f"  ingest     http://{settings.ingest.host}:{settings.ingest.port}/api/v1/events\n"
            f"  database   {where} ({backend})\n"
            f"  data       {settings.data_path}\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        code = 0
        while not stop["signal"]:
            for name, child in children.items():
                if child.poll() is not None:
                    log.error("up.child_exited", service=name, code=child.returncode)
                    stop["signal"] = -1
                    code = EXIT_FAILED
                    break
            time.sleep(0.2)
        # The agent first, so that it can flush to ingest before ingest goes.
        _stop(children["agent"], settings.agent.shutdown_timeout + 5)
        _stop(children["ingest"], 15)
        _stop(children["query"], 15)
        log.info("up.stopped")
    return code


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(child: subprocess.Popen[bytes], timeout: float) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
