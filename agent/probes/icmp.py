"""ICMP echo probe over an unprivileged datagram socket (no raw socket, no root)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from functools import cache

from agent.probes.sockets import open_socket
from agent.targets import Target


@cache
def icmp_available() -> bool:
    """Whether this system lets us open an unprivileged ICMP socket."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close()
    except OSError:
        return False
    return True


def _echo_request(ident: int, sequence: int, v6: bool) -> bytes:
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, sequence)
    payload = b"dockping"
    if v6:
        return header + payload  # the kernel fills in the ICMPv6 checksum
    total = header + payload
    checksum = 0
    for i in range(0, len(total), 2):
        checksum += (total[i] << 8) + total[i + 1]
    checksum = (checksum >> 16) + (checksum & 0xFFFF)
    checksum = ~(checksum + (checksum >> 16)) & 0xFFFF
    return struct.pack("!BBHHH", kind, 0, checksum, ident, sequence) + payload


async def probe_icmp(target: Target) -> None:
    """Send one echo request and wait for its reply."""
    v6 = ":" in target.ip
    sock = open_socket(
        target, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    )
    loop = asyncio.get_running_loop()
    try:
        sequence = int.from_bytes(os.urandom(2), "big")
        await loop.sock_sendto(sock, _echo_request(0, sequence, v6), (target.ip, 0))
        while True:
            reply = await loop.sock_recv(sock, 2048)
            # The kernel rewrites the identifier; match on the type and our sequence number.
            if len(reply) >= 8:
                kind, _, _, _, seq = struct.unpack("!BBHHH", reply[:8])
                if kind in (0, 129) and seq == sequence:
                    return
    finally:
        sock.close()
