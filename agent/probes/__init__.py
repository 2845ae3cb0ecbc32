"""Probes: one function per protocol, one signature, looked up by name.

A probe does its one exchange and raises OSError (or TimeoutError) on failure, or an
HttpFailure that names its kind and carries what it learnt. It returns None, or what it
learnt beside the outcome (HttpDetail: a status code, a connect time, a certificate's
expiry). The caller owns the deadline, the timing and the classification (agent/probing.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.probes.http import HttpDetail, HttpFailure, probe_http, probe_https
from agent.probes.icmp import icmp_available, probe_icmp
from agent.probes.tcp import probe_tcp
from agent.targets import Target

Probe = Callable[[Target], Awaitable[HttpDetail | None]]

REGISTRY: dict[str, Probe] = {
    "tcp": probe_tcp,
    "icmp": probe_icmp,
    "http": probe_http,
    "https": probe_https,
}

__all__ = ["REGISTRY", "HttpDetail", "HttpFailure", "Probe", "icmp_available"]
