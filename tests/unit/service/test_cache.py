"""Response caches: key canonicalisation, LRU + TTL in process, and the same contract on real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from service.stores.cache import MemoryCache, RedisCache, cache_key


def test_key_is_canonical_and_versioned() -> None:
    a = cache_key("p", "items_v1", "m1", {"k": 10, "history": ["a", "b"]})
    b = cache_key("p", "items_v1", "m1", {"history": ["a", "b"], "k": 10})
    assert a == b and a.startswith("p:rec:items_v1:m1:")
    assert cache_key("p", "items_v2", "m1", {"k": 10, "history": ["a", "b"]}) != a  # alias swap -> new key
    assert cache_key("p", "items_v1", "m1", {"k": 10, "history": ["b", "a"]}) != a  # order of history matters


def test_memory_cache_lru_and_ttl() -> None:
    async def go() -> None:
        c = MemoryCache(max_entries=2)
        await c.set("a", {"v": 1}, 60)
        await c.set("b", {"v": 2}, 60)
        assert await c.get("a") == {"v": 1}  # a is now most recent
        await c.set("c", {"v": 3}, 60)  # evicts b
        assert await c.get("b") is None and await c.get("a") == {"v": 1} and len(c) == 2
        await c.set("short", {"v": 4}, 1)
        c._data["short"] = (time.monotonic() - 1, c._data["short"][1])  # expire it
        assert await c.get("short") is None
        await c.set("zero", {"v": 5}, 0)  # ttl 0 disables caching
        assert await c.get("zero") is None
        got = await c.get("a")
        assert got is not None
        got["v"] = 99  # a caller mutating a hit does not change the cache
        assert await c.get("a") == {"v": 1}

    asyncio.run(go())


@pytest.mark.integration
def test_redis_cache_round_trip_and_expiry(redis_url: str, redis_prefix: str) -> None:
    async def go() -> None:
        client: Any = aioredis.from_url(redis_url, decode_responses=True)
        try:
            c = RedisCache(client)
            key = f"{redis_prefix}:k"
            assert await c.get(key) is None
            await c.set(key, {"items": [1, 2]}, 30)
            assert await c.get(key) == {"items": [1, 2]}
            assert 0 < await client.ttl(key) <= 30
        finally:
            await client.aclose()

    asyncio.run(go())


def test_redis_cache_failure_is_a_miss() -> None:
    async def go() -> None:
        client: Any = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        try:
            c = RedisCache(client)
            assert await c.get("x") is None  # connection refused -> miss, not an error
            await c.set("x", {"a": 1}, 10)
        finally:
            await client.aclose()

    asyncio.run(go())
