"""The rule engine: a pure fold from a target's probe outcomes, in time order, to changes.

It reads no clock: every decision (down after a duration, reminders, flap damping) is made
from the probes' own times, so a replay of the same events makes the same changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal, NamedTuple

import msgspec

from dockping.settings import Duration, NotifyRule

Status = Literal["unknown", "up", "down"]
ChangeKind = Literal["down", "recovered", "reminder", "flapping", "settled"]
ROUTE_LABEL = "dockping.notify"
# What a rule, not the probe, found wrong: error codes past the stored ones (probe_errors).
UNHEALTHY = 100
TLS_EXPIRING = 101
RULE_ERRORS = {UNHEALTHY: "unhealthy", TLS_EXPIRING: "certificate expiring"}


class Params(NamedTuple):
    """One rule's thresholds, as the engine reads them."""

    down_after_failures: int | None  # a count of consecutive failures, or
    down_after_seconds: float | None  # a time spent failing
    repeat_seconds: float  # 0: no reminders
    flap_changes: int
    flap_window_seconds: float
    tls_within_seconds: float = 0.0  # a certificate expiring this soon fails the probe; 0: off
    unhealthy_fails: bool = False  # an unhealthy container's probes fail


class State(msgspec.Struct, kw_only=True):
    """What the engine remembers of one target under one rule (kept as JSON in the store)."""

    status: Status = "unknown"
    failures: int = 0
    fail_since: datetime | None = None
    last_error: int | None = None
    down_since: datetime | None = None
    reminded_at: datetime | None = None
    changes: list[datetime] = msgspec.field(default_factory=list)
    flapping: bool = False


class Change(NamedTuple):
    """Something to tell: what happened, when, and what the message needs."""

    kind: ChangeKind
    time: datetime
    status: Status
    since: datetime | None  # down: when the failing began
    downtime: timedelta | None  # recovered: how long it was down
    error: int | None  # the last error code
    failures: int


def params(rule: NotifyRule, flap_changes: int, flap_window: float) -> Params:
    """The engine's view of a rule from settings."""
    down_after = rule.down_after
    if isinstance(down_after, str) and down_after.strip().isdigit():
        down_after = int(down_after)
    extra = (float(rule.tls_expires_within), rule.unhealthy)
    if isinstance(down_after, int):
        return Params(down_after, None, float(rule.repeat), flap_changes, flap_window, *extra)
    return Params(
        None,
        float(Duration.parse(down_after)),
        float(rule.repeat),
        flap_changes,
        flap_window,
        *extra,
    )


def uses_details(p: Params) -> bool:
    """Whether the rule reads more of a probe than its outcome (certificate, health)."""
    return p.tls_within_seconds > 0 or p.unhealthy_fails


def outcome(
    p: Params,
    time: datetime,
    latency_us: int,
    tls_not_after: datetime | None = None,
    health: str | None = None,
) -> int:
    """A probe's outcome under a rule: a success becomes a failure when the container is
    unhealthy or the certificate expires soon, where the rule asks so."""
    if latency_us < 0:
        return latency_us
    if p.unhealthy_fails and health == "unhealthy":
        return -UNHEALTHY
    if (
        p.tls_within_seconds > 0
        and tls_not_after is not None
        and (tls_not_after - time).total_seconds() <= p.tls_within_seconds
    ):
        return -TLS_EXPIRING
    return latency_us


def step(state: State, p: Params, time: datetime, latency_us: int) -> list[Change]:
    """Fold one probe outcome, newer than every one before, into state; return the changes."""
    out: list[Change] = []
    ok = latency_us >= 0
    if ok:
        state.failures = 0
        state.fail_since = None
        new_status: Status = "up"
    else:
        state.failures += 1
        state.fail_since = state.fail_since or time
        state.last_error = -latency_us
        new_status = "down" if _reached(state, p, time) else state.status
    window = timedelta(seconds=p.flap_window_seconds)
    if new_status != state.status:
        old = state.status
        state.status = new_status
        if new_status == "down":
            state.down_since = state.fail_since
            state.reminded_at = time
        # A target's first sign of life is no news: unknown -> up says nothing and is no flap.
        if not (old == "unknown" and new_status == "up"):
            state.changes = [c for c in state.changes if c > time - window]
            state.changes.append(time)
            if state.flapping:
                pass  # held until it settles
            elif len(state.changes) > p.flap_changes:
                state.flapping = True
                out.append(_change(state, "flapping", time))
            elif new_status == "down":
                out.append(_change(state, "down", time))
            else:
                out.append(_change(state, "recovered", time))
        if new_status == "up":
            state.down_since = None
        return out
    state.changes = [c for c in state.changes if c > time - window]
    if state.flapping and not state.changes:
        state.flapping = False
        state.reminded_at = time
        out.append(_change(state, "settled", time))
        return out
    if (
        state.status == "down"
        and not state.flapping
        and p.repeat_seconds > 0
        and state.reminded_at is not None
        and (time - state.reminded_at).total_seconds() >= p.repeat_seconds
    ):
        state.reminded_at = time
        out.append(_change(state, "reminder", time))
    return out


def _reached(state: State, p: Params, time: datetime) -> bool:
    if p.down_after_failures is not None:
        return state.failures >= p.down_after_failures
    assert state.fail_since is not None
    assert p.down_after_seconds is not None
    return (time - state.fail_since).total_seconds() >= p.down_after_seconds


def _change(state: State, kind: ChangeKind, time: datetime) -> Change:
    downtime = None
    if kind == "recovered" and state.down_since is not None:
        downtime = time - state.down_since
    return Change(
        kind=kind,
        time=time,
        status=state.status,
        since=state.down_since if state.status == "down" else None,
        downtime=downtime,
        error=state.last_error,
        failures=state.failures,
    )


class Subject(NamedTuple):
    """What rules and silences match on: a target's agent and container."""

    agent: str
    project: str = ""
    container: str = ""
    image: str = ""
    labels: dict[str, str] = {}  # a NamedTuple default, never mutated
    target_id: int | None = None


class Match(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Globs on a subject; an empty field matches anything."""

    agent: str = ""
    project: str = ""
    container: str = ""
    image: str = ""
    label: str = ""
    target_id: int | None = None

    def is_empty(self) -> bool:
        """Whether this match would match everything."""
        return self == Match()


def matches(match: Match | NotifyRule, subject: Subject) -> bool:
    """Whether every non-empty glob of a match or rule fits the subject."""
    pairs = [
        (match.agent, subject.agent),
        (match.project, subject.project),
        (match.container, subject.container),
        (match.image, subject.image),
    ]
    if any(glob and not fnmatchcase(value, glob) for glob, value in pairs):
        return False
    if match.label and not any(
        fnmatchcase(f"{key}={value}", match.label) for key, value in subject.labels.items()
    ):
        return False
    target_id = getattr(match, "target_id", None)
    return target_id is None or target_id == subject.target_id


def rules_for(rules: list[NotifyRule], subject: Subject) -> list[NotifyRule]:
    """The rules that apply to a target: dockping.notify=false opts out, =NAME routes to NAME."""
    route = subject.labels.get(ROUTE_LABEL)
    if route is not None and route.lower() == "false":
        return []
    if route:
        return [rule for rule in rules if rule.name == route]
    return [rule for rule in rules if matches(rule, subject)]


def agent_rules(rules: list[NotifyRule], agent: str) -> list[NotifyRule]:
    """Rules told about an agent: those that match on no more than the agent."""
    return [
        rule
        for rule in rules
        if not (rule.project or rule.container or rule.image or rule.label)
        and (not rule.agent or fnmatchcase(agent, rule.agent))
    ]
