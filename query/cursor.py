"""Opaque keyset cursors: base64url JSON, decoded strictly so that a tampered one is a 400.

A cursor holds only a position (a sort key and a row id, or a time). It is not signed: a
client that edits one gets a page that starts somewhere else, which it could have asked for
anyway. What matters is that every field is type-checked before it reaches SQL, always as a
bound parameter, so a made-up cursor is either a valid position or a 400.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Literal, TypeVar

import msgspec

Direction = Literal["next", "prev"]
MAX_CURSOR_CHARS = 512


class Cursor(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A position in the address listing: the sort, the direction and the last row's key."""

    sort: str
    direction: Direction
    key: list[str | float | int]
    row_id: int
    as_of: int = 0
    """The time (µs since the epoch) the first page's statuses were taken at; 0: none."""


class TimeCursor(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="t"):
    """A position in a newest-first event list: the time of the last row shown."""

    time: datetime


class LifecycleCursor(
    msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="l"
):
    """A position in a container's lifecycle events: the last row's (time, container, action)."""

    time: datetime
    container_key: int
    action: str


class BadCursor(ValueError):
    """The cursor is not one we made."""


T = TypeVar("T", Cursor, TimeCursor, LifecycleCursor)


def encode(cursor: Cursor | TimeCursor | LifecycleCursor) -> str:
    """The opaque text of a cursor."""
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode_as(text: str, kind: type[T]) -> T:
    """Decode a cursor's text as one kind; raise BadCursor when it is malformed or another kind."""
    if len(text) > MAX_CURSOR_CHARS:
        raise BadCursor("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.json.decode(raw, type=kind)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise BadCursor(f"malformed cursor: {exc}") from None
    if isinstance(cursor, TimeCursor | LifecycleCursor) and cursor.time.tzinfo is None:
        raise BadCursor("malformed cursor: its time has no zone")
    return cursor


def decode(text: str) -> Cursor:
    """Decode an address-listing cursor; raise BadCursor when it is malformed."""
    return decode_as(text, Cursor)
