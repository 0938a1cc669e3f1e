""" "The alias moved" messages between workers.

With Redis every worker subscribes to ``{prefix}:index`` and reloads its served
catalog when another worker swapped the alias; without Redis there is one
process and the message goes straight to the in-process subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexChanged:
    collection: str
    previous: str | None
    model_version: str
    job_id: str | None = None
    origin: str = ""  # id of the worker that swapped the alias

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> IndexChanged:
        d = json.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


Handler = Callable[[IndexChanged], Awaitable[None]]


@dataclass(frozen=True)
class ItemsChanged:
    """Items API change on one worker: the others apply the same records (item log lines, with
    their vectors) to their served snapshots."""

    collection: str
    records: list[dict[str, Any]]
    origin: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ItemsChanged:
        d = json.loads(raw)
        return cls(collection=str(d["collection"]), records=list(d["records"]), origin=str(d.get("origin", "")))


class RedisItemEvents:
    """Pub/sub on ``{prefix}:items`` (best effort: a worker that misses a message catches up at its
    next reload, and the item log is the record)."""

    def __init__(self, client: aioredis.Redis, prefix: str, publisher: aioredis.Redis) -> None:
        self.client = client
        self.publisher = publisher
        self.channel = f"{prefix}:items"
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, event: ItemsChanged) -> None:
        await self.publisher.publish(self.channel, event.to_json())

    async def start(self, handler: Callable[[ItemsChanged], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._listen(handler), name="recsvc-item-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=2.0)

    async def _listen(self, handler: Callable[[ItemsChanged], Awaitable[None]]) -> None:
        backoff = 0.5
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        await handler(ItemsChanged.from_json(message["data"]))
                    except Exception:
                        logger.exception("items message handler failed")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("items subscription lost (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class IndexEvents(Protocol):
    async def publish(self, event: IndexChanged) -> None: ...

    async def start(self, handler: Handler) -> None: ...

    async def close(self) -> None: ...


class MemoryIndexEvents:
    def __init__(self) -> None:
        self._handler: Handler | None = None

    async def publish(self, event: IndexChanged) -> None:
        if self._handler is not None:
            await self._handler(event)

    async def start(self, handler: Handler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None


class RedisIndexEvents:
    """Pub/sub on ``{prefix}:index``. The subscription survives Redis outages: it retries with
    back-off, and after every re-subscription ``on_resubscribe`` runs (the reindex manager compares
    the alias with what it serves), since messages published while it was gone are lost."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        on_resubscribe: Callable[[], Awaitable[None]] | None = None,
        start_wait_s: float = 2.0,
        publisher: aioredis.Redis | None = None,
    ) -> None:
        self.client = client  # subscribes: no read timeout (it waits for messages)
        self.publisher = publisher if publisher is not None else client  # bounded timeouts
        self.channel = f"{prefix}:index"
        self.on_resubscribe = on_resubscribe
        self.start_wait_s = start_wait_s
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, event: IndexChanged) -> None:
        await self.publisher.publish(self.channel, event.to_json())

    async def start(self, handler: Handler) -> None:
        self._task = asyncio.create_task(self._listen(handler), name="recsvc-index-events")
        # Subscribed before start() returns (so no swap published after it can be missed) unless
        # Redis is down: then the service starts degraded and the listener keeps retrying.
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout=self.start_wait_s)
        except TimeoutError:
            logger.warning("index messages: not subscribed yet (Redis down?); retrying in the background")

    async def _listen(self, handler: Handler) -> None:
        backoff = 0.5
        subscribed_before = False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                backoff = 0.5
                if subscribed_before and self.on_resubscribe is not None:
                    logger.info("index messages: subscribed again; checking the alias for missed swaps")
                    try:
                        await self.on_resubscribe()
                    except Exception:
                        logger.exception("resync after re-subscription failed")
                subscribed_before = True
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        event = IndexChanged.from_json(message["data"])
                    except (ValueError, TypeError) as exc:
                        logger.warning("ignoring malformed index message: %s", exc)
                        continue
                    try:
                        await handler(event)
                    except Exception:
                        logger.exception("index message handler failed for %s", event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("index subscription lost (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
