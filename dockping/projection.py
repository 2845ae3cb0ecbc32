"""A probe outcome as stored, and a target's vantage as stored.

latency_us encodes a probe as stored: >= 0 it succeeded in that many microseconds;
< 0 it failed with error code -latency_us. The fold of these into target_state is
dockping_append_probes (db/schema/10_dockping_append_probes.sql); tests/projection_support.py
holds an independent reference of it.
"""

from __future__ import annotations

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
