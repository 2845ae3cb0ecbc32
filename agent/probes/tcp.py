"""TCP probe: a connect, then a close."""

from __future__ import annotations

import asyncio

from agent.probes.sockets import open_socket
from agent.targets import Target


async def probe_tcp(target: Target) -> None:
    """Open a TCP connection to the target and close it at once."""
    assert target.port is not None
    sock = open_socket(target)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (target.ip, target.port))
    finally:
        sock.close()
