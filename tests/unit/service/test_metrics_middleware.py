"""MetricsMiddleware counts a request before its last response byte leaves (service/api/metrics.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.api.metrics import Metrics, MetricsMiddleware


def _count(metrics: Metrics, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "recsvc_requests_total", {"route": "<unmatched>", "method": "GET", "status": status}
    )
    return value or 0.0


def test_a_request_is_counted_before_the_client_can_have_its_answer() -> None:
    metrics = Metrics()
    seen: list[tuple[bool, float]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        await asyncio.sleep(0)  # work after the response (background tasks) must not delay the count

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            seen.append((message.get("more_body", False), _count(metrics, "204")))

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    asyncio.run(MetricsMiddleware(app, metrics)({"type": "http", "method": "GET", "path": "/x"}, receive, send))
    assert seen == [(True, 0.0), (False, 1.0)]  # counted once, before the last chunk went out
    assert _count(metrics, "204") == 1.0


def test_a_request_without_a_complete_response_is_counted_once_as_500() -> None:
    metrics = Metrics()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def send(message: Any) -> None:  # pragma: no cover - nothing is sent
        raise AssertionError(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(MetricsMiddleware(app, metrics)({"type": "http", "method": "GET", "path": "/x"}, receive, send))
    assert _count(metrics, "500") == 1.0
