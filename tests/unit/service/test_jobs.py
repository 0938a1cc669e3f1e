"""Reindex lock and job store: in-process and on a real Redis, same contract."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from service.stores.jobs import Job, JobStore, MemoryJobStore, RedisJobStore


async def _contract(store: JobStore, sleep_past_ttl: Callable[[], Awaitable[None]]) -> None:
    assert await store.acquire_reindex_lock("j1", 60)
    assert not await store.acquire_reindex_lock("j2", 60)  # held
    assert await store.reindex_lock_holder() == "j1"
    assert not await store.release_reindex_lock("j2")  # only the holder releases
    assert not await store.renew_reindex_lock("j2", 60)
    assert await store.renew_reindex_lock("j1", 60)
    assert await store.release_reindex_lock("j1")
    assert await store.reindex_lock_holder() is None
    assert await store.acquire_reindex_lock("j2", 1)
    await sleep_past_ttl()
    assert await store.acquire_reindex_lock("j3", 60)  # expired lock is free again
    assert not await store.release_reindex_lock("j2")  # and its old holder cannot free the new one
    assert await store.reindex_lock_holder() == "j3"

    job = Job(id="j3", status="running", stage="encoding", progress=0.25, stats={"items": 3})
    await store.save_job(job)
    back = await store.get_job("j3")
    assert back == job
    assert await store.get_job("nope") is None

    # unfinished jobs are listed (so a dead owner's job can be found), finished ones are not
    assert await store.active_jobs() == ["j3"]
    assert not await store.cancel_requested("j3")
    await store.request_cancel("j3")  # from any worker
    assert await store.cancel_requested("j3")
    await store.save_job(Job(id="j3", status="cancelled", stage="cancelled during encoding"))
    assert await store.active_jobs() == [] and not await store.cancel_requested("j3")


def test_memory_job_store() -> None:
    store = MemoryJobStore()

    async def past_ttl() -> None:
        store._expires = 0.0  # the clock moved past the TTL

    asyncio.run(_contract(store, past_ttl))


@pytest.mark.integration
def test_redis_job_store(redis_url: str, redis_prefix: str) -> None:
    async def go() -> None:
        client: Any = aioredis.from_url(redis_url, decode_responses=True)
        try:
            store = RedisJobStore(client, redis_prefix)

            async def past_ttl() -> None:
                await asyncio.sleep(1.1)

            await _contract(store, past_ttl)
            assert await client.ttl(f"{redis_prefix}:job:j3") > 0  # finished jobs expire eventually
        finally:
            await client.aclose()

    asyncio.run(go())


@pytest.mark.integration
def test_redis_lock_is_exclusive_across_clients(redis_url: str, redis_prefix: str) -> None:
    """Two workers (two connections) race for the lock: exactly one wins."""

    async def go() -> None:
        clients: list[Any] = [aioredis.from_url(redis_url, decode_responses=True) for _ in range(8)]
        try:
            stores = [RedisJobStore(c, redis_prefix) for c in clients]
            wins = await asyncio.gather(*(s.acquire_reindex_lock(f"w{i}", 30) for i, s in enumerate(stores)))
            assert sum(wins) == 1
        finally:
            for c in clients:
                await c.aclose()

    asyncio.run(go())
