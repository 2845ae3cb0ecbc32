"""What a status depends on besides the store: the time it is taken at, and the settings.

dockping_target_status (db/schema/) decides a status; these are its parameters that come
from the reader: `stale_after`, the probe window of a target whose agent sent none, and how
long an agent may stay silent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from dockping.settings import Settings

# An agent without a heartbeat for this many resync intervals is silent (the page's banner).
MISSED_HEARTBEATS = 3


@dataclass(frozen=True)
class Freshness:
    """The reader's side of a status: as of when, and after how long a probe no longer counts."""

    as_of: datetime
    stale_after: timedelta
    default_window: timedelta
    silent_after: timedelta

    def params(self) -> dict[str, object]:
        """The named parameters every status query takes."""
        return {
            "as_of": self.as_of,
            "stale_after": self.stale_after,
            "default_window": self.default_window,
            "silent_after": self.silent_after,
        }

    def at(self, as_of: datetime) -> Freshness:
        """The same, as of another time."""
        return replace(self, as_of=as_of)


def freshness(
    settings: Settings, now: datetime, heartbeats: float = MISSED_HEARTBEATS
) -> Freshness:
    """The freshness as of now, with an agent silent after this many heartbeat intervals (the
    query service's banner: MISSED_HEARTBEATS; the notifier: notify.agent_silent_after)."""
    agent = settings.agent
    return Freshness(
        as_of=now,
        stale_after=timedelta(seconds=settings.query.stale_after),
        default_window=timedelta(seconds=agent.probe_interval + agent.probe_timeout),
        silent_after=timedelta(seconds=agent.resync_interval * heartbeats),
    )


def view_settings(fresh: Freshness) -> dict[str, str]:
    """The session settings the SQL views (latest_state and what reads it) take their
    freshness from, as this reader's settings say (`SET dockping.stale_after = ...`)."""
    return {
        "dockping.stale_after": f"{fresh.stale_after.total_seconds()} seconds",
        "dockping.default_window": f"{fresh.default_window.total_seconds()} seconds",
        "dockping.silent_after": f"{fresh.silent_after.total_seconds()} seconds",
    }
