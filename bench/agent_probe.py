"""Agent probe throughput and cost against 10,000 loopback listeners, in a network namespace of its own.

The listeners, a sink standing in for ingest, the agent and a bare asyncio connect loop
all run inside one fresh namespace (`ip netns add`). The agent finds its 10,000 targets
(100 containers x 100 ports on 127.0.0.1) through a fake Engine API on a unix socket
(tests/fake_docker.py): a real engine cannot give 10,000 targets inside a private namespace.
Figures: the agent's probes/s (interval 250 ms: the schedule asks 40,000/s, more than
either prober reaches here, so it is saturated; at 1 s the schedule itself capped it at
10,000/s, below a bare loop that reaches 30,000/s on an idle machine) against the bare loop's
connects/s, as raw rates and per CPU-second of the prober (on a shared 2-core machine the
raw rates are bounded by the listener process, which must run for each handshake to
complete); the agent's CPU (share of one core) and RSS for 10,000 targets at a 20 s
interval, against the bare loop paced at the same rate.

The netns figures run the same agent against the same 10,000 targets on an address that only
a second namespace holds (198.18.0.5, of the benchmark range; the agent's namespace has no
route to it): the fake engine names a listener process there as every container's State.Pid,
so each probe's socket is made inside that namespace (agent/netns.py). Its saturated rate is
set against the host-namespace rate of the same run, and its CPU at a 20 s interval against
the 10 % budget.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import Figure
from bench._netns import BARE_LOOP, LISTENERS, available, listening, namespace, python

CONTAINERS = 100
PORTS_EACH = 100
TARGETS = CONTAINERS * PORTS_EACH
BASE_PORT = 20000
SINK_PORT = 19999
CONCURRENCY = 256
NETNS_ADDRESS = "198.18.0.5"


@contextmanager
def fake_engine(
    socket_path: Path,
    address: str = "127.0.0.1",
    pid: int = 0,
    labels: dict[str, str] | None = None,
) -> Iterator[None]:
    """The fake Engine API, serving 100 containers of 100 ports each on `address` (with these
    labels), in a thread."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fake_docker import FakeDocker, inspect_payload

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with FakeDocker(socket_path) as engine:
            for i in range(CONTAINERS):
                cid = f"{i:064x}"
                ports = tuple(range(BASE_PORT + i * PORTS_EACH, BASE_PORT + (i + 1) * PORTS_EACH))
                engine.containers[cid] = inspect_payload(
                    cid, f"bench-{i}", {"bench": address}, ports=ports, pid=pid, labels=labels
                )
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def _sink_count(path: Path) -> tuple[float, int]:
    for _ in range(50):
        try:
            stamp, events, _ = path.read_text().split()
            return float(stamp), int(events)
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise RuntimeError("the sink reports nothing")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _agent(
    prefix: list[str], scratch: Path, socket_path: Path, interval: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DOCKPING_DATA_DIR": str(scratch / f"data-{socket_path.stem}-{interval}"),
        "DOCKPING_AGENT__ID": "bench",
        "DOCKPING_AGENT__TOKEN": "bench",
        "DOCKPING_AGENT__DOCKER_URL": f"unix://{socket_path}",
        "DOCKPING_AGENT__INGEST_URL": f"http://127.0.0.1:{SINK_PORT}",
        "DOCKPING_AGENT__PROBE_INTERVAL": interval,
        "DOCKPING_AGENT__CONCURRENCY": str(CONCURRENCY),
        "DOCKPING_LOG__LEVEL": "warning",
    }
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "dockping", "agent"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(scratch / f"agent-{socket_path.stem}-{interval}.log").open("wb"),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _bare(
    prefix: list[str], seconds: float, rate: float, script: str = BARE_LOOP
) -> tuple[float, float, float]:
    done = subprocess.run(
        python(prefix, script, BASE_PORT, TARGETS, CONCURRENCY, seconds, rate),
        capture_output=True,
        text=True,
        check=True,
    )
    per_second, cpu, max_rss_kb = done.stdout.split()
    return float(per_second), float(cpu), int(max_rss_kb) / 1024


def _saturated(
    prefix: list[str], scratch: Path, socket_path: Path, count_file: Path
) -> tuple[float, float]:
    """The agent's probes/s at a 250 ms interval (saturated), and per CPU-second."""
    agent = _agent(prefix, scratch, socket_path, "250ms")
    time.sleep(8)  # discovery, the first round, the pipeline full
    t0, n0 = _sink_count(count_file)
    c0 = _cpu_seconds(agent.pid)
    time.sleep(10)
    t1, n1 = _sink_count(count_file)
    c1 = _cpu_seconds(agent.pid)
    _stop(agent)
    return (n1 - n0) / (t1 - t0), (n1 - n0) / max(c1 - c0, 1e-9)


