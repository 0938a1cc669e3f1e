"""Dynamic micro-batching of encode calls.

Concurrent requests each bring a few texts; running them one by one wastes the
batch dimension. :class:`DynamicBatcher` merges the texts of requests that arrive
within ``max_wait_ms`` of the first waiting one (up to ``max_batch`` texts), runs
the merged batch on the wrapped encoder in a worker thread (so the event loop
stays free), and hands each caller its own rows. While one batch runs, the next
one gathers, so under load batches fill without waiting.

A request larger than ``max_batch`` runs alone (the encoder batches internally);
requests are never split or reordered. An exception from the encoder is raised
in every caller of that batch. Callers that were cancelled are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

import numpy as np

from service.encoding.base import Encoder, EncoderError

logger = logging.getLogger(__name__)


class _Request(NamedTuple):
    texts: list[str]
    future: asyncio.Future[np.ndarray]


@dataclass
class BatcherStats:
    """Counters since start (read them for metrics and tests)."""

    requests: int = 0
    batches: int = 0
    texts: int = 0
    largest_batch: int = 0
    errors: int = 0


class DynamicBatcher:
    """Merge concurrent :meth:`encode` calls into batches for one :class:`Encoder`."""

    def __init__(self, encoder: Encoder, *, max_batch: int = 64, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.stats = BatcherStats()
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

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
        return self._worker is not None and not self._worker.done() and not self._closed

    async def start(self) -> None:
        """Start the worker on the running event loop (idempotent)."""
        if self._closed:
            raise EncoderError("the batcher is closed")
        if self._worker is not None:
            return
        self._queue = asyncio.Queue()
        # One thread: batches run one at a time (the encoder itself uses several cores).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._worker = asyncio.create_task(self._run(), name="encoder-batcher")

    async def close(self) -> None:
        """Stop the worker; callers still waiting get :class:`EncoderError`. Idempotent."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._queue is not None:
            while not self._queue.empty():
                req = self._queue.get_nowait()
                if not req.future.done():
                    req.future.set_exception(EncoderError("the batcher was closed before this request ran"))
        if self._executor is not None:
            # Let a batch already in the thread finish (its callers were failed above).
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None

    async def __aenter__(self) -> DynamicBatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def encode(self, texts: list[str]) -> np.ndarray:
        """[N] texts -> [N, dim] float32 unit rows, merged with other callers' texts."""
        if not self.running or self._queue is None:
            raise EncoderError("the batcher is not running (call start() first)" if not self._closed else "closed")
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(list(texts), future))
        self.stats.requests += 1
        return await future

    # ------------------------------------------------------------------ worker
    async def _gather(self, first: _Request) -> tuple[list[_Request], _Request | None]:
        """``first`` plus the requests arriving within max_wait (<= max_batch texts). -> (batch, carry-over)"""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch, size = [first], len(first.texts)
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            if self._queue.empty():
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    req = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
            else:
                req = self._queue.get_nowait()
            if req.future.done():  # cancelled by its caller
                continue
            if size + len(req.texts) > self.max_batch:
                return batch, req  # runs first in the next batch
            batch.append(req)
            size += len(req.texts)
        return batch, None

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        carry: _Request | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            if first.future.done():
                continue
            batch, carry = await self._gather(first)
            batch = [r for r in batch if not r.future.done()]
            if not batch:
                continue
            texts = [t for r in batch for t in r.texts]
            try:
                vectors = await loop.run_in_executor(self._executor, self.encoder.encode, texts)  # [n, D]
                if vectors.shape != (len(texts), self.encoder.dim):
                    raise EncoderError(
                        f"encoder returned shape {vectors.shape} for {len(texts)} texts (dim {self.encoder.dim})"
                    )
            except asyncio.CancelledError:
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(EncoderError("the batcher was closed while this request ran"))
                raise
            except Exception as exc:
                self.stats.errors += 1
                logger.warning("encoding a batch of %d texts failed: %s", len(texts), exc)
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.texts += len(texts)
            self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
            offset = 0
            for r in batch:
                n = len(r.texts)
                if not r.future.done():
                    r.future.set_result(vectors[offset : offset + n])
                offset += n
