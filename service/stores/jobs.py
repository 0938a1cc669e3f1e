"""Reindex lease and job state: Redis when configured (shared by every worker), else in-process.

The lock is a short lease: ``SET key job_id NX PX lease``, renewed by the owning worker every
lease/3 while the job runs. Only its holder may renew or release it (compare-and-pexpire /
compare-and-delete Lua scripts), so a job that outlived its lease can never release a lock
another job took since. A job record that says queued/running while the lease is held by
someone else (or nobody) belongs to a dead owner: :class:`service.reindex.ReindexManager`
marks it failed (``abandoned``). Jobs not yet finished are listed in an "active" set so they
can be found after their owner died.

Cancelling works across workers: a cancel request is a flag next to the job record; the owner
polls it with its lease renewals.

With Redis down every call raises :class:`DependencyUnavailableError` (503
``redis_unavailable``), never a bare connection error.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.errors import DependencyUnavailableError
from service.stores.redis_link import RedisHealth

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE_STATUSES = ("queued", "running")

_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

_RENEW_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

JOB_TTL_S = 7 * 24 * 3600  # how long finished jobs stay queryable in Redis
CANCEL_TTL_S = 3600  # how long an unanswered cancel request stays
MEMORY_JOBS = 1000  # how many jobs the in-process store keeps


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Job:
    id: str
    status: JobStatus = "queued"
    stage: str = "queued"
    progress: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    collection: str | None = None
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None  # worker id that runs it (renews its lease)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class JobStore(Protocol):
    async def acquire_reindex_lock(self, job_id: str, ttl_s: float) -> bool: ...

    async def renew_reindex_lock(self, job_id: str, ttl_s: float) -> bool: ...

    async def release_reindex_lock(self, job_id: str) -> bool: ...

    async def reindex_lock_holder(self) -> str | None: ...

    async def save_job(self, job: Job) -> None: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def active_jobs(self) -> list[str]: ...

    async def request_cancel(self, job_id: str) -> None: ...

    async def cancel_requested(self, job_id: str) -> bool: ...


class MemoryJobStore:
    """One process: a lock with an owner and expiry, and a bounded dict of jobs."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holder: str | None = None
        self._expires = 0.0
        self._jobs: OrderedDict[str, str] = OrderedDict()
        self._active: set[str] = set()
        self._cancel: set[str] = set()

    def _current(self) -> str | None:
        if self._holder is not None and time.monotonic() >= self._expires:
            self._holder = None
        return self._holder

    async def acquire_reindex_lock(self, job_id: str, ttl_s: float) -> bool:
        with self._mutex:
            if self._current() is not None:
                return False
            self._holder, self._expires = job_id, time.monotonic() + ttl_s
            return True

    async def renew_reindex_lock(self, job_id: str, ttl_s: float) -> bool:
        with self._mutex:
            if self._current() != job_id:
                return False
            self._expires = time.monotonic() + ttl_s
            return True

    async def release_reindex_lock(self, job_id: str) -> bool:
        with self._mutex:
            if self._current() != job_id:
                return False
            self._holder = None
            return True

    async def reindex_lock_holder(self) -> str | None:
        with self._mutex:
            return self._current()

    async def save_job(self, job: Job) -> None:
        with self._mutex:
            self._jobs[job.id] = json.dumps(job.to_dict())
            self._jobs.move_to_end(job.id)
            if job.active:
                self._active.add(job.id)
            else:
                self._active.discard(job.id)
                self._cancel.discard(job.id)
            while len(self._jobs) > MEMORY_JOBS:
                old, _ = self._jobs.popitem(last=False)
                self._active.discard(old)

    async def get_job(self, job_id: str) -> Job | None:
        with self._mutex:
            raw = self._jobs.get(job_id)
        return None if raw is None else Job.from_dict(json.loads(raw))

    async def active_jobs(self) -> list[str]:
        with self._mutex:
            return sorted(self._active)

    async def request_cancel(self, job_id: str) -> None:
        with self._mutex:
            self._cancel.add(job_id)

    async def cancel_requested(self, job_id: str) -> bool:
        with self._mutex:
            return job_id in self._cancel


P = ParamSpec("P")
R = TypeVar("R")


def _redis_call(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Redis errors -> 503 ``redis_unavailable`` (and the health flag follows the outcome)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self = args[0]
        assert isinstance(self, RedisJobStore)
        try:
            out = await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            self.health.mark_down(exc)
            raise DependencyUnavailableError(
                "Redis (reindex lease and job records) does not answer; retry when it is back",
                {"component": "redis", "reason": exc.__class__.__name__},
            ) from exc
        self.health.mark_up()
        return out

    return wrapper


class RedisJobStore:
    def __init__(self, client: aioredis.Redis, prefix: str, health: RedisHealth | None = None) -> None:
        self.client = client
        self.health = health if health is not None else RedisHealth()
        self.lock_key = f"{prefix}:reindex:lock"
        self.job_prefix = f"{prefix}:job:"
        self.active_key = f"{prefix}:jobs:active"
        self.cancel_prefix = f"{prefix}:cancel:"
        self._release = client.register_script(_RELEASE_LUA)
        self._renew = client.register_script(_RENEW_LUA)

    @_redis_call
    async def acquire_reindex_lock(self, job_id: str, ttl_s: float) -> bool:
        return bool(await self.client.set(self.lock_key, job_id, nx=True, px=int(ttl_s * 1000)))

    @_redis_call
    async def renew_reindex_lock(self, job_id: str, ttl_s: float) -> bool:
        return bool(await self._renew(keys=[self.lock_key], args=[job_id, int(ttl_s * 1000)]))

    @_redis_call
    async def release_reindex_lock(self, job_id: str) -> bool:
        return bool(await self._release(keys=[self.lock_key], args=[job_id]))

    @_redis_call
    async def reindex_lock_holder(self) -> str | None:
        raw = await self.client.get(self.lock_key)
        return None if raw is None else str(raw)

    @_redis_call
    async def save_job(self, job: Job) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.job_prefix + job.id, json.dumps(job.to_dict()), ex=JOB_TTL_S)
            if job.active:
                pipe.sadd(self.active_key, job.id)
            else:
                pipe.srem(self.active_key, job.id)
                pipe.delete(self.cancel_prefix + job.id)
            await pipe.execute()

    @_redis_call
    async def get_job(self, job_id: str) -> Job | None:
        raw = await self.client.get(self.job_prefix + job_id)
        return None if raw is None else Job.from_dict(json.loads(raw))

    @_redis_call
    async def active_jobs(self) -> list[str]:
        members = await self.client.smembers(self.active_key)
        return sorted(str(m) for m in members)

    @_redis_call
    async def request_cancel(self, job_id: str) -> None:
        await self.client.set(self.cancel_prefix + job_id, "1", ex=CANCEL_TTL_S)

    @_redis_call
    async def cancel_requested(self, job_id: str) -> bool:
        return bool(await self.client.exists(self.cancel_prefix + job_id))
