"""Request body size limit (413 in the common error shape) as a pure ASGI middleware, and the
access-log filter that keeps secrets sent in query strings out of the logs.

The body is read up front (it is small by construction: at most the limit) and
replayed to the app, so a chunked upload without Content-Length is cut off at
the limit too, before any route sees it.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send, size: int | None) -> None:
        details = {"field": "body", "limit": self.max_bytes, "actual": size}
        what = f"{size} bytes" if size is not None else "more bytes"
        body = json.dumps(
            error_body("payload_too_large", f"request body of {what} exceeds the limit of {self.max_bytes}", details)
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send, declared)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send, None)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ------------------------------------------------------------------ secrets in access logs
# Query parameters whose values are never logged: any name containing one of these words
# (token, access_token, api_key, apikey, client_secret, password, passwd, auth, signature, ...).
SECRET_PARAM = re.compile(r"(token|key|secret|passw|pwd|auth|credential|signature|session)", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"([^&=;]*)(=)([^&;]*)")
REDACTED = "***"


def redact_query(target: str) -> str:
    """``/path?token=abc&x=1`` -> ``/path?token=***&x=1``: values of secret-looking names replaced."""
    path, sep, query = target.partition("?")
    if not sep:
        return target

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if SECRET_PARAM.search(unquote_plus(name)) else match.group(0)

    return path + "?" + _QUERY_PAIR.sub(one, query)


def has_secret_param(query_keys: list[str]) -> list[str]:
    """The query parameter names that look like secrets."""
    return [k for k in query_keys if SECRET_PARAM.search(k)]


class RedactSecretsFilter(logging.Filter):
    """Rewrites uvicorn access-log records so secret-looking query values never reach a handler.

    uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with ``(client, method, full_path, http_version, status)``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        elif isinstance(record.msg, str) and "?" in record.msg and not args:
            record.msg = " ".join(redact_query(part) for part in record.msg.split(" "))
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Attach :class:`RedactSecretsFilter` to the access logger (once; safe to call again)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecretsFilter) for f in logger.filters):
        logger.addFilter(RedactSecretsFilter())
