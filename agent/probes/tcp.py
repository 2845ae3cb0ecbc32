"""TCP probe: a connect, then a close."""

from __future__ import annotations

import asyncio
import socket

from agent.targets import Target


async def probe_tcp(target: Target) -> None:
    """Open a TCP connection to the target and close it at once."""
    assert target.port is not None
    family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (target.ip, target.port))
    finally:
        sock.close()