def _steady(
    prefix: list[str], scratch: Path, socket_path: Path, count_file: Path
) -> tuple[float, float, float]:
    """The agent's probes/s, CPU (share of a core) and RSS at a 20 s interval."""
    agent = _agent(prefix, scratch, socket_path, "20s")
    time.sleep(25)  # the first round at once, then spread over the interval
    c0, w0 = _cpu_seconds(agent.pid), time.monotonic()
    t0, n0 = _sink_count(count_file)
    time.sleep(40)
    c1, w1 = _cpu_seconds(agent.pid), time.monotonic()
    t1, n1 = _sink_count(count_file)
    rss = _rss_mb(agent.pid)
    _stop(agent)
    return (n1 - n0) / (t1 - t0), (c1 - c0) / (w1 - w0), rss


@contextmanager
def _container_namespace(prefix: list[str], scratch: Path) -> Iterator[int]:
    """A second namespace holding NETNS_ADDRESS with the 10,000 listeners; yields their PID."""
    name = f"{prefix[3]}-c"
    subprocess.run(["ip", "netns", "add", name], check=True)
    inside = ["ip", "netns", "exec", name]
    listeners: subprocess.Popen[str] | None = None
    try:
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [*inside, "ip", "addr", "add", f"{NETNS_ADDRESS}/32", "dev", "lo"], check=True
        )
        # ip netns exec switches namespace, then execs: the listeners keep this PID.
        listeners = subprocess.Popen(
            python(
                inside,
                LISTENERS,
                BASE_PORT,
                TARGETS,
                SINK_PORT,
                scratch / "unused.count",
                NETNS_ADDRESS,
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listeners.stdout is not None
        if listeners.stdout.readline().strip() != "ready":
            raise RuntimeError("the container namespace's listeners did not start")
        yield listeners.pid
    finally:
        if listeners is not None:
            listeners.terminate()
            listeners.wait(10)
        subprocess.run(["ip", "netns", "del", name], check=False)


def run() -> list[Figure]:
    """Measure throughput, then CPU and RSS at a 20 s interval."""
    reason = available()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="dpbench-") as scratch_name:
        scratch = Path(scratch_name)
        socket_path = scratch / "docker.sock"
        count_file = scratch / "sink.count"
        with (
            namespace() as prefix,
            fake_engine(socket_path),
            listening(python(prefix, LISTENERS, BASE_PORT, TARGETS, SINK_PORT, count_file)),
        ):
            bare_rate, bare_busy, _ = _bare(prefix, 10, 0)
            agent_rate, agent_per_cpu = _saturated(prefix, scratch, socket_path, count_file)
            bare_per_cpu = bare_rate / max(bare_busy, 1e-9)
            steady_rate, agent_cpu, rss = _steady(prefix, scratch, socket_path, count_file)
            _, bare_cpu, bare_rss = _bare(prefix, 20, TARGETS / 20)
            netns_socket = scratch / "netns.sock"
            with (
                _container_namespace(prefix, scratch) as pid,
                fake_engine(netns_socket, NETNS_ADDRESS, pid),
            ):
                netns_rate, _ = _saturated(prefix, scratch, netns_socket, count_file)
                netns_steady, netns_cpu, _ = _steady(prefix, scratch, netns_socket, count_file)
    return [
        Figure(
            "agent probes per CPU-second, saturated",
            agent_per_cpu,
            "probes/cpu-s",
            bare_per_cpu,
            "bare asyncio connect loop",
            ">= 0.5 of the bare loop",
            agent_per_cpu >= 0.5 * bare_per_cpu,
        ),
        Figure(
            "agent probes/s, 10,000 targets, saturated",
            agent_rate,
            "probes/s",
            bare_rate,
            "bare asyncio connect loop",
            ">= 0.5 of the bare loop",
            agent_rate >= 0.5 * bare_rate,
        ),
        Figure(
            "agent probes/s at a 20 s interval",
            steady_rate,
            "probes/s",
            TARGETS / 20,
            "10,000 targets / 20 s",
            "= 1.0 of the schedule",
            steady_rate >= 0.95 * TARGETS / 20,
        ),
        Figure(
            "agent CPU, 10,000 targets at 20 s",
            agent_cpu * 100,
            "% of core",
            bare_cpu * 100,
            "bare loop at 500 connects/s",
            "<= 10% of a core",
            agent_cpu <= 0.10,
        ),
        Figure(
            "agent probes/s from a container's namespace, saturated",
            netns_rate,
            "probes/s",
            agent_rate,
            "the agent from its own namespace",
            ">= 0.5 of the host-namespace rate",
            netns_rate >= 0.5 * agent_rate,
        ),
        Figure(
            "agent probes/s from a container's namespace at a 20 s interval",
            netns_steady,
            "probes/s",
            TARGETS / 20,
            "10,000 targets / 20 s",
            "= 1.0 of the schedule",
            netns_steady >= 0.95 * TARGETS / 20,
        ),
        Figure(
            "agent CPU from a container's namespace, 10,000 targets at 20 s",
            netns_cpu * 100,
            "% of core",
            agent_cpu * 100,
            "the agent from its own namespace",
            "<= 10% of a core",
            netns_cpu <= 0.10,
        ),
        Figure(
            "agent RSS, 10,000 targets at 20 s",
            rss,
            "MB",
            bare_rss,
            "bare loop peak RSS",
            "<= 150 MB",
            rss <= 150,
        ),
    ]
