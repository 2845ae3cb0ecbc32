"""Agent HTTP probe throughput and cost against 10,000 loopback HTTP servers, in a network namespace of its own.

As bench/agent_probe.py, with every port labelled dockping.http=/ and answering each
connection with a 200: the agent's HTTP probes against a bare asyncio loop doing the same
GETs (connect, send the request, read the status line, close) in the same run, saturated
(interval 250 ms) as raw rates and per CPU-second of the prober, and the agent's CPU for
10,000 HTTP targets at a 20 s interval against the bare loop paced at the same rate.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench import Figure
from bench._netns import BARE_LOOP, LISTENERS, available, listening, namespace, python
from bench.agent_probe import (
    BASE_PORT,
    SINK_PORT,
    TARGETS,
    _agent,
    _bare,
    _cpu_seconds,
    _rss_mb,
    _sink_count,
    _stop,
    fake_engine,
)

_ACCEPT = """        conn, _ = await loop.sock_accept(server)
        conn.close()
"""
# The listeners of bench/_netns.py, each connection answered with a 200 once its request
# head arrived.
HTTP_LISTENERS = LISTENERS.replace(
    _ACCEPT,
    """        conn, _ = await loop.sock_accept(server)
        asyncio.ensure_future(answer(loop, conn))

ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok"

async def answer(loop, conn):
    try:
        head = b""
        while b"\\r\\n\\r\\n" not in head:
            data = await loop.sock_recv(conn, 4096)
            if not data:
                return
            head += data
        await loop.sock_sendall(conn, ANSWER)
    except OSError:
        pass
    finally:
        conn.close()
""",
)
_CONNECT = """            await loop.sock_connect(s, ("127.0.0.1", port))
"""
# The bare loop of bench/_netns.py doing the agent's exchange: a GET, up to the status line.
BARE_HTTP_LOOP = BARE_LOOP.replace(
    _CONNECT,
    """            await loop.sock_connect(s, ("127.0.0.1", port))
            await loop.sock_sendall(s, b"GET / HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\nConnection: close\\r\\n\\r\\n" % port)
            head = b""
            while b"\\n" not in head:
                data = await loop.sock_recv(s, 4096)
                if not data:
                    break
                head += data
""",
)
assert HTTP_LISTENERS != LISTENERS, "the listeners of bench/_netns.py changed"
assert BARE_HTTP_LOOP != BARE_LOOP, "the bare loop of bench/_netns.py changed"


def _measure(agent: subprocess.Popen[bytes], count_file: Path, seconds: float) -> tuple[float, ...]:
    """Events per second, events per CPU-second and the share of a core, over `seconds`."""
    t0, n0 = _sink_count(count_file)
    c0, w0 = _cpu_seconds(agent.pid), time.monotonic()
    time.sleep(seconds)
    t1, n1 = _sink_count(count_file)
    c1, w1 = _cpu_seconds(agent.pid), time.monotonic()
    return (n1 - n0) / (t1 - t0), (n1 - n0) / max(c1 - c0, 1e-9), (c1 - c0) / (w1 - w0)


def run() -> list[Figure]:
    """Measure HTTP throughput, then CPU and RSS at a 20 s interval."""
    reason = available()
    if reason:
        raise RuntimeError(reason)
    with tempfile.TemporaryDirectory(prefix="dpbench-") as scratch_name:
        scratch = Path(scratch_name)
        socket_path = scratch / "docker.sock"
        count_file = scratch / "sink.count"
        with (
            namespace() as prefix,
            fake_engine(socket_path, labels={"dockping.http": "/"}),
            listening(python(prefix, HTTP_LISTENERS, BASE_PORT, TARGETS, SINK_PORT, count_file)),
        ):
            bare_rate, bare_busy, _ = _bare(prefix, 10, 0, BARE_HTTP_LOOP)
            bare_per_cpu = bare_rate / max(bare_busy, 1e-9)

            agent = _agent(prefix, scratch, socket_path, "250ms")
            time.sleep(8)  # discovery, the first round, the pipeline full
            agent_rate, agent_per_cpu, _ = _measure(agent, count_file, 10)
            _stop(agent)

            agent = _agent(prefix, scratch, socket_path, "20s")
            time.sleep(25)  # the first round at once, then spread over the interval
            steady_rate, _, agent_cpu = _measure(agent, count_file, 40)
            rss = _rss_mb(agent.pid)
            _stop(agent)
            _, bare_cpu, _ = _bare(prefix, 20, TARGETS / 20, BARE_HTTP_LOOP)
    return [
        Figure(
            "agent HTTP probes per CPU-second, saturated",
            agent_per_cpu,
            "probes/cpu-s",
            bare_per_cpu,
            "bare asyncio GET loop",
            ">= 0.5 of the bare loop",
            agent_per_cpu >= 0.5 * bare_per_cpu,
        ),
        Figure(
            "agent HTTP probes/s, 10,000 targets, saturated",
            agent_rate,
            "probes/s",
            bare_rate,
            "bare asyncio GET loop",
            ">= 0.5 of the bare loop",
            agent_rate >= 0.5 * bare_rate,
        ),
        Figure(
            "agent HTTP probes/s at a 20 s interval",
            steady_rate,
            "probes/s",
            TARGETS / 20,
            "10,000 targets / 20 s",
            "= 1.0 of the schedule",
            steady_rate >= 0.95 * TARGETS / 20,
        ),
        Figure(
            "agent CPU, 10,000 HTTP targets at 20 s",
            agent_cpu * 100,
            "% of core",
            bare_cpu * 100,
            "bare GET loop at 500/s",
            "<= 15% of a core",
            agent_cpu <= 0.15,
        ),
        Figure(
            "agent RSS, 10,000 HTTP targets at 20 s",
            rss,
            "MB",
            None,
            "",
            "",
            None,
        ),
    ]
