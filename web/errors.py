"""Errors translated once for every HTTP service: each answer a status and a JSON body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from db.connector import Conflict, DatabaseUnavailable, SchemaError
from dockping import logs

log = logs.get("dockping.web")


class ApiError(Exception):
    """An answer with a status and a JSON body naming what is wrong."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def _json(
    status: int,
    error: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if field is not None:
        body["field"] = field
    return Response(body, status_code=status, headers=headers or {})


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return _json(exc.status, exc.error, exc.detail, exc.field, exc.headers)


def _unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database.unavailable", error=str(exc))
    return _json(
        503, "unavailable", f"the database is unavailable: {exc}", headers={"Retry-After": "2"}
    )


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    field = None
    detail = exc.detail
    if isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        first = exc.extra[0]
        field = first.get("key")
        detail = f"{first.get('message', detail)}"
    return _json(400, "bad_request", detail, field)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        log.error("http.error", status=exc.status_code, detail=exc.detail)
    return _json(exc.status_code, "http_error", exc.detail, headers=exc.headers or {})


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("http.unhandled", error=type(exc).__name__)
    return _json(500, "internal", "internal error; see the service log")


EXCEPTION_HANDLERS: dict[Any, Callable[..., Response[Any]]] = {
    ApiError: _api_error,
    DatabaseUnavailable: _unavailable,
    Conflict: _unavailable,
    SchemaError: _unavailable,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _internal,
}
