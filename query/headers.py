"""Security headers on every answer, errors and unknown paths included.

A before_send hook sees each ASGI message the app sends, whoever made the answer (a handler,
an exception handler, the router's 404), unlike after_request or route middleware.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

# No inline script or style anywhere: the page's one script is /static/live.js.
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def security_headers(message: Message, scope: Scope) -> None:
    """Add the security headers to the start of every HTTP answer."""
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message=message)
        for name, value in HEADERS.items():
            headers[name] = value
