"""The optional read token (query.token): a Bearer header for programs, a login cookie for people.

The cookie is a session signed with a key made from the token (itsdangerous): it holds a
random session id, never the token, expires after query.session_lifetime, and logout
revokes it. It is HttpOnly and SameSite=Strict. Changing the token ends every session.
The token is never accepted in a URL (URLs end up in logs, history and Referer headers).
Wrong tokens and forged cookies count against the client's address (web.ratelimit).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template

from dockping import tokens
from web.errors import ApiError
from web.ratelimit import FailureLimiter, client_address

COOKIE = "dockping_session"
OPEN_PATHS = ("/healthz", "/login", "/logout")
OPEN_PREFIXES = ("/static/",)
# Programs get a 401; everything else is a page, and a person is sent to the login form.
API_PREFIXES = ("/api/", "/metrics", "/schema")


class LoginForm(msgspec.Struct, frozen=True):
    """The login form's fields."""

    token: str
    next: str = "/addresses"


class Sessions:
    """Signed, expiring login sessions of one read token; a revoked one stays refused."""

    def __init__(self, token: str, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self._signer = URLSafeTimedSerializer(token, salt="dockping-query-session")
        self.lifetime = lifetime
        self.clock = clock
        # session id -> when its cookie expires anyway; only sessions made with the token
        # can be revoked, and each is forgotten once expired, so this stays small.
        self._revoked: dict[str, float] = {}

    def new(self) -> str:
        """A cookie value for a new session."""
        return self._signer.dumps(secrets.token_urlsafe(16))

    def check(self, value: str) -> Literal["ok", "ended", "forged"]:
        """ok; ended (expired or logged out); or forged (not signed with this token)."""
        try:
            session_id = self._signer.loads(value, max_age=int(self.lifetime))
        except SignatureExpired:
            return "ended"
        except BadSignature:
            return "forged"
        return "ended" if session_id in self._revoked else "ok"

    def revoke(self, value: str) -> None:
        """End a session before it expires."""
        try:
            session_id, signed_at = self._signer.loads(
                value, max_age=int(self.lifetime), return_timestamp=True
            )
        except BadSignature:
            return  # expired or forged: nothing to end
        now = self.clock()
        self._revoked = {s: until for s, until in self._revoked.items() if until > now}
        self._revoked[str(session_id)] = signed_at.timestamp() + self.lifetime


def safe_next(target: str | None) -> str:
    """A local path to go back to after login; anything else becomes /addresses."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/addresses"
    return target


def allowed(request: Request[Any, Any, Any], token: str) -> bool | None:
    """Whether a request carries the read token or a live session made from it; None when it
    carries neither a token nor a session, or only an ended one (that is no guess)."""
    given = tokens.bearer(request.headers.get("authorization"))
    if given is not None:
        return tokens.same(given, token)
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        return None
    verdict = _sessions(request).check(cookie)
    return True if verdict == "ok" else (False if verdict == "forged" else None)


def _sessions(request: Request[Any, Any, Any]) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _failures(request: Request[Any, Any, Any]) -> FailureLimiter:
    failures: FailureLimiter = request.app.state.failures
    return failures


def guard(token: str) -> Any:
    """A before_request hook that enforces the read token when one is set."""

    async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
        path = request.url.path
        if not token or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        failures, address = _failures(request), client_address(request)
        failures.check(address)
        verdict = allowed(request, token)
        if verdict:
            return None
        if verdict is False:
            failures.failed(address)
        if path.startswith(API_PREFIXES):
            raise ApiError(
                401,
                "unauthorized",
                "a read token is required: Authorization: Bearer <query.token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        wanted = path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"/login?next={quote(wanted, safe='')}", status_code=303)

    return before_request


NextParam = Annotated[str | None, QueryParameter(description="Where to go after logging in.")]


@get("/login", include_in_schema=False)
async def login_form(state: State, next: NextParam = None) -> Template:
    """The login form (only useful when query.token is set)."""
    return Template(
        template_name="login.html",
        context={"next": safe_next(next), "error": "", "needed": bool(state.read_token)},
    )


@post("/login", include_in_schema=False, status_code=303)
async def login(
    request: Request[Any, Any, Any],
    state: State,
    data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    """Check the token; on success set the session cookie and go back."""
    token: str = state.read_token
    if token and not _failures(request).attempt(
        client_address(request), lambda: tokens.same(data.token, token)
    ):
        return Template(
            template_name="login.html",
            context={
                "next": safe_next(data.next),
                "error": "That token is not right.",
                "needed": True,
            },
            status_code=401,
        )
    response: Response[Any] = Redirect(safe_next(data.next), status_code=303)
    if token:
        response.set_cookie(
            Cookie(
                key=COOKIE,
                value=_sessions(request).new(),
                max_age=int(_sessions(request).lifetime),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
        )
    return response


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    """End the session, here and in the browser."""
    cookie = request.cookies.get(COOKIE)
    if cookie is not None:
        _sessions(request).revoke(cookie)
    response: Response[Any] = Redirect("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
