"""The latest state of a target as a fold over its probe events.

latency_us encodes a probe as stored: >= 0 it succeeded in that many microseconds;
< 0 it failed with error code -latency_us.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from dockping.contract import ERROR_KINDS, VANTAGES, ErrorKind, Vantage

ERROR_CODES: dict[ErrorKind, int] = {kind: code for code, kind in enumerate(ERROR_KINDS, start=1)}
# A target's vantage as stored (targets.vantage; the rows of target_vantages, migration 15).
VANTAGE_CODES: dict[Vantage, int] = {vantage: code for code, vantage in enumerate(VANTAGES)}


def encode_latency(ok: bool, latency_ms: float | None, error: ErrorKind | None) -> int:
    """A probe outcome as the one integer stored per event."""
    if ok:
        return min(round((latency_ms or 0.0) * 1000), 2**31 - 1)
    return -ERROR_CODES[error or "other"]


def error_kind(latency_us: int) -> ErrorKind | None:
    """The error of a stored outcome, or None when it succeeded."""
    return None if latency_us >= 0 else ERROR_KINDS[-latency_us - 1]


class Probe(NamedTuple):
    """One stored probe outcome of one target."""

    time: datetime
    latency_us: int


class TargetState(NamedTuple):
    """The projection row of one target."""

    last_probe_at: datetime
    latency_us: int
    last_ok_at: datetime | None
    status_since: datetime
    consecutive_failures: int
    last_error: int | None
    last_error_at: datetime | None


def fold(state: TargetState | None, probes: Iterable[Probe]) -> TargetState | None:
    """Apply probes, all newer than the state, in time order."""
    for probe in sorted(probes):
        if state is not None and probe.time <= state.last_probe_at:
            raise ValueError("fold() takes only probes newer than the state")
        ok = probe.latency_us >= 0
        if state is None:
            state = TargetState(
                last_probe_at=probe.time,
                latency_us=probe.latency_us,
                last_ok_at=probe.time if ok else None,
                status_since=probe.time,
                consecutive_failures=0 if ok else 1,
                last_error=None if ok else -probe.latency_us,
                last_error_at=None if ok else probe.time,
            )
            continue
        changed = ok != (state.latency_us >= 0)
        state = TargetState(
            last_probe_at=probe.time,
            latency_us=probe.latency_us,
            last_ok_at=probe.time if ok else state.last_ok_at,
            status_since=probe.time if changed else state.status_since,
            consecutive_failures=0 if ok else state.consecutive_failures + 1,
            last_error=state.last_error if ok else -probe.latency_us,
            last_error_at=state.last_error_at if ok else probe.time,
        )
    return state
