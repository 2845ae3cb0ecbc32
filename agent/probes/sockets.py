"""Where every probe's socket is made: the one place that decides its family and vantage."""

from __future__ import annotations

import socket

from agent.netns import NamespaceError
from agent.targets import Target


def open_socket(target: Target, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """A non-blocking socket of the target's address family, in the namespace to probe it from."""
    family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
    if target.netns is not None:
        return target.netns.socket(family, kind, proto)
    if target.vantage != "host":
        # Never the agent's own namespace for an address it does not reach directly: the
        # probe would leave by the default route.
        raise NamespaceError(0, f"no namespace to probe {target.ip} from")
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    return sock
