"""Redis as an optional accelerator: short timeouts, a health flag, URL redaction.

Redis carries the response cache, the reindex lease + job records and the "alias moved"
messages. None of them is needed to answer ``/recommend`` or ``/embed``, so losing Redis
(at start or mid-traffic) degrades the service instead of failing it:

* every command has a bounded connect/read timeout and at most one immediate retry (the
  redis-py default retries three times with up to seconds of back-off);
* :class:`RedisHealth` records the last outcome; the cache skips Redis for ``retry_s`` after a
  failure (a circuit breaker), so an outage costs requests at most one timeout per window;
* the connection pool reconnects by itself on the next command once Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0`` (no password in logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    auth = f"{user}:***" if parts.password is not None else (user or "***")
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))


def open_redis(url: str, timeout_s: float, *, for_pubsub: bool = False) -> aioredis.Redis:
    """A client with bounded timeouts. The pub/sub client has no read timeout (it blocks waiting
    for messages; a stopped server closes the socket, which ends the read at once)."""
    return aioredis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=None if for_pubsub else timeout_s,
        retry=Retry(NoBackoff(), 1),
    )


class RedisHealth:
    """Whether Redis answered last time; drives /readyz's ``degraded`` list and the gauge."""

    def __init__(self, retry_s: float = 1.0, on_change: Callable[[bool], None] | None = None) -> None:
        self.retry_s = retry_s
        self.on_change = on_change
        self.up = True
        self._down_since = 0.0
        self._last_try = 0.0

    def mark_up(self) -> None:
        if not self.up:
            logger.warning("redis is reachable again (was down %.1fs)", time.monotonic() - self._down_since)
            self.up = True
            if self.on_change is not None:
                self.on_change(True)

    def mark_down(self, exc: BaseException) -> None:
        self._last_try = time.monotonic()
        if self.up:
            logger.warning("redis unreachable (%s): degraded to the in-process cache", exc.__class__.__name__)
            self.up = False
            self._down_since = self._last_try
            if self.on_change is not None:
                self.on_change(False)

    def should_try(self) -> bool:
        """True when Redis is up, or at most once per ``retry_s`` while it is down (the probe)."""
        if self.up:
            return True
        now = time.monotonic()
        if now - self._last_try >= self.retry_s:
            self._last_try = now
            return True
        return False
