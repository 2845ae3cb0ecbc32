"""Text from Docker made to fit the event contract, where it enters the agent.

Whoever starts a container chooses its name, labels and networks. Ingest refuses an event
with a NUL, a lone surrogate or a text longer than the store can hold; so the agent never
builds one: each text is fitted once, here, before any event is made of it.
"""

from __future__ import annotations

import re
from typing import Any

from dockping.contract import TEXT_MAX_BYTES

NAME_MAX_CHARS = 256
TEXT_MAX_CHARS = 1024
# Docker inspects are JSON: a lone \\ud800 escape decodes to a surrogate with no partner, which
# is no character and cannot be written as UTF-8 (paired ones are joined by the decoder).
_SURROGATE = re.compile("[\ud800-\udfff]")


def fit(value: object, max_chars: int = TEXT_MAX_CHARS) -> str:
    """A text that the contract accepts: no NUL, no lone surrogate, cut to its length limits."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    text = text[:max_chars]
    if len(text) > TEXT_MAX_BYTES // 4:
        encoded = text.encode("utf-8")
        if len(encoded) > TEXT_MAX_BYTES:
            # Cut at a character boundary: a partial character at the end is dropped.
            text = encoded[:TEXT_MAX_BYTES].decode("utf-8", "ignore")
    return text


def fit_name(value: object) -> str:
    """An identifier (a container id) fitted as a contract Name: at most 256 characters."""
    return fit(value, NAME_MAX_CHARS)


def fit_labels(labels: Any) -> dict[str, str]:
    """A label mapping with every key and value fitted; anything but a mapping is none."""
    if not isinstance(labels, dict):
        return {}
    return {fit(key): fit(value) for key, value in labels.items()}
