"""Response cache for /recommend: Redis when configured, else a bounded in-process LRU with TTL.

Keys are ``{prefix}:rec:{index_version}:{model_version}:{sha256(canonical request JSON)}`` where
the index version is the served snapshot's ``{collection}@{content digest}``
(``CatalogSnapshot.version``): an alias swap changes the collection and every items API change
(upsert/delete, on this worker or applied from another worker's message) changes the digest, so
every entry computed on an older snapshot is simply never read again (and expires by TTL) — no
explicit invalidation, nothing to broadcast. The digest depends only on the items served, not on
the order changes arrived in, so workers sharing Redis share entries exactly when they serve the
same items.
A cache that fails (Redis down) degrades to the in-process LRU until Redis answers
again; it never fails a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.stores.redis_link import RedisHealth

logger = logging.getLogger(__name__)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key(prefix: str, index_version: str, model_version: str, request: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()
    return f"{prefix}:rec:{index_version}:{model_version}:{digest}"


class ResponseCache(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def set(self, key: str, value: Mapping[str, Any], ttl_s: int) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """Bounded LRU with per-entry expiry; for one process (no Redis)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> dict[str, Any] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, raw = entry
        if time.monotonic() >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        value: dict[str, Any] = json.loads(raw)
        return value

    async def set(self, key: str, value: Mapping[str, Any], ttl_s: int) -> None:
        if ttl_s <= 0 or self.max_entries <= 0:
            return
        # Stored as JSON so a hit can never alias a mutable object handed out before.
        self._data[key] = (time.monotonic() + ttl_s, canonical_json(value))
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Redis, with the in-process LRU standing in while Redis is down (``RedisHealth``: a failed
    call marks it down and Redis is skipped for ``retry_s``; the next successful call marks it
    up again). A request never fails and never waits longer than one Redis timeout for the cache."""

    def __init__(
        self, client: aioredis.Redis, health: RedisHealth | None = None, fallback: MemoryCache | None = None
    ) -> None:
        self.client = client
        self.health = health if health is not None else RedisHealth()
        self.fallback = fallback if fallback is not None else MemoryCache(1000)

    async def get(self, key: str) -> dict[str, Any] | None:
        if not self.health.should_try():
            return await self.fallback.get(key)
        try:
            raw = await self.client.get(key)
        except (RedisError, OSError) as exc:
            self.health.mark_down(exc)
            return await self.fallback.get(key)
        self.health.mark_up()
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def set(self, key: str, value: Mapping[str, Any], ttl_s: int) -> None:
        if ttl_s <= 0:
            return
        if not self.health.should_try():
            await self.fallback.set(key, value, ttl_s)
            return
        try:
            await self.client.set(key, canonical_json(value), ex=ttl_s)
        except (RedisError, OSError) as exc:
            self.health.mark_down(exc)
            await self.fallback.set(key, value, ttl_s)
            return
        self.health.mark_up()

    async def close(self) -> None:
        """The Redis client is shared; its owner closes it."""
        await self.fallback.close()
