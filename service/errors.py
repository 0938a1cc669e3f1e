"""Domain exceptions and the handlers that map every error to one JSON shape:

    {"error": {"code": "unknown_item", "message": "...", "details": ...}}

Domain code raises a :class:`ServiceError` subclass; routes never build error
responses themselves. Bad input is a 4xx; the catch-all 500 handler logs the
exception and returns a generic message without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class ServiceError(Exception):
    """Base of every domain error: an HTTP status, a stable code, a message, optional details."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequestError(ServiceError):
    status_code = 422
    code = "invalid_request"


class UnknownItemError(ServiceError):
    status_code = 422
    code = "unknown_item"

    def __init__(self, item_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(item_ids))
        shown = ", ".join(repr(i) for i in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        super().__init__(f"unknown item id(s): {shown}", {"unknown_ids": ids})


class EmptyHistoryError(ServiceError):
    status_code = 422
    code = "empty_history"

    def __init__(self, message: str = "history is empty: give at least one item id or item") -> None:
        super().__init__(message)


class InvalidProfileError(ServiceError):
    """A user profile the served model cannot take (unknown field, wrong type)."""

    status_code = 422
    code = "invalid_profile"


class ModeUnavailableError(ServiceError):
    status_code = 422
    code = "mode_unavailable"


class LimitExceededError(ServiceError):
    status_code = 413
    code = "limit_exceeded"

    def __init__(self, what: str, limit: int, actual: int) -> None:
        super().__init__(
            f"{what}: {actual} exceeds the limit of {limit}", {"field": what, "limit": limit, "actual": actual}
        )


class ReindexInProgressError(ServiceError):
    status_code = 409
    code = "reindex_in_progress"


class JobNotFoundError(ServiceError):
    status_code = 404
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no reindex job {job_id!r}", {"job_id": job_id})


class JobFinishedError(ServiceError):
    """Cancel of a job that already ended (succeeded, failed or cancelled)."""

    status_code = 409
    code = "job_finished"


class DependencyUnavailableError(ServiceError):
    """A part an admin call needs (Redis: the reindex lease and job records) does not answer.
    Serving routes never raise it: they degrade instead."""

    status_code = 503
    code = "redis_unavailable"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "5"}


class CatalogPathError(ServiceError):
    """A reindex catalog path outside the catalog directory (absolute elsewhere, ``..``, a symlink
    out), or naming no regular file."""

    status_code = 422
    code = "invalid_catalog_path"


class CatalogInvalidError(ServiceError):
    """The catalog file does not parse (the message names file and line) or holds no items."""

    status_code = 422
    code = "invalid_catalog"


class CatalogShrinkError(ServiceError):
    """The catalog is smaller than ``reindex_min_share`` of the served one and ``force`` was not set."""

    status_code = 422
    code = "catalog_shrink"


class RollbackError(ServiceError):
    """No kept previous collection to roll back to, or the named one cannot be served."""

    status_code = 409
    code = "rollback_unavailable"


class UnauthorizedError(ServiceError):
    status_code = 401
    code = "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": 'Bearer realm="recsvc-admin"'}


class NotReadyError(ServiceError):
    status_code = 503
    code = "not_ready"


class ConfigurationError(RuntimeError):
    """The service cannot start with these settings or artifacts (raised at start, never per request)."""


def _http_code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        406: "not_acceptable",
        413: "payload_too_large",
        415: "unsupported_media_type",
        429: "too_many_requests",
    }.get(status, "http_error" if status < 500 else "internal_error")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field errors without echoing large inputs back."""
    out = []
    for err in exc.errors():
        item = {"loc": _json_safe(list(err.get("loc", ()))), "msg": str(err.get("msg", "")), "type": err.get("type")}
        ctx = err.get("ctx")
        if ctx:
            item["ctx"] = _json_safe(ctx)
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status_code, headers=exc.headers
        )

    async def request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse(
            error_body("invalid_request", f"invalid request: {where}: {first['msg']}", details), status_code=422
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse(
            error_body(_http_code(exc.status_code), message), status_code=exc.status_code, headers=exc.headers
        )

    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)
