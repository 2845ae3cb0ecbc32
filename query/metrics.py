"""Prometheus exposition of target state. Labels: agent, container, ip, port, protocol.

Cardinality is one series per current target per metric; gone containers drop out. A stale
target (nothing vouches for its last probe any more) has no dockping_target_up series and no
latency: dockping_target_stale says so instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _label(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """The text format for a set of dockping_latest rows."""
    stale = [
        "# HELP dockping_target_stale Whether no recent probe vouches for the target's status.",
        "# TYPE dockping_target_stale gauge",
    ]
    up = [
        "# HELP dockping_target_up Whether the last probe of the target succeeded.",
        "# TYPE dockping_target_up gauge",
    ]
    latency = [
        "# HELP dockping_target_latency_seconds Connect time of the last successful probe.",
        "# TYPE dockping_target_latency_seconds gauge",
    ]
    http_status = [
        "# HELP dockping_target_http_status HTTP status code of the last HTTP(S) probe.",
        "# TYPE dockping_target_http_status gauge",
    ]
    tls_not_after = [
        "# HELP dockping_target_tls_not_after_seconds When the target's TLS certificate expires"
        " (Unix time).",
        "# TYPE dockping_target_tls_not_after_seconds gauge",
    ]
    for row in rows:
        labels = ",".join(
            f'{name}="{_label(row[key])}"'
            for name, key in (
                ("agent", "agent"),
                ("container", "container_name"),
                ("ip", "ip"),
                ("port", "port"),
                ("protocol", "protocol"),
            )
        )
        is_stale = row["status"] == "stale"
        stale.append(f"dockping_target_stale{{{labels}}} {1 if is_stale else 0}")
        if is_stale:
            continue
        is_up = row["status"] == "up"
        up.append(f"dockping_target_up{{{labels}}} {1 if is_up else 0}")
        if row["latency_ms"] is not None:
            latency.append(
                f"dockping_target_latency_seconds{{{labels}}} {float(row['latency_ms']) / 1000:.6f}"
            )
        if row.get("http_status") is not None:
            http_status.append(f"dockping_target_http_status{{{labels}}} {int(row['http_status'])}")
        if row.get("tls_not_after") is not None:
            tls_not_after.append(
                f"dockping_target_tls_not_after_seconds{{{labels}}} {float(row['tls_not_after']):.0f}"
            )
    return ("\n".join(up + stale + latency + http_status + tls_not_after) + "\n").encode()
