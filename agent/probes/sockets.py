"""Where every probe's socket is made: the one place that decides its family and vantage."""

from __future__ import annotations

import socket

from agent.targets import Target


def open_socket(target: Target, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """A non-blocking socket of the target's address family, to probe the target from."""
    family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    return sock
