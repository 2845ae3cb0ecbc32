"""Helpers for the chaos and hostile-input suites: live services, store fingerprints, RSS."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from db import embedded as db_embedded
from db.embedded import EmbeddedPostgres
from db.migrate import migrate
from db.rebuild import rebuild
from tests.services import Process, free_port, service_env, wait_for

TOKEN = "hostile-test-token-7f3a9c1e5b"  # a known token, so that logs can be grepped for it
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every table a request could touch; a fingerprint of them shows whether anything changed.
TABLES = (
    "agents",
    "containers",
    "targets",
    "probe_events",
    "container_events",
    "heartbeats",
    "target_state",
    "container_state",
    "agent_state",
)


@dataclass
class Service:
    """A dockping service running as a process, and where it answers."""

    process: Process
    url: str

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.process.pid


def start_service(
    command: str, database_url: str, data_dir: Path, log: Path, **overrides: str
) -> Service:
    """Start `dockping ingest` or `dockping query` on a free port; wait for /healthz."""
    env = service_env(
        data_dir,
        DOCKPING_DATABASE__URL=database_url,
        DOCKPING_INGEST__TOKEN=TOKEN,
        **overrides,
    )
    port = env["DOCKPING_INGEST__PORT" if command == "ingest" else "DOCKPING_QUERY__PORT"]
    url = f"http://127.0.0.1:{port}"
    process = Process([command], env, log)
    try:
        wait_for(
            lambda: (
                process.process.poll() is None
                and httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            ),
            60,
            f"{command} to answer /healthz ({log})",
        )
    except AssertionError:
        process.stop()
        raise AssertionError(process.output()[-3000:]) from None
    return Service(process, url)


@contextmanager
def running(
    command: str, database_url: str, data_dir: Path, log: Path, **overrides: str
) -> Iterator[Service]:
    """A service for the length of a with block."""
    service = start_service(command, database_url, data_dir, log, **overrides)
    try:
        yield service
    finally:
        service.process.stop()


def fingerprint(database_url: str) -> dict[str, tuple[int, str]]:
    """Row count and a hash of the rows of every dockping table."""
    result: dict[str, tuple[int, str]] = {}
    with psycopg.connect(database_url) as conn:
        for table in TABLES:
            rows = conn.execute(f"SELECT t::text FROM {table} t ORDER BY 1").fetchall()
            digest = hashlib.sha256("\n".join(row[0] for row in rows).encode()).hexdigest()
            result[table] = (len(rows), digest)
    return result


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def log_lines(*paths: Path) -> list[str]:
    """Every line of the given log files."""
    lines: list[str] = []
    for path in paths:
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()
    return lines


# ---------------------------------------------------------------------------------------------
# The chaos rig: real PostgreSQL, ingest replicas behind a proxy, an agent, busybox targets.
# ---------------------------------------------------------------------------------------------


class RoundRobinProxy:
    """A TCP proxy on 127.0.0.1: each new connection goes to the next backend that accepts it.

    The agent takes one ingest URL; this stands in for the load balancer that would sit in
    front of two replicas, so that killing one moves the agent's next connection to the other.
    """

    def __init__(self, backends: list[int]) -> None:
        self.backends = list(backends)
        self._next = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _pick(self) -> socket.socket | None:
        for _ in range(len(self.backends)):
            port = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._pick()
            if upstream is None:
                client.close()  # every replica is down: the agent sees a refused connection
                continue
            upstream.settimeout(None)
            self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                self._sockets.discard(sock)

    def close(self) -> None:
        """Stop accepting and cut every proxied connection."""
        self._closed = True
        self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def restart_dockerd(log: Path, timeout: float = 120) -> float:
    """Stop the running dockerd and start it again as found: a plain `dockerd` in the background.

    Returns the seconds it took until `docker info` answered again.
    """
    pids = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _comm(entry) == "dockerd"
    ]
    assert len(pids) == 1, f"expected one dockerd, found {pids}"
    started = time.monotonic()
    os.kill(pids[0], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pids[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pids[0]}").exists(), "dockerd did not stop"
    with log.open("ab") as handle:
        subprocess.Popen(
            ["dockerd"], stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_for(
        lambda: (
            subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
        ),
        timeout,
        "dockerd to answer again",
        interval=0.5,
    )
    return time.monotonic() - started


def _comm(entry: Path) -> str:
    try:
        return (entry / "comm").read_text().strip()
    except OSError:
        return ""


def restart_postgres(server: EmbeddedPostgres, down: float) -> None:
    """Fast-shutdown the embedded PostgreSQL, wait, and start it on the same port."""
    port = server.port
    assert port is not None
    server.stop()
    time.sleep(down)
    # start() picks a free port; the services hold a URL with the old one.
    original = db_embedded._free_port
    db_embedded._free_port = lambda: port
    try:
        server.start()
    finally:
        db_embedded._free_port = original
    assert port == server.port


@dataclass(frozen=True)
class Identity:
    """A probe event's identity as ingest deduplicates it (the agent is fixed per run)."""

    container_id: str
    ip: str
    port: int | None
    protocol: str
    time: datetime


