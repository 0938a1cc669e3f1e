""" "The alias moved" and "items changed" messages between workers.

With Redis every worker subscribes to ``{prefix}:index`` and reloads its served
catalog when another worker swapped the alias, and to ``{prefix}:items`` to apply
another worker's items API changes; without Redis there is one process and the
message goes straight to the in-process subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson
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
        # orjson and no asdict() deep copy: the records carry float vectors (json.dumps: ~40 ms a batch of 50)
        return orjson.dumps({"collection": self.collection, "records": self.records, "origin": self.origin}).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> ItemsChanged:
        d = orjson.loads(raw)
        return cls(collection=str(d["collection"]), records=list(d["records"]), origin=str(d.get("origin", "")))


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


class _Message(Protocol):
    def to_json(self) -> str: ...


E = TypeVar("E", bound=_Message)


class _RedisChannel(Generic[E]):
    """Pub/sub on ``{prefix}:{kind}``: one listener task that survives Redis outages (it retries with
    back-off) and, after every re-subscription, runs ``on_resubscribe`` (messages published while it
    was gone are lost). A malformed message is skipped, a failing handler logged; neither ends it."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        kind: str,
        decode: Callable[[str | bytes], E],
        *,
        on_resubscribe: Callable[[], Awaitable[None]] | None = None,
        start_wait_s: float = 2.0,
        publisher: aioredis.Redis | None = None,
    ) -> None:
        self.client = client  # subscribes: no read timeout (it waits for messages)
        self.publisher = publisher if publisher is not None else client  # bounded timeouts
        self.kind = kind
        self.channel = f"{prefix}:{kind}"
        self.decode = decode
        self.on_resubscribe = on_resubscribe
        self.start_wait_s = start_wait_s
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def publish(self, event: E) -> None:
        await self.publisher.publish(self.channel, event.to_json())

    async def start(self, handler: Callable[[E], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._listen(handler), name=f"recsvc-{self.kind}-events")
        # Subscribed before start() returns (so no message published after it can be missed) unless
        # Redis is down: then the service starts degraded and the listener keeps retrying.
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout=self.start_wait_s)
        except TimeoutError:
            logger.warning("%s messages: not subscribed yet (Redis down?); retrying in the background", self.kind)

    async def _listen(self, handler: Callable[[E], Awaitable[None]]) -> None:
        backoff = 0.5
        subscribed_before = False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                backoff = 0.5
                if subscribed_before and self.on_resubscribe is not None:
                    logger.info("%s messages: subscribed again; checking for missed changes", self.kind)
                    try:
                        await self.on_resubscribe()
                    except Exception:
                        logger.exception("resync after re-subscription failed")
                subscribed_before = True
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self._dispatch(message["data"], handler)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("%s subscription lost (%s); retrying in %.1fs", self.kind, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[attr-defined]

    async def _dispatch(self, data: str | bytes, handler: Callable[[E], Awaitable[None]]) -> None:
        try:
            event = self.decode(data)
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("ignoring malformed %s message: %s", self.kind, exc)
            return
        try:
            await handler(event)
        except Exception:
            logger.exception("%s message handler failed for %.200r", self.kind, event)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class RedisIndexEvents(_RedisChannel[IndexChanged]):
    """Alias-moved messages on ``{prefix}:index``; ``on_resubscribe`` (the reindex manager's resync)
    compares the alias with what this worker serves after a gap."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        on_resubscribe: Callable[[], Awaitable[None]] | None = None,
        start_wait_s: float = 2.0,
        publisher: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(
            client,
            prefix,
            "index",
            IndexChanged.from_json,
            on_resubscribe=on_resubscribe,
            start_wait_s=start_wait_s,
            publisher=publisher,
        )


class RedisItemEvents(_RedisChannel[ItemsChanged]):
    """Items API changes on ``{prefix}:items`` (best effort: a worker that misses a message catches
    up at its next reload, and the item log is the record)."""

    def __init__(self, client: aioredis.Redis, prefix: str, publisher: aioredis.Redis) -> None:
        super().__init__(client, prefix, "items", ItemsChanged.from_json, publisher=publisher)
