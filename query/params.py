"""Parsing of query parameters that Litestar's types cannot check alone; each error names its field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from query.cursor import BadCursor, LifecycleCursor, TimeCursor, decode_as
from web.errors import ApiError

_BUCKET = re.compile(r"^([1-9][0-9]{0,6})(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_IDS = 500


def bad(field: str, detail: str) -> NoReturn:
    """Raise the 400 that names a parameter."""
    raise ApiError(400, "bad_parameter", detail, field)


def listed(text: str | None, field: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of values out of allowed; empty when absent."""
    if not text:
        return ()
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    wrong = [v for v in values if v not in allowed]
    if wrong:
        bad(field, f"unknown {field} {wrong[0][:40]!r}; expected one of {', '.join(allowed)}")
    return values


def rfc3339(text: str | None, field: str) -> datetime | None:
    """An RFC 3339 time with a zone, or None when absent."""
    if text is None or text == "":
        return None
    if len(text) > 40 or "T" not in text.upper():
        bad(field, f"{field} must be an RFC 3339 time like 2026-11-27T20:00:00Z")
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        bad(field, f"{field} must be an RFC 3339 time like 2026-11-27T20:00:00Z")
    if value.tzinfo is None:
        bad(field, f"{field} needs a zone (Z or +HH:MM)")
    return value.astimezone(UTC)


def bucket(text: str) -> timedelta:
    """A bucket width like 10s, 1m, 1h or 1d."""
    match = _BUCKET.match(text)
    if match is None:
        bad("bucket", "bucket must be a whole number and a unit (s, m, h or d), like 10s or 1h")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if seconds > 366 * 86400:
        bad("bucket", "bucket must be at most a year")
    return timedelta(seconds=seconds)


def target_ids(text: str | None) -> list[int]:
    """A comma-separated list of target ids, at most MAX_IDS of them."""
    if not text:
        return []
    parts = text.split(",")
    if len(parts) > MAX_IDS:
        bad("ids", f"ids lists at most {MAX_IDS} targets")
    ids: list[int] = []
    for part in parts:
        if not part.strip().isdigit() or len(part.strip()) > 10:
            bad("ids", "ids must be comma-separated target ids")
        ids.append(int(part.strip()))
    return sorted(set(ids))


def time_cursor(text: str | None) -> datetime | None:
    """The position of a newest-first event cursor."""
    if not text:
        return None
    try:
        return decode_as(text, TimeCursor).time
    except BadCursor as exc:
        bad("cursor", str(exc))


def lifecycle_cursor(text: str | None) -> LifecycleCursor | None:
    """The position of a lifecycle-event cursor."""
    if not text:
        return None
    try:
        found = decode_as(text, LifecycleCursor)
    except BadCursor as exc:
        bad("cursor", str(exc))
    if len(found.action) > 64 or "\x00" in found.action:
        bad("cursor", "malformed cursor: its action is not one")
    return found


def container_id(text: str) -> str:
    """A Docker container id (or a prefix of at least 12 hex characters)."""
    if not text or len(text) > 128 or not text.isprintable():
        bad("container_id", "container_id must be a Docker container id")
    return text
