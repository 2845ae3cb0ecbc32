"""Which HTTP client the HTTP probe uses: CPU per GET of the probe's own exchange against aiohttp and httpx, in a network namespace of its own.

Each client makes the probe's request (a new connection, one GET, the status, close) to the
10,000 HTTP listeners of bench/agent_http_probe.py, paced at 1,000 GETs a second for 10 s
with 256 in flight, in a process of its own, so that the CPU it uses is the client's alone:
the probe's minimal HTTP/1.1 exchange over its socket (agent/probes/http.py), aiohttp with one
session (a connector that closes each connection), and httpx with one AsyncClient (no
keep-alive). Figures: each general client's CPU-seconds per 1,000 GETs against the probe's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench import Figure
from bench._netns import available, listening, namespace, python
from bench.agent_http_probe import HTTP_LISTENERS
from bench.agent_probe import BASE_PORT, SINK_PORT, TARGETS

RATE = 1000
SECONDS = 10
# Runs one client (argv: kind, base port, ports, rate, seconds); prints GETs done, GETs that
# got a 200, and CPU-seconds used.
CLIENT = r"""
import asyncio, resource, sys, time
sys.path.insert(0, sys.argv[6])
kind, base, count, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
done = ok = 0
# Imported before the CPU is counted: a probe's cost, not a module's loading.
if kind == "probe":
    import agent.probes.http, agent.targets, dockping.http_check
elif kind == "aiohttp":
    import aiohttp
else:
    import httpx

async def main():
    global done, ok
    if kind == "probe":
        from agent.probes.http import probe_http
        from agent.targets import Target
        from dockping.http_check import HttpCheck
        check = HttpCheck("/")
        async def get(port):
            detail = await probe_http(Target("c", "127.0.0.1", port, "http", http=check))
            return detail.http_status
        close = None
    elif kind == "aiohttp":
        import aiohttp
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
        async def get(port):
            async with session.get(f"http://127.0.0.1:{port}/", allow_redirects=False) as response:
                return response.status
        close = session.close
    else:
        import httpx
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))
        async def get(port):
            return (await client.get(f"http://127.0.0.1:{port}/")).status_code
        close = client.aclose
    started = time.monotonic()
    slots = asyncio.Semaphore(256)
    async def one(index):
        global done, ok
        try:
            if await get(base + index % count) == 200:
                ok += 1
        except Exception:
            pass
        finally:
            done += 1
            slots.release()
    tasks = set()
    index = 0
    while time.monotonic() - started < seconds:
        due = started + index / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        await slots.acquire()
        task = asyncio.ensure_future(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    await asyncio.gather(*tasks)
    if close is not None:
        await close()

r0 = resource.getrusage(resource.RUSAGE_SELF)
asyncio.run(main())
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(done, ok, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
"""


def _client(prefix: list[str], kind: str) -> tuple[int, int, float]:
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        python(prefix, CLIENT, kind, BASE_PORT, TARGETS, RATE, SECONDS, root),
        capture_output=True,
        text=True,
        check=True,
    )
    gets, ok, cpu = done.stdout.split()
    return int(gets), int(ok), float(cpu)


def run() -> list[Figure]:
    """CPU per 1,000 GETs of each client, against the probe's exchange."""
    reason = available()
    if reason:
        raise RuntimeError(reason)
    with (
        tempfile.TemporaryDirectory(prefix="dpbench-") as scratch,
        namespace() as prefix,
        listening(
            python(prefix, HTTP_LISTENERS, BASE_PORT, TARGETS, SINK_PORT, Path(scratch) / "n")
        ),
    ):
        results = {kind: _client(prefix, kind) for kind in ("probe", "aiohttp", "httpx")}
    for kind, (gets, ok, _) in results.items():
        if ok < 0.9 * gets:
            print(f"   {kind}: only {ok} of {gets} GETs got a 200", file=sys.stderr)
    per_thousand = {kind: cpu / max(gets, 1) * 1000 for kind, (gets, _, cpu) in results.items()}
    return [
        Figure(
            f"{kind}: CPU-seconds per 1,000 GETs",
            per_thousand[kind],
            "cpu-s",
            per_thousand["probe"],
            "the probe's own exchange",
            ">= 1.0 of the probe's (the probe is the cheapest)",
            per_thousand[kind] >= per_thousand["probe"],
        )
        for kind in ("aiohttp", "httpx")
    ] + [
        Figure("the probe's exchange: CPU-seconds per 1,000 GETs", per_thousand["probe"], "cpu-s"),
    ]
