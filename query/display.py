"""How values read for people: one place, used by the templates and by live updates alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from dockping.contract import UNPROBED_NOTE, VANTAGES


def vantage_of(code: int | None) -> tuple[str | None, str | None]:
    """A stored vantage code as the API shows it: the vantage and a note."""
    if code is None:
        return None, None
    vantage = VANTAGES[code]
    return (None, UNPROBED_NOTE) if vantage == "none" else (vantage, None)


def vantage_text(code: int | None) -> str:
    """Where a target is probed from, in words, from its stored vantage code."""
    vantage, note = vantage_of(code)
    if note is not None:
        return f"not probed: {note}"
    if vantage == "container":
        return "probed from inside the container's network"
    if vantage == "host":
        return "probed from the agent's network"
    return "—"


def latency(ms: float | None) -> str:
    """A ping time, or a dash when there is none."""
    return "—" if ms is None else f"{ms:.2f} ms"


def when(moment: datetime | None, empty: str = "—") -> str:
    """A time in UTC, to the second."""
    if moment is None:
        return empty
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def duration(seconds: float) -> str:
    """A rough length of time: 12 s, 5 min, 3 h 20 min, 2 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def since(moment: datetime | None, now: datetime) -> str:
    """How long a status has held: "for 3 h 20 min"."""
    if moment is None:
        return "—"
    return "for " + duration((now - moment).total_seconds())


def uptime(probes: int, failures: int) -> str:
    """The share of successful probes, or a dash with no probes."""
    if probes <= 0:
        return "—"
    share = 100.0 * (probes - failures) / probes
    return "100 %" if share == 100.0 else f"{min(share, 99.99):.2f} %"


class LiveRow(msgspec.Struct, frozen=True):
    """What a live update changes in one row of the table, already written for people."""

    target_id: int
    name: str
    status: str
    error: str
    latency: str
    last_ok: str
    last_ok_iso: str
    since: str
    since_iso: str


def note(status: str, error: str | None, last_probe_at: datetime | None) -> str:
    """What the table adds to a status word: a down address's error, or since when nothing
    vouches for a stale one."""
    if status == "down" and error:
        return f"({error})"
    if status == "stale":
        return f"(no probe since {when(last_probe_at, 'ever')})"
    return ""


def live_row(row: dict[str, Any], now: datetime) -> LiveRow:
    """A dockping_latest row as the table shows it."""
    return LiveRow(
        target_id=row["target_id"],
        name=row["container_name"] or "",
        status=row["status"],
        error=note(row["status"], row["error"], row["last_probe_at"]),
        latency=latency(row["latency_ms"]),
        last_ok=when(row["last_ok_at"], "never"),
        last_ok_iso=row["last_ok_at"].isoformat() if row["last_ok_at"] else "",
        since=since(row["status_since"], now),
        since_iso=row["status_since"].isoformat() if row["status_since"] else "",
    )
