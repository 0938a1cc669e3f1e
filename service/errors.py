"""Domain exceptions and the handlers that map every error to one JSON shape:

    {"error": {"code": "unknown_item", "message": "...", "details": ...}}

Domain code raises a :class:`ServiceError` subclass; routes never build error
responses themselves. Bad input is a 4xx; the catch-all 500 handler logs the
exception and returns a generic message without internals.
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


# ------------------------------------------------------------------ the documented shape
class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable machine-readable code, e.g. `invalid_request`, `limit_exceeded`.")
    message: str = Field(description="What is wrong and how to fix it, for people; never contains secrets.")
    details: Any = Field(
        default=None,
        description="Structured context or null (always sent): field errors (422), `{field, limit, actual}` (413), "
        "ids (404, 422).",
    )


class ErrorResponse(BaseModel):
    """The one body of every 4xx and 5xx answer (`/readyz` answers its own status body)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorInfo


def _example(summary: str, code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"summary": summary, "value": error_body(code, message, details)}


# Status -> (description, examples). Every error response in the OpenAPI document uses ErrorResponse
# with these examples; routes declare which statuses they answer through :func:`error_responses`.
ERROR_DOCS: dict[int, tuple[str, dict[str, dict[str, Any]]]] = {
    400: (
        "The request could not be read.",
        {"bad_request": _example("Unreadable body", "bad_request", "There was an error parsing the body")},
    ),
    401: (
        "Missing, malformed or wrong admin bearer token (or a token sent in the URL).",
        {"unauthorized": _example("No bearer token", "unauthorized", "missing bearer token")},
    ),
    404: (
        "Not found.",
        {"job_not_found": _example("Unknown job", "job_not_found", "no reindex job 'abc'", {"job_id": "abc"})},
    ),
    409: (
        "Conflicts with the current state (e.g. a reindex is already running).",
        {
            "reindex_in_progress": _example(
                "Reindex running", "reindex_in_progress", "a reindex is already running", {"job_id": "9f1c..."}
            )
        },
    ),
    413: (
        "A configured limit was exceeded (items, history, k, text length, body size); details name the limit.",
        {
            "limit_exceeded": _example(
                "Too many items",
                "limit_exceeded",
                "items: 300 exceeds the limit of 256",
                {"field": "items", "limit": 256, "actual": 300},
            ),
            "payload_too_large": _example(
                "Body too large",
                "payload_too_large",
                "request body of 2000000 bytes exceeds the limit of 1000000",
                {"field": "body", "limit": 1000000, "actual": 2000000},
            ),
        },
    ),
    415: (
        "The body is not sent as JSON: set the `Content-Type: application/json` header.",
        {
            "unsupported_media_type": _example(
                "Wrong Content-Type",
                "unsupported_media_type",
                "the request body must be JSON: send the header `Content-Type: application/json` "
                "(got Content-Type: 'application/x-www-form-urlencoded')",
                {"header": "Content-Type", "expected": "application/json", "got": "application/x-www-form-urlencoded"},
            )
        },
    ),
    422: (
        "The request is invalid (wrong types, missing or unknown fields, unknown item ids); details list the fields.",
        {
            "invalid_request": _example(
                "Wrong type",
                "invalid_request",
                "invalid request: k: Input should be a valid integer",
                [{"loc": ["body", "k"], "msg": "Input should be a valid integer", "type": "int_type"}],
            ),
            "unknown_item": _example(
                "Unknown item id", "unknown_item", "unknown item id(s): 'X1'", {"unknown_ids": ["X1"]}
            ),
        },
    ),
    500: (
        "Unexpected server error (logged with its traceback; the body never holds internals).",
        {"internal_error": _example("Server error", "internal_error", "internal server error")},
    ),
    503: (
        "Temporarily unable to answer (starting or stopping, overloaded, a dependency down); retry later.",
        {
            "not_ready": _example("Starting", "not_ready", "the service is starting or stopping; retry shortly"),
            "overloaded": _example(
                "Encoder queue full",
                "overloaded",
                "the encoder's bulk queue is full; retry in 2 s",
                {"lane": "bulk", "queued_texts": 500, "limit": 512, "request_texts": 32},
            ),
        },
    ),
    504: (
        "The request's deadline (X-Request-Timeout-Ms or the configured default) passed; its queued work was dropped.",
        {
            "deadline_exceeded": _example(
                "Deadline passed",
                "deadline_exceeded",
                "the request did not finish within its deadline of 30000 ms; its queued work was dropped",
                {"timeout_ms": 30000},
            )
        },
    ),
}


# Headers some error answers carry (documented, not required: not every answer of the status has them).
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The scheme to use: `Bearer realm="recsvc-admin"`.',
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying (sent when the service sheds load).",
            "schema": {"type": "string"},
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for routes and routers: each status documented with :class:`ErrorResponse` and examples."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, examples = ERROR_DOCS.get(status, ("Error.", {}))
        out[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"examples": examples}},
        }
        if status in ERROR_HEADERS:
            out[status]["headers"] = ERROR_HEADERS[status]
    return out


