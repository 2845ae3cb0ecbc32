"""Structured logging: stable event names, level and format from settings."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from dockping.settings import LogSettings

_SECRET_KEYS = re.compile(r"token|password|secret|authorization", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Hide the password of any URL in a string."""
    return _URL_PASSWORD.sub(r"\g<scheme>***@", text)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Tokens and passwords must never reach a log line, whoever logs them.
    event.pop("color_message", None)  # uvicorn's duplicate of the message, with ANSI colours
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and value:
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


def escape_text(text: str) -> str:
    """Text with every unprintable character as a visible escape: control characters (ESC
    starts a terminal sequence), format ones (bidi overrides reorder a line), separators."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _escape(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # On a terminal, text from containers must not move the cursor, recolour or hide lines.
    for key, value in list(event.items()):
        if isinstance(value, str):
            event[key] = escape_text(value)
    return event


def configure(settings: LogSettings, service: str) -> None:
    """Configure structlog and the standard logging module for one service process."""
    level = getattr(logging, settings.level.upper())
    renderer: Any
    escape: list[Any] = []
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()  # JSON escapes control characters
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        escape = [_escape]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        *escape,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (uvicorn, psycopg, aiodocker) log through the standard module.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            # Extras first, so that redaction sees them too.
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO) if level > logging.DEBUG else logging.DEBUG)
    # Access logs would print every agent batch; errors still come through.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The pool logs every failed reconnect; we log the outage once, as database.unavailable.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def get(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
