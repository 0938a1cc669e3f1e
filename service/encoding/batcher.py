"""Dynamic micro-batching of encode calls: lanes, admission control, deadlines, a pipelined engine.

Concurrent requests each bring a few texts; running them one by one wastes the
batch dimension. :class:`DynamicBatcher` queues each caller's texts in a *lane*,
cuts the queued texts into *units* of at most ``max_batch`` texts (a large request
is split across units and reassembled), and runs the units on the encoder off the
event loop.

Lanes. ``interactive`` (``/recommend``: text history items, profile sentences) is
always served first; ``bulk`` (``/embed``, reindex) takes what is left. Each lane has
its own bounded queue, so a flood of bulk work can neither starve nor shed interactive
work. The run stage picks the next batch between every two model calls, so an
interactive batch waits at most for the one bulk batch already in the model.

Admission. A lane's queue holds at most ``max_queue_texts`` texts waiting to be
encoded; a request that would go past it is refused at once with :class:`QueueFullError`
(the service answers 503 + ``Retry-After``), before anything is queued. An empty queue
admits any request (so one request larger than the bound still runs).

Deadlines and cancellation. A caller may pass a ``deadline`` (``time.monotonic()``
seconds); past it, :class:`DeadlineExceededError` is raised. A caller that is cancelled
(its HTTP client went away, its deadline passed) has its queued texts removed from the
queue at once, and a batch whose every row belongs to callers that are gone is not run:
abandoned work costs nothing more once it is out of the model.

Starting. When nothing is running the first unit starts at once (a lone request never
waits); while the model is busy, arriving texts gather and form the next unit when it
frees up, so batches fill under load without a timer. ``max_wait_ms`` > 0 adds a fill
window before an idle start.

Engine. With an encoder that exposes its stages (:class:`service.encoding.base.StagedEncoder`,
e.g. ``OnnxEncoder``) and ``pipeline=True``, three threads overlap the stages as
infinity's batch handler does: the tokenizer thread tokenizes a unit and groups its
texts into length buckets (one model call each, padded only to the bucket's longest
text); the run thread runs one bucket at a time; the pool thread mean-pools and
normalises the previous bucket while the next one runs. Any other encoder (or
``pipeline=False``, the plain serial reference path) runs ``encoder.encode`` on the
unit in the run thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from service.encoding.base import Encoder, EncoderError, StagedEncoder

logger = logging.getLogger(__name__)

INTERACTIVE = "interactive"
BULK = "bulk"
LANES = (INTERACTIVE, BULK)  # served in this order


class QueueFullError(EncoderError):
    """The lane's queue is full: the request was not queued. ``retry_after_s``: a drain estimate."""

    def __init__(self, lane: str, queued: int, limit: int, asked: int, retry_after_s: int) -> None:
        super().__init__(
            f"the encoder's {lane} queue is full ({queued} texts waiting, limit {limit}; this request has {asked})"
        )
        self.lane = lane
        self.queued = queued
        self.limit = limit
        self.asked = asked
        self.retry_after_s = retry_after_s


class DeadlineExceededError(EncoderError):
    """The caller's deadline passed before its vectors were ready (its queued texts were dropped)."""


@dataclass
class LaneStats:
    """Counters of one lane since start."""

    requests: int = 0  # admitted
    texts: int = 0  # encoded (rows that went through the model)
    batches: int = 0  # model calls
    shed_requests: int = 0
    shed_texts: int = 0
    cancelled_requests: int = 0
    cancelled_texts: int = 0  # dropped before encoding (caller cancelled)
    expired_requests: int = 0
    expired_texts: int = 0  # dropped before encoding (deadline passed)


@dataclass
class BatcherStats:
    """Counters since start (read them for metrics and tests)."""

    requests: int = 0
    batches: int = 0
    texts: int = 0
    largest_batch: int = 0
    errors: int = 0
    lanes: dict[str, LaneStats] = field(default_factory=lambda: {lane: LaneStats() for lane in LANES})


@dataclass(eq=False)
class _Request:
    texts: list[str]
    lane: _Lane
    future: asyncio.Future[np.ndarray]
    deadline: float | None
    arrived: float
    out: np.ndarray | None = None  # [N, D], filled as units finish
    taken: int = 0  # texts handed to units
    pending: int = 0  # rows handed to units and not delivered yet
    gone: bool = False  # cancelled, expired or failed: nothing more is done for it

    @property
    def waiting(self) -> int:
        return len(self.texts) - self.taken


@dataclass(eq=False)
class _Segment:
    req: _Request
    start: int  # rows [start, end) of req
    end: int
    offset: int  # first row in the unit


