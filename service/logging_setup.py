"""Request ids and log formats: every log line of a request carries its ``X-Request-ID``.

- :class:`RequestIdMiddleware` (outermost ASGI middleware) takes the caller's ``X-Request-ID``
  when it is safe (1-128 characters of ``A-Z a-z 0-9 . _ : -``; anything else is replaced, so
  a header can never forge log lines or fields), or makes one (32 hex digits), keeps it in the
  :data:`request_id` context variable while the request runs, returns it in the response
  header, and logs one access line per request (method, route, status, milliseconds).
  Tasks started by a request (a reindex job) inherit the id, so their lines name the request
  that started them.
- :class:`RequestIdFilter` puts the context's id on every record (``request_id``, ``-``
  outside requests); :func:`configure_logging` installs it with the format of
  ``RECSVC_LOG_FORMAT``: ``text`` (one readable line) or ``json`` (one JSON object per line:
  ts, level, logger, message, request_id, plus exc_info and the access line's fields).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128
_SAFE_ID = re.compile(rf"^[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}$")
NO_REQUEST = "-"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Loggers whose own handlers (uvicorn's log config) do not propagate to the root's.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Record attributes the JSON format adds when a line has them (the access line's fields).
EXTRA_FIELDS = ("method", "path", "route", "status", "duration_ms")

request_id: ContextVar[str | None] = ContextVar("recsvc_request_id", default=None)
access_logger = logging.getLogger("service.access")
logger = logging.getLogger(__name__)

LogFormat = Literal["text", "json"]


def valid_request_id(value: str | None) -> bool:
    return value is not None and _SAFE_ID.match(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or ``-``) on the record as ``request_id``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") or record.request_id is None:
            record.request_id = request_id.get() or NO_REQUEST
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or request_id.get()
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if rid in (None, NO_REQUEST) else rid,
        }
        for key in EXTRA_FIELDS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def make_formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")


class _RecsvcHandler(logging.StreamHandler):
    """The stderr handler this module adds when the root logger has no console handler."""


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    # Plain StreamHandlers only (basicConfig's, uvicorn's, ours): test harness handlers are subclasses.
    return [h for h in logger.handlers if type(h) in (logging.StreamHandler, _RecsvcHandler)]


def configure_logging(fmt: LogFormat = "text") -> None:
    """Give the console handlers (root's: basicConfig's or ours; uvicorn's) the request id filter and
    the ``fmt`` format. Idempotent: apps built again in one process reconfigure the same handlers."""
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    handlers = _console_handlers(root)
    if not handlers and not root.handlers:
        handler = _RecsvcHandler(sys.stderr)
        root.addHandler(handler)
        handlers = [handler]
    for name in UVICORN_LOGGERS:
        handlers += _console_handlers(logging.getLogger(name))
    for h in handlers:
        if not any(isinstance(f, RequestIdFilter) for f in h.filters):
            h.addFilter(RequestIdFilter())
        h.setFormatter(formatter)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(path: str, limit: int = 512) -> str:
    """A request path fit for one log line: control characters escaped, at most ``limit`` characters."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", path[:limit])


class RequestIdMiddleware:
    """Accepts or makes the request id, holds it in the context, returns it, logs the access line."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: str | None = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = given if given is not None and valid_request_id(given) else new_request_id()
        header = (REQUEST_ID_HEADER.lower().encode(), rid.encode())
        status = [500]
        started = [False]
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status[0] = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started[0]:
                raise  # the response is on its way: the server logs the error and drops the connection
            # Answered here rather than by Starlette's outer error middleware, so the 500 carries the id too.
            logger.exception("unhandled error on %s %s", scope.get("method", "GET"), _printable(scope.get("path", "")))
            body = json.dumps(error_body("internal_error", "internal server error")).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send_with_id({"type": "http.response.start", "status": 500, "headers": headers})
            await send_with_id({"type": "http.response.body", "body": body})
        if self.access_log:
            route = getattr(scope.get("route"), "path", None)
            ms = round((time.perf_counter() - t0) * 1000, 2)
            method, path = scope.get("method", "GET"), _printable(scope.get("path", ""))
            access_logger.info(
                "%s %s -> %d in %.1f ms",
                method,
                path,
                status[0],
                ms,
                extra={"method": method, "path": path, "route": route, "status": status[0], "duration_ms": ms},
            )
        request_id.reset(token)