def read_identity_log(path: Path) -> tuple[list[Identity], list[Identity]]:
    """The probe identities the agent spooled, and those it dropped because the spool was full."""
    performed: list[Identity] = []
    dropped: list[Identity] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("type") != "probe":
            continue  # container events and heartbeats: counted by dropped_events()
        identity = Identity(
            record["container_id"],
            record["ip"],
            record.get("port"),
            record.get("protocol", "tcp"),
            datetime.fromisoformat(record["time"].replace("Z", "+00:00")),
        )
        (dropped if record.get("dropped") else performed).append(identity)
    return performed, dropped


def dropped_events(path: Path) -> int:
    """Events of every type that the agent logged as dropped by its full spool."""
    return sum(1 for line in path.read_text().splitlines() if '"dropped":true' in line)


def stored_identities(database_url: str, agent: str) -> list[Identity]:
    """Every probe event of this agent in the store, as identities."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT c.container_id, host(t.ip), t.port, t.protocol, p.time"
            " FROM probe_events p JOIN targets t USING (target_id)"
            " JOIN containers c USING (container_key) JOIN agents a USING (agent_id)"
            " WHERE a.name = %s",
            (agent,),
        ).fetchall()
    return [Identity(*row) for row in rows]


def projection_snapshot(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """The rows of every projection table, in key order."""
    keys = {"target_state": "target_id", "container_state": "container_key"}
    with psycopg.connect(database_url) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            for table, key in keys.items()
        }


TARGET_CONTAINERS = 4
PORTS_PER_CONTAINER = 55  # 220 targets, probed every second: over 200 events a second
FIRST_PORT = 8000
DOWN_SECONDS = 10.0


@dataclass
class FaultReport:
    """What one fault did: how long the part was away, how long until events flowed again."""

    name: str
    outage_s: float
    recovery_s: float
    duplicates: int
    projection_equal: bool


@dataclass
class Accounting:
    """Every probe the agent performed, against what the store holds."""

    performed: int
    stored: int
    dropped: int
    dropped_all_types: int
    reported_dropped: int
    missing: list[Identity]
    unexpected: list[Identity]
    duplicates: int


class ChaosRig:
    """The whole system as processes: PostgreSQL, ingest replicas behind a proxy, an agent."""

    def __init__(self, workdir: Path, image: str, session: str) -> None:
        self.workdir = workdir
        self.image = image
        self.session = session
        self.agent_id = f"chaos-{session}"
        self.identity_log = workdir / "identities.jsonl"
        self.postgres = EmbeddedPostgres(workdir / "pg")
        self.database_url = ""
        self.ingest_ports = [free_port(), free_port()]
        self.ingests: dict[int, Process] = {}
        self.proxy: RoundRobinProxy | None = None
        self.agent: Process | None = None
        self.agent_starts = 0
        self.containers: list[str] = []
        self.reports: list[FaultReport] = []

    # -- setup ------------------------------------------------------------------------------

    def start(self, spool_max_bytes: int) -> None:
        """Start PostgreSQL, ingest A, the proxy, the target containers and the agent."""
        self.database_url = self.postgres.start()
        migrate(self.database_url, "postgres")
        self.start_ingest(0)
        self.proxy = RoundRobinProxy([self.ingest_ports[0]])
        self.start_targets()
        self.start_agent(spool_max_bytes)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment every process of the rig shares."""
        return service_env(
            self.workdir / "data",
            DOCKPING_DATABASE__URL=self.database_url,
            DOCKPING_INGEST__TOKEN=TOKEN,
            DOCKPING_AGENT__TOKEN=TOKEN,
            **overrides,
        )

    def start_ingest(self, replica: int) -> Process:
        """Start ingest replica 0 (A) or 1 (B) on its fixed port; wait for /healthz."""
        port = self.ingest_ports[replica]
        env = self.env(DOCKPING_INGEST__PORT=str(port))
        name = "AB"[replica]
        process = Process(["ingest"], env, self.workdir / f"ingest-{name}.log")
        wait_for(
            lambda: (
                process.process.poll() is None
                and httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            ),
            60,
            f"ingest {name}",
        )
        self.ingests[replica] = process
        return process

    def start_targets(self) -> None:
        """Busybox containers, each with httpd on many ports, restarted with dockerd."""
        ports = list(range(FIRST_PORT, FIRST_PORT + PORTS_PER_CONTAINER))
        script = (
            f"for p in $(seq {ports[0]} {ports[-1]}); do httpd -h / -p $p; done; "
            "trap 'exit 0' TERM; while true; do sleep 1; done"
        )
        for number in range(TARGET_CONTAINERS):
            name = f"dpt-chaos-{self.session}-{number}"
            subprocess.run(
                [
                    "docker", "run", "-d", "--name", name,
                    "--restart", "unless-stopped", "--stop-timeout", "2",
                    "--label", f"dockping.test={self.session}",
                    "--label", f"dockping.ports={','.join(map(str, ports))}",
                    self.image, "sh", "-c", script,
                ],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            self.containers.append(name)

    def start_agent(self, spool_max_bytes: int) -> None:
        """Start the agent, shipping through the proxy, logging identities."""
        assert self.proxy is not None
        env = self.env(
            DOCKPING_AGENT__ID=self.agent_id,
            DOCKPING_AGENT__INGEST_URL=f"http://127.0.0.1:{self.proxy.port}",
            DOCKPING_AGENT__IDENTITY_LOG=str(self.identity_log),
            DOCKPING_AGENT__SPOOL_MAX_BYTES=str(spool_max_bytes),
            DOCKPING_AGENT__SHUTDOWN_TIMEOUT="30s",
        )
        self.agent_starts += 1
        self.agent = Process(["agent"], env, self.workdir / f"agent-{self.agent_starts}.log")

    # -- observation ------------------------------------------------------------------------

    def count_since(self, since: datetime, ok_only: bool = False) -> int:
        """Probe events of the agent probed after `since` and stored."""
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM probe_events WHERE time > %s"
                + (" AND latency_us >= 0" if ok_only else ""),
                (since,),
            ).fetchone()
        return int(row[0]) if row else 0

    def wait_flowing(self, since: datetime, ok_only: bool = False, timeout: float = 180) -> float:
        """Seconds from `since` until 100 events probed after it are stored."""
        started = time.monotonic()
        wait_for(
            lambda: self._count_or_zero(since, ok_only) >= 100,
            timeout,
            f"events probed after {since.isoformat()} to be stored",
            interval=0.25,
        )
        return time.monotonic() - started

    def _count_or_zero(self, since: datetime, ok_only: bool) -> int:
        try:
            return self.count_since(since, ok_only)
        except psycopg.OperationalError:
            return 0

    def targets(self) -> int:
        """Targets of the agent's containers seen in the store."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM targets t JOIN containers c USING (container_key)"
                " WHERE c.name LIKE %s",
                (f"dpt-chaos-{self.session}-%",),
            ).fetchone()
        return int(row[0]) if row else 0

    def rate(self, seconds: float = 10) -> float:
        """Events a second stored over a window of probes, once they are all in."""
        start = datetime.now(UTC)
        time.sleep(seconds)
        end = datetime.now(UTC)
        time.sleep(3)  # let the window's last batches arrive
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM probe_events WHERE time > %s AND time <= %s", (start, end)
            ).fetchone()
        return (int(row[0]) if row else 0) / (end - start).total_seconds()

    def duplicates(self) -> int:
        """Probe events stored more than once under one identity."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) - count(DISTINCT (c.agent_id, c.container_id, t.ip, t.port,"
                " t.protocol, p.time)) FROM probe_events p JOIN targets t USING (target_id)"
                " JOIN containers c USING (container_key)"
            ).fetchone()
        return int(row[0]) if row else 0

    def projection_equals_rebuild(self) -> bool:
        """With the agent paused and ingest idle, the projections equal a rebuild from events."""
        assert self.agent is not None
        os.kill(self.agent.process.pid, signal.SIGSTOP)
        try:
            before = projection_snapshot(self.database_url)
            for _ in range(40):  # until in-flight batches are written
                time.sleep(0.5)
                again = projection_snapshot(self.database_url)
                if again == before:
                    break
                before = again
            rebuild(self.database_url)
            after = projection_snapshot(self.database_url)
        finally:
            os.kill(self.agent.process.pid, signal.SIGCONT)
        return before == after

    def record(self, name: str, outage: float, recovery: float) -> FaultReport:
        """Check duplicates and the projection after a fault; keep the report."""
        report = FaultReport(
            name, outage, recovery, self.duplicates(), self.projection_equals_rebuild()
        )
        self.reports.append(report)
        return report

    def rss(self) -> dict[str, int]:
        """Resident KiB of every running process of the rig, PostgreSQL's postmaster included."""
        found: dict[str, int] = {}
        for replica, process in self.ingests.items():
            if process.process.poll() is None:
                found[f"ingest-{'AB'[replica]}"] = rss_kib(process.process.pid)
        if self.agent is not None and self.agent.process.poll() is None:
            found["agent"] = rss_kib(self.agent.process.pid)
        pid_file = self.postgres.pgdata / "postmaster.pid"
        if pid_file.exists():
            found["postgres"] = rss_kib(int(pid_file.read_text().split()[0]))
        return found

    # -- faults -----------------------------------------------------------------------------

    def kill_ingest(self, replica: int = 0) -> None:
        """SIGKILL an ingest replica."""
        process = self.ingests.pop(replica)
        os.kill(process.process.pid, signal.SIGKILL)
        process.process.wait()
        process.handle.close()

    def fault_kill_ingest(self) -> FaultReport:
        """1. SIGKILL ingest, restart it after 10 s."""
        self.kill_ingest(0)
        time.sleep(DOWN_SECONDS)
        self.start_ingest(0)
        back = datetime.now(UTC)
        return self.record("SIGKILL ingest, back after 10 s", DOWN_SECONDS, self.wait_flowing(back))

    def fault_restart_postgres(self) -> FaultReport:
        """2. PostgreSQL fast shutdown, back after 10 s."""
        restart_postgres(self.postgres, DOWN_SECONDS)
        back = datetime.now(UTC)
        return self.record(
            "PostgreSQL fast shutdown, back after 10 s", DOWN_SECONDS, self.wait_flowing(back)
        )

    def fault_restart_dockerd(self) -> FaultReport:
        """3. Restart dockerd: the targets stop and come back; probes succeed again."""
        # Outside the test's temp dir: dockerd outlives the test and keeps writing its log.
        outage = restart_dockerd(Path(tempfile.gettempdir()) / "dockping-chaos-dockerd.log")
        back = datetime.now(UTC)
        recovery = self.wait_flowing(back, ok_only=True)
        return self.record("restart dockerd", outage, recovery)

    def fault_kill_agent(self, spool_max_bytes: int) -> FaultReport:
        """4. SIGKILL the agent and restart it (with the spool limit for fault 5)."""
        assert self.agent is not None
        os.kill(self.agent.process.pid, signal.SIGKILL)
        self.agent.process.wait()
        self.agent.handle.close()
        started = time.monotonic()
        self.start_agent(spool_max_bytes)
        back = datetime.now(UTC)
        recovery = self.wait_flowing(back)
        return self.record("SIGKILL agent, restarted", time.monotonic() - started, recovery)

    def fault_fill_spool(self, timeout: float = 180) -> FaultReport:
        """5. Ingest down until the agent's spool is full and drops its oldest events."""
        self.kill_ingest(0)
        started = time.monotonic()
        wait_for(
            lambda: (
                self.identity_log.exists()
                and b'"dropped":true' in self.identity_log.read_bytes()[-1_000_000:]
            ),
            timeout,
            "the agent's spool to fill and drop events",
            interval=0.5,
        )
        time.sleep(2)
        self.start_ingest(0)
        outage = time.monotonic() - started
        back = datetime.now(UTC)
        return self.record("spool filled while ingest is down", outage, self.wait_flowing(back))

    def fault_replica(self) -> FaultReport:
        """6. Two ingest replicas behind the proxy; SIGKILL the one in use."""
        assert self.proxy is not None
        self.start_ingest(1)
        self.proxy.backends = [self.ingest_ports[0], self.ingest_ports[1]]
        time.sleep(3)
        self.kill_ingest(0)
        killed = datetime.now(UTC)
        return self.record("two replicas, one SIGKILLed", 0.0, self.wait_flowing(killed))

    # -- the end ----------------------------------------------------------------------------

    def finish(self) -> Accounting:
        """Stop the agent (it flushes its spool), then account for every identity it logged."""
        assert self.agent is not None
        code = self.agent.stop(timeout=60)
        assert code == 0, self.agent.output()[-3000:]
        performed, dropped = read_identity_log(self.identity_log)
        stored = stored_identities(self.database_url, self.agent_id)
        performed_set, dropped_set, stored_set = set(performed), set(dropped), set(stored)
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT h.time, h.dropped FROM heartbeats h JOIN agents a USING (agent_id)"
                " WHERE a.name = %s ORDER BY h.time",
                (self.agent_id,),
            ).fetchall()
        # The counter is per agent process: add up each process's last value.
        reported = 0
        previous = 0
        for _, value in rows:
            if value < previous:
                reported += previous
            previous = value
        reported += previous
        return Accounting(
            performed=len(performed_set),
            stored=len(stored_set),
            dropped=len(dropped_set),
            dropped_all_types=dropped_events(self.identity_log),
            reported_dropped=reported,
            missing=sorted(performed_set - stored_set - dropped_set, key=lambda i: i.time),
            unexpected=sorted(stored_set - performed_set, key=lambda i: i.time),
            duplicates=len(stored) - len(stored_set),
        )

    def close(self) -> None:
        """Stop everything the rig started and remove its containers."""
        if self.agent is not None:
            self.agent.stop(timeout=5)
        for process in self.ingests.values():
            process.stop(timeout=10)
        if self.proxy is not None:
            self.proxy.close()
        if self.containers:
            subprocess.run(
                ["docker", "rm", "-f", *self.containers], capture_output=True, check=False
            )
        with contextlib.suppress(Exception):
            self.postgres.stop()


def build_busybox_image() -> str:
    """The tests' busybox image FROM scratch, built if missing (for runs outside pytest)."""
    from tests.docker_support import IMAGE, build_image, static_busybox

    found = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    if found.returncode == 0:
        return IMAGE
    busybox = static_busybox()
    if busybox is None:
        raise RuntimeError("no static busybox (Debian package busybox-static)")
    return build_image(busybox)
