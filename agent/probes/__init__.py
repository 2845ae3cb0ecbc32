"""Probes: one function per protocol, one signature, looked up by name.

A probe does its one exchange and raises OSError (or TimeoutError) on failure. The
caller owns the deadline, the timing and the classification (agent/probing.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.probes.icmp import icmp_available, probe_icmp
from agent.probes.tcp import probe_tcp
from agent.targets import Target

Probe = Callable[[Target], Awaitable[None]]

REGISTRY: dict[str, Probe] = {
    "tcp": probe_tcp,
    "icmp": probe_icmp,
}

__all__ = ["REGISTRY", "Probe", "icmp_available"]
