"""Reindex lock and job state: Redis when configured (shared by every worker), else in-process.

The lock is ``SET key job_id NX PX ttl``; only its holder may renew or release
it (compare-and-pexpire / compare-and-delete Lua scripts), so a job that
outlived its TTL can never release a lock another job took since.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis

JobStatus = Literal["queued", "running", "succeeded", "failed"]

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class JobStore(Protocol):
    async def acquire_reindex_lock(self, job_id: str, ttl_s: int) -> bool: ...

    async def renew_reindex_lock(self, job_id: str, ttl_s: int) -> bool: ...

    async def release_reindex_lock(self, job_id: str) -> bool: ...

    async def reindex_lock_holder(self) -> str | None: ...

    async def save_job(self, job: Job) -> None: ...

    async def get_job(self, job_id: str) -> Job | None: ...


class MemoryJobStore:
    """One process: a lock with an owner and expiry, and a bounded dict of jobs."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._holder: str | None = None
        self._expires = 0.0
        self._jobs: OrderedDict[str, str] = OrderedDict()

    def _current(self) -> str | None:
        if self._holder is not None and time.monotonic() >= self._expires:
            self._holder = None
        return self._holder

    async def acquire_reindex_lock(self, job_id: str, ttl_s: int) -> bool:
        with self._mutex:
            if self._current() is not None:
                return False
            self._holder, self._expires = job_id, time.monotonic() + ttl_s
            return True

    async def renew_reindex_lock(self, job_id: str, ttl_s: int) -> bool:
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
            while len(self._jobs) > MEMORY_JOBS:
                self._jobs.popitem(last=False)

    async def get_job(self, job_id: str) -> Job | None:
        with self._mutex:
            raw = self._jobs.get(job_id)
        return None if raw is None else Job.from_dict(json.loads(raw))


class RedisJobStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.lock_key = f"{prefix}:reindex:lock"
        self.job_prefix = f"{prefix}:job:"
        self._release = client.register_script(_RELEASE_LUA)
        self._renew = client.register_script(_RENEW_LUA)

    async def acquire_reindex_lock(self, job_id: str, ttl_s: int) -> bool:
        return bool(await self.client.set(self.lock_key, job_id, nx=True, px=int(ttl_s * 1000)))

    async def renew_reindex_lock(self, job_id: str, ttl_s: int) -> bool:
        return bool(await self._renew(keys=[self.lock_key], args=[job_id, int(ttl_s * 1000)]))

    async def release_reindex_lock(self, job_id: str) -> bool:
        return bool(await self._release(keys=[self.lock_key], args=[job_id]))

    async def reindex_lock_holder(self) -> str | None:
        raw = await self.client.get(self.lock_key)
        return None if raw is None else str(raw)

    async def save_job(self, job: Job) -> None:
        await self.client.set(self.job_prefix + job.id, json.dumps(job.to_dict()), ex=JOB_TTL_S)

    async def get_job(self, job_id: str) -> Job | None:
        raw = await self.client.get(self.job_prefix + job_id)
        return None if raw is None else Job.from_dict(json.loads(raw))
