"""Opaque keyset cursors: base64url JSON, decoded strictly so that a tampered one is a 400."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import msgspec

Direction = Literal["next", "prev"]


class Cursor(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A position in an ordered listing: the sort, the direction and the last row's key."""

    sort: str
    direction: Direction
    key: str | float | int | None
    row_id: int


class BadCursor(ValueError):
    """The cursor is not one we made."""


def encode(cursor: Cursor) -> str:
    """The opaque text of a cursor."""
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).decode().rstrip("=")


def decode(text: str) -> Cursor:
    """Decode a cursor's text; raise BadCursor when it is malformed."""
    if len(text) > 512:
        raise BadCursor("cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return msgspec.json.decode(raw, type=Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise BadCursor(f"malformed cursor: {exc}") from None
