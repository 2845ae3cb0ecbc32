"""The optional read token (query.token): a Bearer header for programs, a login cookie for people.

The cookie holds an HMAC of the token, not the token, and is HttpOnly and SameSite=Strict.
The token is never accepted in a URL (URLs end up in logs, history and Referer headers).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template

from dockping import tokens
from dockping.web import ApiError

COOKIE = "dockping_session"
OPEN_PATHS = ("/healthz", "/login", "/logout")
OPEN_PREFIXES = ("/static/",)
# Programs get a 401; everything else is a page, and a person is sent to the login form.
API_PREFIXES = ("/api/", "/metrics", "/schema")


class LoginForm(msgspec.Struct, frozen=True):
    """The login form's fields."""

    token: str
    next: str = "/addresses"


def session_value(token: str) -> str:
    """The cookie value for a token: an HMAC, so the cookie never holds the token itself."""
    return hmac.new(token.encode(), b"dockping-query-session", hashlib.sha256).hexdigest()


def safe_next(target: str | None) -> str:
    """A local path to go back to after login; anything else becomes /addresses."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/addresses"
    return target


def allowed(request: Request[Any, Any, Any], token: str) -> bool:
    """Whether a request carries the read token or a session made from it."""
    given = tokens.bearer(request.headers.get("authorization"))
    if given is not None and tokens.same(given, token):
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and tokens.same(cookie, session_value(token))


def guard(token: str) -> Any:
    """A before_request hook that enforces the read token when one is set."""

    async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
        path = request.url.path
        if not token or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return None
        if allowed(request, token):
            return None
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
    if token and not tokens.same(data.token, token):
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
                value=session_value(token),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
        )
    return response


@post("/logout", include_in_schema=False, status_code=303)
async def logout() -> Response[Any]:
    """Forget the session cookie."""
    response: Response[Any] = Redirect("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
