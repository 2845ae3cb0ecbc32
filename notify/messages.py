"""The words of each message: a title and a body for people, plus a digest of many."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from dockping.projection import error_kind
from notify.rules import RULE_ERRORS, Change

DIGEST_LINES = 20
NOTIFY_TYPES = {
    "down": "failure",
    "reminder": "failure",
    "recovered": "success",
    "flapping": "warning",
    "settled": "info",
    "agent_silent": "warning",
    "agent_back": "success",
    "lost_sight": "warning",
    "back_in_sight": "success",
}


# What a container may choose (name, image, compose project) and shows bare: Docker's own
# name characters, and the slashes and colons of image references. Anything else is quoted.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_SHOWN_MAX = 120
# Mention syntax of the chat channels: Slack's <!channel> and <@U1>, Discord's and
# Mattermost's @everyone, @here, @channel, @all and @user. A word joiner after the @ keeps
# the text readable but no longer a mention; < and > become look-alikes, so no <...> markup.
_MENTION = re.compile(r"@(?=\w)")
_MARKUP = str.maketrans({"<": "\u2039", ">": "\u203a", "\u201c": '"', "\u201d": '"'})


def shown(text: str) -> str:
    """Text a container chose, as a message may show it: bare when plain; else on one line,
    without control characters, mentions, markup or live links, cut short, and quoted."""
    if _PLAIN.fullmatch(text) and "://" not in text and len(text) <= _SHOWN_MAX:
        return text
    visible = "".join(
        " " if unicodedata.category(c)[0] in "CZ" else c for c in text
    )  # control, format, line and paragraph separators, odd spaces
    one_line = " ".join(visible.split()).translate(_MARKUP)
    neutral = _MENTION.sub("@\u2060", one_line).replace("://", "[:]//")
    if len(neutral) > _SHOWN_MAX:
        neutral = neutral[: _SHOWN_MAX - 1] + "\u2026"
    return f"\u201c{neutral}\u201d"


class Target(NamedTuple):
    """What a message says about a target."""

    target_id: int
    agent: str
    container: str
    image: str
    project: str
    ip: str
    port: int | None
    protocol: str

    @property
    def address(self) -> str:
        """ip:port/protocol, or ip/protocol for ICMP."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}/{self.protocol}" if self.port else f"{host}/{self.protocol}"

    @property
    def label(self) -> str:
        """The short name of a target in a title."""
        return f"{shown(self.container or '?')} {self.address} on {shown(self.agent)}"


class Text(NamedTuple):
    """A rendered message."""

    title: str
    body: str


def when(time: datetime) -> str:
    """A time as people read it in a message: UTC, to the second."""
    return time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def span(length: timedelta) -> str:
    """A duration like 1h 2m 3s."""
    seconds = max(0, round(length.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)


def _error(code: int | None) -> str:
    if code in RULE_ERRORS:
        return RULE_ERRORS[code]
    return (error_kind(-code) or "unknown") if code else "unknown"


def target_message(change: Change, target: Target, public_url: str, flap_window: float) -> Text:
    """The message for one change of one target."""
    link = f"{public_url.rstrip('/')}/targets/{target.target_id}"
    what = (
        f"{shown(target.container or '?')} ({shown(target.image) if target.image else 'no image'}"
    )
    what += f", project {shown(target.project)})" if target.project else ")"
    where = f"{what} at {target.address} on agent {shown(target.agent)}"
    if change.kind == "down":
        since = when(change.since or change.time)
        body = (
            f"{where} is DOWN since {since} ({change.failures} failed probes in a row); "
            f"last error: {_error(change.error)}."
        )
        return Text(f"DOWN: {target.label}", f"{body}\n{link}")
    if change.kind == "reminder":
        since = when(change.since or change.time)
        body = f"{where} is still DOWN since {since}; last error: {_error(change.error)}."
        return Text(f"STILL DOWN: {target.label}", f"{body}\n{link}")
    if change.kind == "recovered":
        downtime = f" after {span(change.downtime)} down" if change.downtime else ""
        return Text(f"RECOVERED: {target.label}", f"{where} is up again{downtime}.\n{link}")
    if change.kind == "flapping":
        body = (
            f"{where} is FLAPPING: it changed status too often within {span(timedelta(seconds=flap_window))}."
            f" Further changes are held until it settles; it is {change.status} now."
        )
        return Text(f"FLAPPING: {target.label}", f"{body}\n{link}")
    body = f"{where} has settled: it is {change.status.upper()}, stable for {span(timedelta(seconds=flap_window))}."
    return Text(f"SETTLED ({change.status}): {target.label}", f"{body}\n{link}")


def sight_message(
    target: Target, lost: bool, last_probe_at: datetime | None, public_url: str
) -> Text:
    """The message for a target whose status went stale (nothing vouches for it) or back."""
    link = f"{public_url.rstrip('/')}/targets/{target.target_id}"
    where = f"{target.container or '?'} at {target.address} on agent {target.agent}"
    if lost:
        probed = f"no probe since {when(last_probe_at)}" if last_probe_at else "never probed"
        return Text(
            f"dockping lost sight of {target.container or target.address}",
            f"{where}: {probed}; its status is not known.\n{link}",
        )
    return Text(
        f"dockping sees {target.container or target.address} again",
        f"{where} is probed again.\n{link}",
    )


def agent_message(agent: str, silent: bool, last_heartbeat_at: datetime, after: float) -> Text:
    """The message for an agent that fell silent or came back."""
    agent = shown(agent)
    if silent:
        return Text(
            f"AGENT SILENT: {agent}",
            f"Agent {agent} sent no heartbeat since {when(last_heartbeat_at)}"
            f" (more than {span(timedelta(seconds=after))}); its targets are not being probed.",
        )
    return Text(
        f"AGENT BACK: {agent}",
        f"Agent {agent} sends heartbeats again (last {when(last_heartbeat_at)}).",
    )


def digest(kind: str, titles: list[str]) -> Text:
    """One message for many changes of one kind."""
    word = {"down": "DOWN", "recovered": "RECOVERED"}.get(kind, kind.upper())
    shown = titles[:DIGEST_LINES]
    lines = [f"- {title.split(': ', 1)[-1]}" for title in shown]
    if len(titles) > len(shown):
        lines.append(f"... and {len(titles) - len(shown)} more")
    return Text(f"{word}: {len(titles)} addresses", "\n".join(lines))
