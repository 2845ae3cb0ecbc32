"""Run one probe under a deadline, time it, and classify its failure."""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from agent.probes import REGISTRY
from agent.targets import Target
from dockping.contract import ErrorKind

_UNREACHABLE = {
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.EADDRNOTAVAIL,
}
_RESET = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe: when, whether it worked, how long, or what went wrong."""

    time: datetime
    ok: bool
    latency_ms: float | None
    error: ErrorKind | None


def classify(exc: BaseException) -> ErrorKind:
    """Map an exception from a probe to an error kind."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "reset"
    if isinstance(exc, OSError):
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
        if exc.errno == errno.ETIMEDOUT:
            return "timeout"
        if exc.errno in _UNREACHABLE:
            return "unreachable"
        if exc.errno in _RESET:
            return "reset"
    return "other"


async def run_probe(target: Target, timeout: float) -> ProbeResult:
    """Probe a target once within `timeout` seconds."""
    probe = REGISTRY[target.protocol]
    when = datetime.now(UTC)
    started = time.perf_counter_ns()
    try:
        with anyio.fail_after(timeout):
            await probe(target)
    except Exception as exc:
        return ProbeResult(when, False, None, classify(exc))
    elapsed_us = (time.perf_counter_ns() - started) // 1000
    return ProbeResult(when, True, elapsed_us / 1000, None)
