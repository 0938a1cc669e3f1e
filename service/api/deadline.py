"""Per-request deadlines and client-disconnect cancellation, as a pure ASGI middleware.

Every POST outside ``/admin`` gets a deadline: ``X-Request-Timeout-Ms`` when the client
sends one (1 .. ``deadlines.max_timeout_ms``), else ``deadlines.default_timeout_ms``
(0 = none). The route runs in its own task, with the deadline in :data:`current_deadline`
(the encoder batcher reads it, so queued texts past it are dropped before encoding).
While the route runs, the middleware watches ``receive()`` for ``http.disconnect``
(after the body has been read; the route then sees the disconnect only through this
middleware). Whichever comes first:

- the route finishes: its response goes out as usual;
- the client disconnects: the route's task is cancelled (its queued encoder work is
  removed from the queue by the batcher), metrics count it as ``disconnect`` and the
  status as 499 (nginx's "client closed request"; nothing reaches the gone client);
- the deadline passes: the task is cancelled the same way and the client gets 504
  ``deadline_exceeded`` in the common error shape (metrics: ``deadline``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import DeadlineSettings
from service.errors import error_body

TIMEOUT_HEADER = b"x-request-timeout-ms"
CLIENT_CLOSED = 499

# time.monotonic() seconds by which the current request must be answered (None: no deadline).
current_deadline: ContextVar[float | None] = ContextVar("recsvc_request_deadline", default=None)


async def _send_error(send: Send, status: int, code: str, message: str, details: Any = None) -> None:
    body = json.dumps(error_body(code, message, details)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestDeadlineMiddleware:
    def __init__(self, app: ASGIApp, settings: DeadlineSettings, on_abandoned: Any = None) -> None:
        self.app = app
        self.settings = settings
        self.on_abandoned = on_abandoned  # callable(reason: str) -> None (metrics)

    def _timeout_ms(self, scope: Scope) -> int | str:
        """The request's timeout in ms (0 = none), or an error message for a bad header."""
        for name, value in scope.get("headers", []):
            if name == TIMEOUT_HEADER:
                try:
                    ms = int(value)
                except ValueError:
                    return f"X-Request-Timeout-Ms must be an integer number of milliseconds, got {value[:32]!r}"
                if not 1 <= ms <= self.settings.max_timeout_ms:
                    return f"X-Request-Timeout-Ms must be between 1 and {self.settings.max_timeout_ms}, got {ms}"
                return ms
        return self.settings.default_timeout_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path", "").startswith("/admin"):
            await self.app(scope, receive, send)
            return
        timeout = self._timeout_ms(scope)
        if isinstance(timeout, str):
            await _send_error(send, 422, "invalid_request", timeout, {"field": "X-Request-Timeout-Ms"})
            return
        deadline = time.monotonic() + timeout / 1000.0 if timeout else None
        channel = _Channel(receive, send)
        token = current_deadline.set(deadline)
        try:
            task = asyncio.ensure_future(self.app(scope, channel.app_receive, channel.app_send))
        finally:
            current_deadline.reset(token)
        watcher = asyncio.ensure_future(channel.watch())
        gone = asyncio.ensure_future(channel.disconnected.wait())
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait({task, gone}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # re-raise what the app raised
                return
            await self._abandon(task, channel, send, timeout)
        finally:
            for t in (watcher, gone):
                t.cancel()
            if not task.done():
                task.cancel()

    async def _abandon(self, task: asyncio.Future[None], channel: _Channel, send: Send, timeout: int) -> None:
        """The client left or the deadline passed before the route finished: cancel it and say why."""
        reason = "disconnect" if channel.disconnected.is_set() else "deadline"
        if reason == "deadline" and channel.started:
            await task  # the answer (e.g. the route's own 504) is being sent: let it finish
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self.on_abandoned is not None:
            self.on_abandoned(reason)
        if channel.started:
            return  # a response is half sent: nothing more to say
        if reason == "deadline":
            await _send_error(
                send,
                504,
                "deadline_exceeded",
                f"the request did not finish within its deadline of {timeout} ms; its queued work was dropped",
                {"timeout_ms": timeout},
            )
        else:
            await _send_error(send, CLIENT_CLOSED, "client_closed_request", "the client disconnected")


class _Channel:
    """The route's receive/send, and a watcher that reads ``http.disconnect`` once the body was read."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        self.disconnected = asyncio.Event()
        self.body_read = asyncio.Event()
        self.started = False  # the response has started going out

    async def app_receive(self) -> Message:
        if self.body_read.is_set():  # only the watcher reads from the server now
            await self.disconnected.wait()
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self.disconnected.set()
        elif not message.get("more_body", False):
            self.body_read.set()
        return message

    async def app_send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)

    async def watch(self) -> None:
        await self.body_read.wait()
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
