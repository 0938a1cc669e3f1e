"""Prometheus metrics: one registry per app (tests build many apps in one process)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "recsvc_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsvc_request_latency_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_hits = Counter("recsvc_cache_hits", "Response cache hits (/recommend).", registry=self.registry)
        self.cache_misses = Counter(
            "recsvc_cache_misses", "Response cache misses (/recommend).", registry=self.registry
        )
        self.reindex = Counter("recsvc_reindex", "Finished reindex jobs by status.", ["status"], registry=self.registry)
        self.index_size = Gauge("recsvc_index_size", "Items in the served collection.", registry=self.registry)
        self.embedded_texts = Counter("recsvc_embedded_texts", "Texts encoded by /embed.", registry=self.registry)
        self.degraded = Gauge(
            "recsvc_degraded",
            "1 while an optional component (redis) is down and the service runs degraded, else 0.",
            ["component"],
            registry=self.registry,
        )

    def set_degraded(self, component: str, down: bool) -> None:
        self.degraded.labels(component=component).set(1.0 if down else 0.0)

    def on_cache(self, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

    def on_reindex_finished(self, status: str) -> None:
        self.reindex.labels(status=status).inc()

    def track_index_size(self, fn: Callable[[], int]) -> None:
        self.index_size.set_function(fn)


class MetricsMiddleware:
    """Counts and times every request under its route template (``/admin/reindex/{job_id}``),
    so ids in paths do not explode the label set; unmatched paths count as ``<unmatched>``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]
        t0 = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "GET")
            self.metrics.latency.labels(route=path, method=method).observe(time.perf_counter() - t0)
            self.metrics.requests.labels(route=path, method=method, status=str(status[0])).inc()