@dataclass(eq=False)
class _Bucket:
    rows: np.ndarray  # unit row indices, [b] int64
    batch: Any = None  # the padded TokenBatch (staged encoders)


@dataclass(eq=False)
class _Unit:
    lane: _Lane
    segments: list[_Segment]
    texts: list[str]
    row_req: list[_Request]  # owner of every unit row
    out: np.ndarray | None = None  # [n, D]
    buckets_left: int = 0
    failed: bool = False


@dataclass(eq=False)
class _Lane:
    name: str
    max_queue_texts: int
    stats: LaneStats
    queue: deque[_Request] = field(default_factory=deque)
    queued_texts: int = 0
    preparing: int = 0  # units in the tokenizer stage
    ready: deque[tuple[_Unit, _Bucket]] = field(default_factory=deque)


class DynamicBatcher:
    """Merge concurrent :meth:`encode` calls into batches for one :class:`Encoder` (see module doc)."""

    def __init__(
        self,
        encoder: Encoder,
        *,
        max_batch: int = 64,
        max_wait_ms: float = 0.0,
        max_queue_texts: int = 1024,
        max_interactive_queue_texts: int = 256,
        pipeline: bool = True,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue_texts < 1 or max_interactive_queue_texts < 1:
            raise ValueError("queue limits must be >= 1")
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.staged = pipeline and isinstance(encoder, StagedEncoder)
        self.on_batch = on_batch
        self.stats = BatcherStats()
        limits = {INTERACTIVE: max_interactive_queue_texts, BULK: max_queue_texts}
        self._lanes = {name: _Lane(name, limits[name], self.stats.lanes[name]) for name in LANES}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tok: ThreadPoolExecutor | None = None
        self._run: ThreadPoolExecutor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._units: set[_Unit] = set()  # taken from a queue, not finished
        self._run_busy = False
        self._kick_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._started = False
        self._closed = False
        self._rate: float | None = None  # texts/s of the run stage (moving average), for Retry-After

    # The encoder's identity, so callers can treat the batcher as the encoder.
    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    def queued_texts(self, lane: str) -> int:
        """Texts waiting in ``lane``'s queue (not yet handed to the engine)."""
        return self._lanes[lane].queued_texts

    async def start(self) -> None:
        """Start the engine threads on the running event loop (idempotent)."""
        if self._closed:
            raise EncoderError("the batcher is closed")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        # One thread per stage: batches run one at a time (the model itself uses several cores).
        self._run = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder-run")
        if self.staged:
            self._tok = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder-tokenize")
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder-pool")
        self._started = True

    async def close(self) -> None:
        """Stop the engine; callers still waiting get :class:`EncoderError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        error = EncoderError("the batcher was closed before this request ran")
        for lane in self._lanes.values():
            for req in list(lane.queue):
                self._fail(req, error)
            lane.queue.clear()
            lane.ready.clear()
            lane.queued_texts = 0
        for unit in list(self._units):
            for seg in unit.segments:
                self._fail(seg.req, EncoderError("the batcher was closed while this request ran"))
        self._units.clear()
        for ex in (self._tok, self._run, self._pool):
            if ex is not None:
                # Let a batch already in a thread finish (its callers were failed above).
                await asyncio.to_thread(ex.shutdown, True)
        self._tok = self._run = self._pool = None

    async def __aenter__(self) -> DynamicBatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ callers
    async def encode(
        self, texts: Sequence[str], *, lane: str = BULK, deadline: float | None = None, shed: bool = True
    ) -> np.ndarray:
        """[N] texts -> [N, dim] float32 unit rows, batched with other callers' texts.

        lane: ``interactive`` (served first) or ``bulk``. deadline: ``time.monotonic()`` seconds
        after which the call gives up (:class:`DeadlineExceededError`) and its queued texts are
        dropped. shed=False: never refused for a full queue (internal callers such as reindex,
        which queue one chunk at a time). Raises :class:`QueueFullError` when the lane is full.
        """
        if not self.running or self._loop is None:
            raise EncoderError("the batcher is not running (call start() first)" if not self._closed else "closed")
        if lane not in self._lanes:
            raise ValueError(f"lane must be one of {', '.join(LANES)}, got {lane!r}")
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        ln = self._lanes[lane]
        n = len(texts)
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            ln.stats.expired_requests += 1
            ln.stats.expired_texts += n
            raise DeadlineExceededError("the request's deadline passed before it was queued")
        if shed and ln.queued_texts > 0 and ln.queued_texts + n > ln.max_queue_texts:
            ln.stats.shed_requests += 1
            ln.stats.shed_texts += n
            raise QueueFullError(lane, ln.queued_texts, ln.max_queue_texts, n, self.retry_after_s())
        req = _Request(list(texts), ln, self._loop.create_future(), deadline, now)
        ln.queue.append(req)
        ln.queued_texts += n
        ln.stats.requests += 1
        self.stats.requests += 1
        self._kick()
        try:
            if deadline is None:
                return await req.future
            async with asyncio.timeout(deadline - time.monotonic()):
                return await req.future
        except TimeoutError:
            self._drop(req, expired=True)
            raise DeadlineExceededError("the request's deadline passed while it waited for the encoder") from None
        except asyncio.CancelledError:
            self._drop(req, expired=False)
            raise

    def retry_after_s(self) -> int:
        """Seconds until the queued work has likely drained (for ``Retry-After``), 1..30."""
        waiting = sum(lane.queued_texts for lane in self._lanes.values())
        rate = self._rate or 50.0
        return int(min(30, max(1, math.ceil(waiting / rate))))

    def _drop(self, req: _Request, *, expired: bool) -> None:
        """The caller gave up: remove its queued texts now and mark it gone."""
        if req.gone:
            return
        req.gone = True
        ln = req.lane
        waiting = req.waiting
        if waiting and req in ln.queue:
            ln.queue.remove(req)
            ln.queued_texts -= waiting
            req.taken = len(req.texts)
        if expired:
            ln.stats.expired_requests += 1
            ln.stats.expired_texts += waiting
            if not req.future.done():
                req.future.set_exception(DeadlineExceededError("the request's deadline passed while it was queued"))
        else:
            ln.stats.cancelled_requests += 1
            ln.stats.cancelled_texts += waiting
            if not req.future.done():
                req.future.cancel()

    def _fail(self, req: _Request, exc: BaseException) -> None:
        if req.gone:
            return
        req.gone = True
        ln = req.lane
        if req.waiting and req in ln.queue:
            ln.queue.remove(req)
            ln.queued_texts -= req.waiting
            req.taken = len(req.texts)
        if not req.future.done():
            req.future.set_exception(exc)

    # ------------------------------------------------------------------ scheduling (event loop only)
    def _kick(self) -> None:
        """Schedule a scheduling pass after the callbacks already due (so a burst of callers in one
        loop iteration lands in one unit)."""
        if not self._kick_pending and not self._closed and self._loop is not None:
            self._kick_pending = True
            self._loop.call_soon(self._schedule)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule(self) -> None:
        self._kick_pending = False
        if self._closed:
            return
        now = time.monotonic()
        for ln in self._lanes.values():
            for req in [r for r in ln.queue if r.deadline is not None and r.deadline <= now]:
                self._drop(req, expired=True)
        idle = not self._run_busy and not any(ln.ready or ln.preparing for ln in self._lanes.values())
        for ln in self._lanes.values():
            if not ln.queue or ln.preparing or ln.ready:
                continue
            full = ln.queued_texts >= self.max_batch
            if not (full or idle or ln.name == INTERACTIVE):
                continue  # gathers while the model is busy
            if not full and self.max_wait_s > 0:
                age = now - ln.queue[0].arrived
                if age < self.max_wait_s:
                    self._arm_timer(self.max_wait_s - age)
                    continue
            unit = self._take_unit(ln)
            ln.preparing += 1
            self._spawn(self._prepare(unit), f"encoder-prepare-{ln.name}")
            idle = False
        if not self._run_busy:
            for ln in self._lanes.values():
                while ln.ready:
                    unit, bucket = ln.ready.popleft()
                    if unit.failed:
                        continue
                    if all(unit.row_req[int(r)].gone for r in bucket.rows):
                        # Every caller of these rows left: skip the model call.
                        self._skip(unit, bucket)
                        continue
                    self._run_busy = True
                    self._spawn(self._execute(unit, bucket), f"encoder-run-{ln.name}")
                    return

    def _arm_timer(self, delay: float) -> None:
        if self._timer is None and self._loop is not None:

            def fire() -> None:
                self._timer = None
                self._kick()

            self._timer = self._loop.call_later(delay, fire)

    def _take_unit(self, ln: _Lane) -> _Unit:
        """Up to max_batch texts from the head of ``ln`` (the last request may be split)."""
        segments: list[_Segment] = []
        texts: list[str] = []
        row_req: list[_Request] = []
        while ln.queue and len(texts) < self.max_batch:
            req = ln.queue[0]
            k = min(req.waiting, self.max_batch - len(texts))
            segments.append(_Segment(req, req.taken, req.taken + k, len(texts)))
            texts.extend(req.texts[req.taken : req.taken + k])
            row_req.extend([req] * k)
            req.taken += k
            req.pending += k
            ln.queued_texts -= k
            if req.waiting == 0:
                ln.queue.popleft()
        unit = _Unit(ln, segments, texts, row_req)
        self._units.add(unit)
        return unit

    # ------------------------------------------------------------------ stages
    def _prepare_staged(self, texts: list[str]) -> list[_Bucket]:
        """Tokenizer thread: ids -> length buckets -> padded batches."""
        enc = self.encoder
        assert isinstance(enc, StagedEncoder)
        ids = enc.tokenize(texts)
        return [_Bucket(rows, enc.pad([ids[int(i)] for i in rows])) for rows in enc.length_buckets(ids)]

    async def _prepare(self, unit: _Unit) -> None:
        ln = unit.lane
        try:
            if self.staged:
                loop = asyncio.get_running_loop()
                buckets = await loop.run_in_executor(self._tok, self._prepare_staged, unit.texts)
            else:
                buckets = [_Bucket(np.arange(len(unit.texts)))]
        except Exception as exc:
            self._unit_failed(unit, exc)
            buckets = []
        finally:
            ln.preparing -= 1
        if buckets:
            unit.buckets_left = len(buckets)
            unit.out = np.zeros((len(unit.texts), self.encoder.dim), dtype=np.float32)  # [n, D]
            ln.ready.extend((unit, b) for b in buckets)
        self._kick()

    def _run_serial(self, texts: list[str]) -> np.ndarray:
        vectors = self.encoder.encode(texts)  # [n, D]
        if vectors.shape != (len(texts), self.encoder.dim):
            raise EncoderError(f"encoder returned shape {vectors.shape} for {len(texts)} texts (dim {self.dim})")
        return vectors

    async def _execute(self, unit: _Unit, bucket: _Bucket) -> None:
        loop = asyncio.get_running_loop()
        n = len(bucket.rows)
        t0 = time.perf_counter()
        try:
            if self.staged:
                enc = self.encoder
                assert isinstance(enc, StagedEncoder)
                hidden = await loop.run_in_executor(self._run, enc.run, bucket.batch)  # [b, L, H]
            else:
                vectors = await loop.run_in_executor(
                    self._run, self._run_serial, [unit.texts[int(i)] for i in bucket.rows]
                )
        except Exception as exc:
            self._run_busy = False
            self.stats.errors += 1
            logger.warning("encoding a batch of %d texts failed: %s", n, exc)
            self._unit_failed(unit, exc)
            self._kick()
            return
        self._run_busy = False
        dt = time.perf_counter() - t0
        self._rate = n / dt if self._rate is None else 0.8 * self._rate + 0.2 * (n / max(dt, 1e-6))
        self._count_batch(unit.lane, n)
        self._kick()  # the model is free: the next batch starts while this one pools
        if self.staged:
            enc = self.encoder
            assert isinstance(enc, StagedEncoder)
            try:
                vectors = await loop.run_in_executor(self._pool, enc.pool, hidden, bucket.batch.attention_mask)
            except Exception as exc:
                self.stats.errors += 1
                self._unit_failed(unit, exc)
                return
        self._bucket_done(unit, bucket, vectors)

    def _count_batch(self, ln: _Lane, n: int) -> None:
        self.stats.batches += 1
        self.stats.texts += n
        self.stats.largest_batch = max(self.stats.largest_batch, n)
        ln.stats.batches += 1
        ln.stats.texts += n
        if self.on_batch is not None:
            self.on_batch(ln.name, n)

    def _skip(self, unit: _Unit, bucket: _Bucket) -> None:
        unit.lane.stats.cancelled_texts += len(bucket.rows)
        self._bucket_done(unit, bucket, None)

    def _bucket_done(self, unit: _Unit, bucket: _Bucket, vectors: np.ndarray | None) -> None:
        if unit.failed or unit.out is None:
            return
        if vectors is not None:
            unit.out[bucket.rows] = vectors
        unit.buckets_left -= 1
        if unit.buckets_left > 0:
            return
        self._units.discard(unit)
        for seg in unit.segments:
            req = seg.req
            req.pending -= seg.end - seg.start
            if req.gone:
                continue
            if req.out is None:
                req.out = np.empty((len(req.texts), self.encoder.dim), dtype=np.float32)  # [N, D]
            req.out[seg.start : seg.end] = unit.out[seg.offset : seg.offset + seg.end - seg.start]
            if req.waiting == 0 and req.pending == 0 and not req.future.done():
                req.future.set_result(req.out)

    def _unit_failed(self, unit: _Unit, exc: BaseException) -> None:
        unit.failed = True
        self._units.discard(unit)
        for seg in unit.segments:
            self._fail(seg.req, exc)
