"""What query.public_status opens: the status pages of the projects it lists, and badges.

Badges are let through to their handlers, which know the project a badge is about only
once they have looked it up: they answer without the read token for a public project's
badge, and a 401 otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response

Guard = Callable[[Request[Any, Any, Any]], Awaitable[Response[Any] | None]]
STATUS_PREFIX = "/status/"
BADGE_PREFIX = "/badge/"


def guard(token: str, public: list[str], inner: Guard) -> Guard:
    """A before_request hook: the public status pages and every badge pass, the rest asks `inner`."""
    listed = frozenset(public)

    async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
        path: str = request.scope["path"]
        if token and path.startswith(BADGE_PREFIX):
            return None
        if token and path.startswith(STATUS_PREFIX) and path[len(STATUS_PREFIX) :] in listed:
            return None
        return await inner(request)

    return before_request
