"""Typed exceptions carrying the service's error body.

The service answers every error as ``{"error": {"code", "message", "details"}}`` (``/v1/*``
in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``); both are read into
the same fields. Transport failures (nothing answered) are :class:`RecsvcConnectionError`.
"""

from __future__ import annotations

from typing import Any


class RecsvcError(Exception):
    """Base of every error the client raises.

    status: HTTP status (None when no response came); code: the service's stable error code
    (``unknown_item``, ``limit_exceeded``, ...); message: its message; details: its details
    (for ``/v1`` errors ``{"type", "param"}``); body: the decoded response body (or its text);
    request_id: the ``X-Request-ID`` of the request, to find its log lines.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
        body: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        self.body = body
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no response"
        code = f" {self.code}" if self.code else ""
        rid = f" (request {self.request_id})" if self.request_id else ""
        return f"{where}{code}: {self.message}{rid}"


class RecsvcConnectionError(RecsvcError):
    """The service could not be reached, or the connection failed or timed out before a response."""


class RecsvcTimeoutError(RecsvcConnectionError):
    """No response within the configured timeout."""


class APIStatusError(RecsvcError):
    """The service answered with an error status (4xx/5xx)."""


class BadRequestError(APIStatusError):
    """400 / 422: the request is invalid (``invalid_request``, ``unknown_item``, ``empty_history``, ...)."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong admin token."""


class NotFoundError(APIStatusError):
    """404: e.g. ``job_not_found``, or a model id ``/v1`` does not serve."""


class ConflictError(APIStatusError):
    """409: e.g. ``reindex_in_progress``."""


class PayloadTooLargeError(APIStatusError):
    """413: a configured limit (``limit_exceeded``) or the body size limit."""


class RateLimitError(APIStatusError):
    """429: the service sheds load; retried with backoff (``Retry-After`` honoured) before this is raised."""


class ServiceUnavailableError(APIStatusError):
    """503: starting, stopping or overloaded; retried before this is raised."""


class InternalServerError(APIStatusError):
    """Other 5xx."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from_response(status: int, body: Any, request_id: str | None) -> APIStatusError:
    """The typed error for an error response (``body``: decoded JSON, or the text when not JSON)."""
    code: str | None = None
    message = f"HTTP {status}"
    details: Any = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = str(err.get("message") or message)
        # The service's shape has details; OpenAI's (/v1 routes) has type and param instead.
        details = err.get("details") if "details" in err else {k: err.get(k) for k in ("type", "param") if k in err}
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(message, status=status, code=code, details=details, body=body, request_id=request_id)