_ERROR_REF = "#/components/schemas/ErrorResponse"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _error_content(status: int) -> dict[str, Any]:
    examples = ERROR_DOCS.get(status, ("", {}))[1]
    media: dict[str, Any] = {"schema": {"$ref": _ERROR_REF}}
    if examples:
        media["examples"] = examples
    return {"application/json": media}


def _wanted_errors(path: str, method: str, op: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer (see :func:`document_errors`)."""
    params = op.get("parameters", [])
    wanted = {500}
    if params or "requestBody" in op:
        wanted.add(422)
    if "requestBody" in op:
        wanted |= {400, 413, 415}
    if method == "post" and not path.startswith("/admin"):
        wanted.add(504)  # RequestDeadlineMiddleware: every POST outside /admin has a deadline
    if any(p.get("in") == "path" for p in params) or "{" in path:
        wanted.add(404)
    return wanted


def _document_error(code: int, resp: dict[str, Any]) -> None:
    """One error response (in place): its headers, and :class:`ErrorResponse` as the body unless it declares one."""
    media = resp.get("content", {}).get("application/json", {})
    ref = media.get("schema", {}).get("$ref", "")
    if code in ERROR_HEADERS:
        resp.setdefault("headers", ERROR_HEADERS[code])
    if not media.get("schema") or ref.rsplit("/", 1)[-1] in _FASTAPI_VALIDATION_SCHEMAS:
        resp["content"] = _error_content(code)
        if resp.get("description") in (None, "", "Validation Error"):
            resp["description"] = ERROR_DOCS.get(code, ("Error.", {}))[0]


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the generated OpenAPI document describe the error bodies the server really sends (in place).

    Every operation gets: 500; 422 when it takes parameters or a body (replacing FastAPI's
    ``{"detail": ...}`` ``HTTPValidationError``); 400, 413 and 415 when it takes a body; 404 when its path
    has parameters. Any error response without a body schema gets :class:`ErrorResponse`; declared
    non-error models (``/readyz``'s 503 status body) are kept. FastAPI's validation schemas are dropped.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    model_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in model_schema.pop("$defs", {}).items():
        components[name] = sub
    components["ErrorResponse"] = model_schema
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = op.setdefault("responses", {})
            for status in sorted(_wanted_errors(path, method, op)):
                responses.setdefault(str(status), {"description": ERROR_DOCS[status][0]})
            for code, resp in responses.items():
                if code.isdigit() and int(code) >= 400:
                    _document_error(int(code), resp)
    text = repr(schema.get("paths", {}))
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if f"/{name}'" not in text:
            components.pop(name, None)
    return schema


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


class UnsupportedMediaTypeError(ServiceError):
    status_code = 415
    code = "unsupported_media_type"

    def __init__(self, content_type: str | None) -> None:
        got = f"got Content-Type: {content_type!r}" if content_type else "the request has no Content-Type header"
        super().__init__(
            f"the request body must be JSON: send the header `Content-Type: application/json` ({got})",
            {"header": "Content-Type", "expected": "application/json", "got": content_type},
        )


class OverloadedError(ServiceError):
    """The encoder's queue is full: refused before queueing; retry after ``retry_after_s`` seconds."""

    status_code = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details)
        self.headers = {"Retry-After": str(int(retry_after_s))}  # type: ignore[misc]


class DeadlineExceededError(ServiceError):
    """The request's deadline (configured default or X-Request-Timeout-Ms) passed; its queued work was dropped."""

    status_code = 504
    code = "deadline_exceeded"


class WriterUnavailableError(ServiceError):
    """Embedded multi-process mode: a reader could not reach the writer process with an /admin request."""

    status_code = 503
    code = "writer_unavailable"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


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


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body was sent, but not declared as JSON, so FastAPI validated raw bytes against the model."""
    if request.method not in ("POST", "PUT", "PATCH") or is_json_content_type(request.headers.get("content-type")):
        return False
    return any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in exc.errors())


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

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if _body_not_json(request, exc):
            return await service_error(request, UnsupportedMediaTypeError(request.headers.get("content-type")))
        details = validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        message = f"invalid request: {where}: {first['msg']}"
        if first["loc"] == ["body"] and first.get("type") == "missing":
            message = "invalid request: the request has no body: send JSON with `Content-Type: application/json`"
        return JSONResponse(error_body("invalid_request", message, details), status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI: "error parsing the body"
            return await service_error(
                request,
                InvalidRequestError(
                    f"invalid request: body: not UTF-8 text ({cause.reason} at byte {cause.start}); "
                    "send the JSON body encoded as UTF-8",
                    [{"loc": ["body"], "msg": "not UTF-8 text", "type": "utf8_invalid"}],
                ),
            )
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
