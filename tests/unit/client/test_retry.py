"""Retry logic against a tiny real HTTP server (http.server on a loopback port) that answers
503 + Retry-After, then 200; and the backoff / Retry-After arithmetic."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from recsvc_client import (
    AsyncRecsvcClient,
    RateLimitError,
    RecsvcClient,
    RecsvcConnectionError,
    RetryPolicy,
    ServiceUnavailableError,
)
from recsvc_client.retry import parse_retry_after
from tests.live import free_port

HEALTHY = {"status": "ok"}


class Script:
    """What the server answers, in order (the last answer repeats), and what it was sent."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        self.seen: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self, request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.seen.append(request)
            return self.answers[min(len(self.seen) - 1, len(self.answers) - 1)]


@pytest.fixture
def server() -> Iterator[tuple[str, list[Script]]]:
    current: list[Script] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            status, headers, payload = current[0].next(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", current
    finally:
        httpd.shutdown()
        httpd.server_close()


def _unavailable(retry_after: str | None = "1") -> tuple[int, dict[str, str], Any]:
    body = {"error": {"code": "overloaded", "message": "encoder queue is full", "details": {"queue": 64}}}
    return 503, ({"Retry-After": retry_after} if retry_after is not None else {}), body


def _policy(waits: list[tuple[int, float, str]], **kw: Any) -> RetryPolicy:
    return RetryPolicy(on_retry=lambda a, d, r: waits.append((a, d, r)), **kw)


def test_503_with_retry_after_then_200(server: tuple[str, list[Script]]) -> None:
    url, current = server
    current.append(Script([_unavailable("1"), (200, {}, HEALTHY)]))
    waits: list[tuple[int, float, str]] = []
    with RecsvcClient(url, retry=_policy(waits, backoff_base=5.0)) as client:
        assert client.health().status == "ok"
    # waited what Retry-After said (not the 5 s backoff), once
    assert waits == [(0, 1.0, "HTTP 503")]
    seen = current[0].seen
    assert len(seen) == 2
    # the same request id on both tries
    assert seen[0]["headers"]["X-Request-ID"] == seen[1]["headers"]["X-Request-ID"]


def test_gives_up_with_the_service_error_body(server: tuple[str, list[Script]]) -> None:
    url, current = server
    current.append(Script([_unavailable(None)]))
    waits: list[tuple[int, float, str]] = []
    client = RecsvcClient(url, retry=_policy(waits, max_retries=3, backoff_base=0.01, jitter=False))
    with pytest.raises(ServiceUnavailableError) as err:
        client.search("shampoo")
    assert [w[1] for w in waits] == [0.01, 0.02, 0.04]  # exponential, no Retry-After
    assert len(current[0].seen) == 4
    e = err.value
    assert (e.status, e.code, e.message, e.details) == (503, "overloaded", "encoder queue is full", {"queue": 64})
    assert e.request_id == current[0].seen[0]["headers"]["X-Request-ID"]
    client.close()


def test_429_retried_and_4xx_not(server: tuple[str, list[Script]]) -> None:
    url, current = server
    waits: list[tuple[int, float, str]] = []
    current.append(Script([(429, {"Retry-After": "0"}, {"error": {"code": "too_many_requests", "message": "slow"}})]))
    with pytest.raises(RateLimitError):
        RecsvcClient(url, retry=_policy(waits, max_retries=2)).search("x")
    assert [w[1] for w in waits] == [0.0, 0.0]
    current[0] = Script(
        [(422, {}, {"error": {"code": "unknown_item", "message": "no", "details": {"unknown_ids": ["a"]}}})]
    )
    from recsvc_client import BadRequestError

    with pytest.raises(BadRequestError) as err:
        RecsvcClient(url, retry=_policy(waits, max_retries=2)).recommend(["a"])
    assert err.value.details == {"unknown_ids": ["a"]} and len(current[0].seen) == 1


def test_too_long_retry_after_is_not_waited(server: tuple[str, list[Script]]) -> None:
    url, current = server
    current.append(Script([_unavailable("3600"), (200, {}, HEALTHY)]))
    waits: list[tuple[int, float, str]] = []
    with pytest.raises(ServiceUnavailableError):
        RecsvcClient(url, retry=_policy(waits, retry_after_max=30)).health()
    assert waits == [] and len(current[0].seen) == 1


def test_connection_errors_are_retried_then_raised() -> None:
    waits: list[tuple[int, float, str]] = []
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RecsvcConnectionError) as err:
        RecsvcClient(url, retry=_policy(waits, max_retries=2, backoff_base=0.01, jitter=False)).health()
    assert [(a, d) for a, d, _ in waits] == [(0, 0.01), (1, 0.02)]
    assert all(r == "ConnectError" for _, _, r in waits)
    assert err.value.status is None and err.value.request_id


def test_async_client_honours_retry_after(server: tuple[str, list[Script]]) -> None:
    url, current = server
    current.append(Script([_unavailable("1"), _unavailable("0"), (200, {}, HEALTHY)]))
    waits: list[tuple[int, float, str]] = []

    async def main() -> str:
        async with AsyncRecsvcClient(url, retry=_policy(waits)) as client:
            return (await client.health()).status

    assert asyncio.run(main()) == "ok"
    assert [(a, d) for a, d, _ in waits] == [(0, 1.0), (1, 0.0)]


def test_backoff_and_retry_after_arithmetic() -> None:
    p = RetryPolicy(backoff_base=0.5, backoff_max=3.0, jitter=False)
    assert [p.backoff(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(backoff_base=1.0, backoff_max=100.0)
    assert jittered.backoff(3, rng=lambda: 0.0) == 4.0 and jittered.backoff(3, rng=lambda: 1.0) == 8.0
    assert p.delay(0, {"retry-after": "7"}) == 7.0
    assert p.delay(2, {"Retry-After": "soon"}) == 2.0  # unreadable -> backoff
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 12, usegmt=True), now=now) == pytest.approx(12.0)
    assert parse_retry_after(formatdate(now - 5, usegmt=True), now=now) == 0.0
    assert RetryPolicy(retry_after_max=10).delay(0, {"Retry-After": "11"}) is None
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
