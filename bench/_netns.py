"""A network namespace of its own for high-rate probe benchmarks, and what runs inside it.

Thousands of new TCP connections a second in the host namespace would fill its
connection-tracking table; inside a namespace of our own, loopback is ours alone.
Not a benchmark itself (its name starts with "_").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

# Listens on PORTS ports of 127.0.0.1 (or ADDRESS, a 5th argument) from BASE, accepting and
# closing every connection, and serves a sink for agent batches on SINK that counts events
# into COUNT_FILE.
LISTENERS = r"""
import asyncio, os, resource, socket, sys, time
base, count, sink, count_file = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
address = sys.argv[5] if len(sys.argv) > 5 else "127.0.0.1"
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
events = 0
requests = 0

async def accept_loop(server):
    loop = asyncio.get_running_loop()
    while True:
        conn, _ = await loop.sock_accept(server)
        conn.close()

async def handle(reader, writer):
    global events, requests
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            n = body.count(b'"type":')
            events += n
            requests += 1
            answer = b'{"accepted": %d, "duplicates": 0}' % n
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def report():
    while True:
        with open(count_file + ".tmp", "w") as f:
            f.write(f"{time.monotonic()} {events} {requests}\n")
        os.replace(count_file + ".tmp", count_file)
        await asyncio.sleep(0.25)

async def main():
    servers = []
    for port in range(base, base + count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(4096)
        s.setblocking(False)
        servers.append(s)
    for s in servers:
        asyncio.ensure_future(accept_loop(s))
    await asyncio.start_server(handle, "127.0.0.1", sink)
    asyncio.ensure_future(report())
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

# A bare asyncio connect loop: WORKERS coroutines connect round-robin to the listeners,
# for SECONDS, at most RATE connects a second (0: as fast as it goes). Prints connects
# a second and the CPU seconds it used, and its peak RSS in kB.
BARE_LOOP = r"""
import asyncio, resource, socket, sys, time
base, count, workers, seconds, rate = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                       float(sys.argv[4]), float(sys.argv[5]))
done = 0

async def worker(index):
    global done
    loop = asyncio.get_running_loop()
    port = base + index
    started = time.monotonic()
    while True:
        if rate:
            due = started + done / rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
        s = socket.socket()
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
        except OSError:
            pass
        finally:
            s.close()
        done += 1
        port = base + (port - base + workers) % count

async def main():
    tasks = [asyncio.ensure_future(worker(i)) for i in range(workers)]
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()

t0 = time.monotonic(); r0 = resource.getrusage(resource.RUSAGE_SELF)
asyncio.run(main())
t1 = time.monotonic(); r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(done / (t1 - t0), cpu / (t1 - t0), r1.ru_maxrss)
"""


def available() -> str | None:
    """Why a namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


@contextlib.contextmanager
def namespace() -> Iterator[list[str]]:
    """A fresh network namespace with loopback up; yields the command prefix to run inside."""
    name = f"dpbench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    prefix = ["ip", "netns", "exec", name]
    try:
        subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], check=True)
        yield prefix
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def listening(command: list[str]) -> Iterator[None]:
    """Run the listeners until they say `ready`, and stop them on the way out."""
    listeners = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert listeners.stdout is not None
        if listeners.stdout.readline().strip() != "ready":
            raise RuntimeError("the listeners did not start")
        yield
    finally:
        listeners.terminate()
        listeners.wait(10)


def python(prefix: list[str], script: str, *args: object) -> list[str]:
    """A command running a Python script inside the namespace."""
    return [*prefix, sys.executable, "-c", script, *(str(a) for a in args)]
