"""Prometheus metrics: one registry per app (tests build many apps in one process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from service.encoding.batcher import DynamicBatcher

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
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
        self.recommend_latency = Histogram(
            "recsvc_recommend_latency_seconds",
            "Latency of answered /recommend requests (scoring + response building, in the route), by mode.",
            ["mode"],
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
        self.encoder_batch = Histogram(
            "recsvc_encoder_batch_texts",
            "Texts per encoder model call, by lane (interactive | bulk).",
            ["lane"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.abandoned = Counter(
            "recsvc_requests_abandoned",
            "Requests cancelled before they finished: the client disconnected or the deadline passed.",
            ["reason"],
            registry=self.registry,
        )
        self.degraded = Gauge(
            "recsvc_degraded",
            "1 while an optional component (redis) is down and the service runs degraded, else 0.",
            ["component"],
            registry=self.registry,
        )

    def set_degraded(self, component: str, down: bool) -> None:
        self.degraded.labels(component=component).set(1.0 if down else 0.0)

    def on_encoder_batch(self, lane: str, texts: int) -> None:
        self.encoder_batch.labels(lane=lane).observe(texts)

    def on_abandoned(self, reason: str) -> None:
        self.abandoned.labels(reason=reason).inc()

    def track_batcher(self, batcher: DynamicBatcher) -> None:
        """Queue depth, shed and cancelled counts of the encoder batcher, read at scrape time."""
        self.registry.register(_BatcherCollector(batcher))

    def on_recommend(self, mode: str, seconds: float) -> None:
        self.recommend_latency.labels(mode=mode).observe(seconds)

    def on_cache(self, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

    def on_reindex_finished(self, status: str) -> None:
        self.reindex.labels(status=status).inc()

    def track_index_size(self, fn: Callable[[], int]) -> None:
        self.index_size.set_function(fn)


class _BatcherCollector(Collector):
    def __init__(self, batcher: DynamicBatcher) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[Metric]:
        stats = self.batcher.stats.lanes
        queue = GaugeMetricFamily(
            "recsvc_encoder_queue_texts", "Texts waiting for the encoder, by lane.", labels=["lane"]
        )
        shed = CounterMetricFamily(
            "recsvc_encoder_shed_requests", "Requests refused with 503 (queue full), by lane.", labels=["lane"]
        )
        shed_texts = CounterMetricFamily(
            "recsvc_encoder_shed_texts", "Texts of the requests refused with 503, by lane.", labels=["lane"]
        )
        dropped = CounterMetricFamily(
            "recsvc_encoder_dropped_requests",
            "Requests whose caller left (cancelled: disconnect; expired: deadline) while queued, by lane.",
            labels=["lane", "reason"],
        )
        dropped_texts = CounterMetricFamily(
            "recsvc_encoder_dropped_texts",
            "Texts removed before encoding because their caller left, by lane and reason.",
            labels=["lane", "reason"],
        )
        encoded = CounterMetricFamily("recsvc_encoder_texts", "Texts encoded, by lane.", labels=["lane"])
        for lane, st in stats.items():
            queue.add_metric([lane], self.batcher.queued_texts(lane))
            shed.add_metric([lane], st.shed_requests)
            shed_texts.add_metric([lane], st.shed_texts)
            dropped.add_metric([lane, "cancelled"], st.cancelled_requests)
            dropped.add_metric([lane, "expired"], st.expired_requests)
            dropped_texts.add_metric([lane, "cancelled"], st.cancelled_texts)
            dropped_texts.add_metric([lane, "expired"], st.expired_texts)
            encoded.add_metric([lane], st.texts)
        yield from (queue, shed, shed_texts, dropped, dropped_texts, encoded)


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
        counted = [False]
        t0 = time.perf_counter()

        def record() -> None:
            # Once per request, and before the response's last byte leaves: a client that has its answer
            # and then reads /metrics (from this or any other process) finds the request counted.
            if counted[0]:
                return
            counted[0] = True
            route = scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "GET")
            self.metrics.latency.labels(route=path, method=method).observe(time.perf_counter() - t0)
            self.metrics.requests.labels(route=path, method=method, status=str(status[0])).inc()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            record()  # no complete response (an error, a dropped client): counted when the app returns
