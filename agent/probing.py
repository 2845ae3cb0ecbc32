"""Run one probe, time it, and classify its failure; the scheduler owns its deadline."""

from __future__ import annotations

import errno
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.probes import REGISTRY, HttpDetail, HttpFailure
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
    detail: HttpDetail | None = None
    """HTTP(S): the status code, connect time and certificate expiry learnt, failed or not."""


def classify(exc: BaseException) -> ErrorKind:
    """Map an exception from a probe to an error kind."""
    if isinstance(exc, HttpFailure):
        return exc.kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "tls"
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


def failed(when: datetime, exc: Exception) -> ProbeResult:
    """The result of a probe that raised."""
    return ProbeResult(when, False, None, classify(exc), getattr(exc, "detail", None))


async def probe_until_cancelled(target: Target) -> ProbeResult:
    """Probe a target once, with no deadline of its own: the caller cancels it at its deadline."""
    when = datetime.now(UTC)
    started = time.perf_counter_ns()
    try:
        detail = await REGISTRY[target.protocol](target)
    except Exception as exc:
        return failed(when, exc)
    return ProbeResult(when, True, (time.perf_counter_ns() - started) // 1000 / 1000, None, detail)


def timed_out(when: datetime) -> ProbeResult:
    """The result of a probe cancelled at its deadline."""
    return ProbeResult(when, False, None, "timeout")
