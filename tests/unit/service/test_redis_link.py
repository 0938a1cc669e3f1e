"""Redis as an optional accelerator: URL redaction, the health flag, and what the cache and the
job store do when nothing listens on the Redis port (a real closed loopback port, no mock)."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.errors import DependencyUnavailableError
from service.stores.cache import MemoryCache, RedisCache
from service.stores.jobs import RedisJobStore
from service.stores.redis_link import RedisHealth, open_redis, redact_url
from tests.conftest import _free_port


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://user:s3cret@10.0.0.1:6380/2?ssl=1", "redis://user:***@10.0.0.1:6380/2?ssl=1"),
        ("rediss://token@host/0", "rediss://token@host/0"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)


def test_health_probes_once_per_window_while_down() -> None:
    changes: list[bool] = []
    h = RedisHealth(retry_s=0.2, on_change=changes.append)
    assert h.should_try()
    h.mark_down(ConnectionError("x"))
    assert not h.up and not h.should_try()  # inside the window: skip Redis
    time.sleep(0.25)
    assert h.should_try() and not h.should_try()  # one probe per window
    h.mark_up()
    assert h.up and h.should_try() and changes == [False, True]


def test_cache_and_jobs_without_redis_listening() -> None:
    async def go() -> None:
        client = open_redis(f"redis://127.0.0.1:{_free_port()}/0", 0.25)
        health = RedisHealth(retry_s=60)
        try:
            cache = RedisCache(client, health, MemoryCache(10))
            await cache.set("k", {"v": 1}, 30)  # falls back to the in-process LRU
            assert await cache.get("k") == {"v": 1}
            assert not health.up
            with pytest.raises(DependencyUnavailableError) as info:
                await RedisJobStore(client, "p", health).acquire_reindex_lock("j", 5)
            assert info.value.status_code == 503 and info.value.code == "redis_unavailable"
        finally:
            await client.aclose()

    asyncio.run(go())
