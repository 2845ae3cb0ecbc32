"""Bearer tokens: the generated shared token and constant-time checks."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret
NOTIFY_TOKEN_FILE = "notify-token"  # noqa: S105 - a file name, not a secret


class SameToken(ValueError):
    """The silences API would share its token with ingest: a guess at one would open both."""


def shared_token(configured: str, data_dir: Path, name: str = TOKEN_FILE) -> str:
    """The configured token, or the one generated once and kept in data_dir/NAME."""
    if configured:
        return configured
    path = data_dir / name
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: when two processes start at once, one writes and both read the same token.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token)
    return token


def same(given: str, expected: str) -> bool:
    """Compare two tokens in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def notify_token(configured: str, ingest_configured: str, data_dir: Path) -> str:
    """The silences API's token: notify.token, or one generated in data_dir/notify-token;
    SameToken when it is the ingest token (configured, or generated in the same data_dir)."""
    token = shared_token(configured, data_dir, NOTIFY_TOKEN_FILE)
    ingest = ingest_configured
    if not ingest:
        try:
            ingest = (data_dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            ingest = ""
    if ingest and same(token, ingest):
        raise SameToken("notify.token: must differ from the ingest token (ingest.token)")
    return token
