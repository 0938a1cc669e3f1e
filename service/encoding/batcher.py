"""Dynamic micro-batching of concurrent /embed (and history-text) requests.

Callers await :meth:`DynamicBatcher.encode`; texts from concurrent callers are
merged into one encoder call of up to ``max_batch`` texts, waiting at most
``max_wait_ms`` for company. The encoder runs in a worker thread so the event
loop keeps serving. Each caller gets exactly its own rows back, or the error.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.encoding.base import Encoder


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[npt.NDArray[np.float32]] = field(repr=False)


class DynamicBatcher:
    def __init__(self, encoder: Encoder, max_batch: int = 64, max_wait_ms: float = 5.0) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # encoder calls made (observability + tests)

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dynamic-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                req = self._queue.get_nowait()
                if not req.future.done():
                    req.future.set_exception(RuntimeError("encoder batcher closed"))

    async def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        if self._task is None or self._queue is None:
            self.start()
        assert self._queue is not None
        fut: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(texts), fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            n = len(first.texts)
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    req = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                batch.append(req)
                n += len(req.texts)
            texts = [t for r in batch for t in r.texts]
            try:
                self.calls += 1
                vectors = await asyncio.to_thread(self.encoder.encode, texts)  # [n, D]
            except Exception as exc:  # every waiting caller gets the error
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            start = 0
            for r in batch:
                end = start + len(r.texts)
                if not r.future.done():
                    r.future.set_result(vectors[start:end])
                start = end
