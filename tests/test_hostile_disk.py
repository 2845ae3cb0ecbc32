"""A full disk is a full spool: the oldest events go, counted and logged, and probing goes on;
under `dockping up`, a service that dies is restarted, and says so, while the others serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from agent.identity_log import IdentityLog
from agent.spool import Spool, iter_records
from dockping.contract import HeartbeatEvent
from tests.docker_support import Containers
from tests.events import NOW
from tests.required import unavailable
from tests.services import Process, service_env, wait_for
from tests.test_agent_shipping import Stack, container_id


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at path for the block: a real file system that fills up."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable("tmpfs", f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, leave: int) -> None:
    """Fill a file system until about `leave` bytes are free."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    with (directory / "filler").open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def test_a_spool_on_a_full_disk_drops_the_oldest_and_takes_the_newest(tmp_path: Path) -> None:
    """On a 1 MiB tmpfs, appends past the disk never raise; the oldest records are dropped and
    counted, what is left reads back whole, and the newest record is among it."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        dropped: list[bytes] = []
        spool = Spool(disk / "spool", 256 * 1024 * 1024, lambda p: dropped.append(p) or 1)
        records = [json.dumps({"n": n, "pad": "x" * 4000}).encode() for n in range(600)]
        for record in records:  # about 2.4 MB into 1 MiB
            spool.append(record)
        kept = [payload for payload, _ in spool.pending()]
        assert spool.disk_full > 0
        assert spool.dropped == len(dropped) > 0
        assert kept[-1] == records[-1]
        assert len(kept) + len(dropped) == len(records)  # each one kept or counted, none torn
        for segment in (disk / "spool").glob("*.seg"):
            data = segment.read_bytes()
            assert sum(len(p) + 10 for p, _ in iter_records(data)) == len(data)
        spool.close()


def test_the_identity_log_on_a_full_disk_leaves_lines_out_whole(tmp_path: Path) -> None:
    """When the disk fills, a write of identities is left out whole and counted, never torn."""
    with tmpfs(tmp_path / "disk", "256k") as disk:
        fill(disk, 8192)
        log = IdentityLog(disk / "identities.jsonl")
        beat = HeartbeatEvent(time=NOW)
        for _ in range(400):
            log.write([beat] * 3)
        log.close()
        lines = (disk / "identities.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b""
        assert all(json.loads(line)["type"] == "heartbeat" for line in lines[:-1])
        assert log.lost > 0
        assert len(lines) - 1 + log.lost == 1200


@pytest.mark.docker
def test_an_agent_whose_spool_disk_fills_keeps_probing_and_loses_nothing_uncounted(
    tmp_path: Path, database_url: str, containers: Containers
) -> None:
    """With its data dir on a full tmpfs and ingest away, the agent drops the oldest events
    (logged, listed as dropped), keeps running, and once ingest is back every event it did not
    drop is stored."""
    with tmpfs(tmp_path / "disk", "512k") as disk:
        stack = Stack(tmp_path, database_url)
        stack.env["DOCKPING_DATA_DIR"] = str(disk)
        stack.env["DOCKPING_AGENT__PROBE_INTERVAL"] = "100ms"
        fill(disk, 48 * 1024)
        labels = {"dockping.ports": "8000,8001,8002,8003,8004,8005"}
        cid = container_id(
            containers.run("disk", "httpd", "-f", "-p", "8000", expose=(8000,), labels=labels)
        )
        try:
            agent = stack.start_agent()
            wait_for(lambda: len(stack.identities(cid, dropped=True)) >= 20, 120, "events dropped")
            before = len(stack.identities(cid))
            wait_for(lambda: len(stack.identities(cid)) > before + 20, 60, "probing going on")
            assert agent.process.poll() is None, agent.output()[-3000:]
            stack.start_ingest()
            wait_for(lambda: {s for s in stack.stored() if s[0] == cid}, 60, "probes stored")
            assert agent.stop() == 0, agent.output()[-3000:]  # SIGTERM: the rest is flushed
            made, dropped = stack.identities(), stack.identities(dropped=True)
            stored = stack.stored()
            assert made - dropped, "some events were kept"
            assert made - dropped - stored == set()
            assert dropped & stored == set()
            log = agent.output()
            assert '"spool.dropped"' in log
            assert "Traceback" not in log
        finally:
            stack.close()


def children_of(pid: int) -> dict[str, int]:
    """The `dockping SERVICE` children of a process, by service."""
    found: dict[str, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            argv = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and b"dockping" in argv:
            found[argv[-2].decode() if argv[-1] == b"" else argv[-1].decode()] = int(
                status.parent.name
            )
    return found


@pytest.mark.docker
def test_dockping_up_restarts_a_dead_service_and_its_agent_follows_the_ingest_port(
    tmp_path: Path, database_url: str, docker_engine: str
) -> None:
    """Under `dockping up`, a killed notify is restarted with its exit and restart shown, ingest
    serves throughout; the agent, with agent.ingest_url unset, ships to ingest.port."""
    env = service_env(tmp_path / "data", DOCKPING_DATABASE__URL=database_url)
    env.pop("DOCKPING_AGENT__INGEST_URL")
    env["DOCKPING_AGENT__ID"] = "up-agent"
    env["DOCKPING_INGEST__TOKEN"] = "up-token"
    ingest = f"http://127.0.0.1:{env['DOCKPING_INGEST__PORT']}"
    notify = f"http://127.0.0.1:{env['DOCKPING_NOTIFY__PORT']}"
    up = Process(["up"], env, tmp_path / "up.log")
    try:
        for url in (ingest, notify):
            wait_for(lambda u=url: healthy(u), 90, f"{url}/healthz")
        wait_for(lambda: heartbeat(database_url, "up-agent"), 60, "a heartbeat through ingest")
        first = wait_for(lambda: children_of(up.process.pid).get("notify"), 30, "notify's pid")
        os.kill(first, signal.SIGKILL)
        assert healthy(ingest)
        second = wait_for(
            lambda: (pid := children_of(up.process.pid).get("notify")) != first and pid,
            60,
            "notify restarted",
        )
        wait_for(lambda: healthy(notify), 60, "notify healthy again")
        assert up.process.poll() is None
        output = up.output()
        assert "notify exited (code -9); restarting in 1s" in output
        assert '"up.child_restarted"' in output
        assert second != first
    finally:
        assert up.stop(60) == 0, up.output()[-3000:]


def heartbeat(database_url: str, agent: str) -> bool:
    """Whether the agent's heartbeat is stored."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT 1 FROM agent_state JOIN agents USING (agent_id) WHERE name = %s", (agent,)
        ).fetchone()
    return row is not None


def healthy(url: str) -> bool:
    """Whether a service answers /healthz with 200."""
    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
