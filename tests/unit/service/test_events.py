"""Alias-moved messages over real Redis pub/sub, and in process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from service.stores.events import IndexChanged, MemoryIndexEvents, RedisIndexEvents


def test_message_round_trip() -> None:
    e = IndexChanged(collection="items_v2", previous="items_v1", model_version="m", job_id="j", origin="w1")
    assert IndexChanged.from_json(e.to_json()) == e


def test_memory_events_deliver_to_the_subscriber() -> None:
    async def go() -> None:
        got: list[IndexChanged] = []

        async def handler(e: IndexChanged) -> None:
            got.append(e)

        ev = MemoryIndexEvents()
        await ev.start(handler)
        await ev.publish(IndexChanged("items_v2", None, "m"))
        await ev.close()
        await ev.publish(IndexChanged("items_v3", None, "m"))
        assert [e.collection for e in got] == ["items_v2"]

    asyncio.run(go())


@pytest.mark.integration
def test_redis_events_reach_every_worker(redis_url: str, redis_prefix: str) -> None:
    async def go() -> None:
        clients: list[Any] = [aioredis.from_url(redis_url, decode_responses=True) for _ in range(3)]
        received: list[list[str]] = [[], []]
        done = asyncio.Event()

        def make_handler(i: int) -> Any:
            async def handler(e: IndexChanged) -> None:
                received[i].append(e.collection)
                if all(received):
                    done.set()

            return handler

        workers = [RedisIndexEvents(clients[i], redis_prefix) for i in range(2)]
        try:
            for i, w in enumerate(workers):
                await w.start(make_handler(i))
            await clients[2].publish(f"{redis_prefix}:index", "not json")  # ignored, listener survives
            await RedisIndexEvents(clients[2], redis_prefix).publish(IndexChanged("items_v7", "items_v6", "m"))
            await asyncio.wait_for(done.wait(), timeout=5)
            assert received == [["items_v7"], ["items_v7"]]
        finally:
            for w in workers:
                await w.close()
            for c in clients:
                await c.aclose()

    asyncio.run(go())
