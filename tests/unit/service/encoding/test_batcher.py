"""DynamicBatcher on a real (fake-hashing) encoder that records the batches it was given."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from service.encoding.base import EncoderError
from service.encoding.batcher import BULK, INTERACTIVE, DeadlineExceededError, DynamicBatcher, QueueFullError
from service.encoding.fake import FakeEncoder

DIM = 16


class CountingEncoder(FakeEncoder):
    """FakeEncoder that records every batch it encodes (and the thread it ran on)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(dim=DIM)
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        return super().encode(texts)


class FailingEncoder(CountingEncoder):
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if any("boom" in t for t in texts):
            self.calls.append(list(texts))
            raise ValueError("encoder exploded")
        return super().encode(texts)


REQUESTS = [["red shoes", "blue shoes"], ["yoga mat"], ["chef knife", "cutting board", "apron"], ["tent"]]


def test_concurrent_requests_are_merged_and_each_gets_its_rows() -> None:
    enc = CountingEncoder()

    async def go() -> list[np.ndarray]:
        async with DynamicBatcher(enc, max_batch=64, max_wait_ms=200) as batcher:
            return await asyncio.gather(*(batcher.encode(r) for r in REQUESTS))

    results = asyncio.run(go())
    assert len(enc.calls) == 1 and sorted(enc.calls[0]) == sorted(t for r in REQUESTS for t in r)
    assert all(name.startswith("encoder") for name in enc.threads)  # ran in the worker thread
    reference = FakeEncoder(dim=DIM)
    for req, got in zip(REQUESTS, results, strict=True):
        np.testing.assert_allclose(got, reference.encode(req), rtol=1e-6)


def test_max_batch_bounds_every_model_call_and_large_requests_are_reassembled() -> None:
    enc = CountingEncoder()

    async def go() -> tuple[list[np.ndarray], DynamicBatcher]:
        batcher = DynamicBatcher(enc, max_batch=3, max_wait_ms=100)
        await batcher.start()
        try:
            big = [f"t{i}" for i in range(7)]
            out = await asyncio.gather(*(batcher.encode(r) for r in [*REQUESTS, big]))
            return out, batcher
        finally:
            await batcher.close()

    results, batcher = asyncio.run(go())
    sizes = [len(c) for c in enc.calls]
    assert all(s <= 3 for s in sizes)  # the 7-text request was split across model calls
    assert sum(sizes) == sum(len(r) for r in REQUESTS) + 7
    reference = FakeEncoder(dim=DIM)
    for req, got in zip([*REQUESTS, [f"t{i}" for i in range(7)]], results, strict=True):
        np.testing.assert_allclose(got, reference.encode(req), rtol=1e-6)  # rows back in request order
    assert batcher.stats.batches == len(enc.calls) and batcher.stats.requests == 5
    assert batcher.stats.largest_batch == 3


def test_requests_arriving_while_a_batch_runs_form_the_next_batch() -> None:
    enc = CountingEncoder(delay_s=0.2)

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=64, max_wait_ms=0) as batcher:
            first = asyncio.create_task(batcher.encode(["first"]))
            await asyncio.sleep(0.05)  # "first" is running in the worker thread now
            rest = await asyncio.gather(*(batcher.encode([f"later {i}"]) for i in range(5)))
            await first
            assert all(r.shape == (1, DIM) for r in rest)

    asyncio.run(go())
    assert [len(c) for c in enc.calls] == [1, 5]


def test_errors_reach_every_caller_of_the_batch_and_the_batcher_survives() -> None:
    enc = FailingEncoder()

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=64, max_wait_ms=100) as batcher:
            results = await asyncio.gather(batcher.encode(["fine"]), batcher.encode(["boom"]), return_exceptions=True)
            assert all(isinstance(r, ValueError) for r in results)
            ok = await batcher.encode(["fine again"])
            assert ok.shape == (1, DIM)
            assert batcher.stats.errors == 1

    asyncio.run(go())


def test_lifecycle_errors_and_empty_request() -> None:
    enc = CountingEncoder()

    async def go() -> None:
        batcher = DynamicBatcher(enc, max_batch=8, max_wait_ms=1)
        with pytest.raises(EncoderError, match="start"):
            await batcher.encode(["x"])
        await batcher.start()
        await batcher.start()  # idempotent
        assert (batcher.dim, batcher.name) == (DIM, enc.name)
        assert (await batcher.encode([])).shape == (0, DIM)
        await batcher.close()
        await batcher.close()  # idempotent
        with pytest.raises(EncoderError):
            await batcher.encode(["x"])
        with pytest.raises(EncoderError):
            await batcher.start()

    asyncio.run(go())
    assert enc.calls == []


def test_close_fails_waiting_callers() -> None:
    enc = CountingEncoder(delay_s=0.3)

    async def go() -> None:
        batcher = DynamicBatcher(enc, max_batch=1, max_wait_ms=0)
        await batcher.start()
        running = asyncio.create_task(batcher.encode(["a"]))
        queued = asyncio.create_task(batcher.encode(["b"]))
        await asyncio.sleep(0.05)
        await batcher.close()
        for task in (running, queued):
            with pytest.raises(EncoderError, match="closed"):
                await task

    asyncio.run(go())


def test_cancelled_caller_does_not_disturb_others() -> None:
    enc = CountingEncoder()

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=64, max_wait_ms=100) as batcher:
            doomed = asyncio.create_task(batcher.encode(["doomed"]))
            kept = asyncio.create_task(batcher.encode(["kept"]))
            await asyncio.sleep(0)
            doomed.cancel()
            out = await kept
            np.testing.assert_allclose(out, FakeEncoder(dim=DIM).encode(["kept"]), rtol=1e-6)

    asyncio.run(go())
    assert all("doomed" not in c for c in enc.calls)


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(FakeEncoder(), max_batch=0)
    with pytest.raises(ValueError):
        DynamicBatcher(FakeEncoder(), max_wait_ms=-1)


# ---------------------------------------------------------------- admission, cancellation, lanes
class GatedEncoder(CountingEncoder):
    """Blocks in encode() until the test opens the gate, so queue states are deterministic."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        return super().encode(texts)


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_full_queue_sheds_at_once_without_queueing() -> None:
    enc = GatedEncoder()

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=4, max_queue_texts=4) as batcher:
            running = asyncio.create_task(batcher.encode(["running"]))
            await _until(enc.entered.is_set)  # "running" is in the model, the queue is empty
            queued = asyncio.create_task(batcher.encode(["q1", "q2", "q3"]))
            await _until(lambda: batcher.queued_texts(BULK) == 3)
            with pytest.raises(QueueFullError) as info:
                await batcher.encode(["over1", "over2"])  # 3 + 2 > 4
            assert info.value.retry_after_s >= 1 and info.value.lane == BULK
            assert batcher.queued_texts(BULK) == 3  # nothing of the refused request was queued
            # the interactive lane has its own bound: bulk pressure does not refuse it
            interactive = asyncio.create_task(batcher.encode(["urgent"], lane=INTERACTIVE))
            enc.gate.set()
            await asyncio.gather(running, queued, interactive)
            stats = batcher.stats.lanes[BULK]
            assert (stats.shed_requests, stats.shed_texts) == (1, 2)
            # an empty queue admits a request larger than the bound
            assert (await batcher.encode([f"big {i}" for i in range(9)])).shape == (9, DIM)

    asyncio.run(go())
    assert not any(t.startswith("over") for call in enc.calls for t in call)


def test_cancelled_and_expired_callers_are_dropped_before_encoding() -> None:
    enc = GatedEncoder()

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=8) as batcher:
            running = asyncio.create_task(batcher.encode(["running"]))
            await _until(enc.entered.is_set)
            doomed = asyncio.create_task(batcher.encode(["doomed a", "doomed b"]))
            late = asyncio.create_task(batcher.encode(["late"], deadline=time.monotonic() + 0.05))
            kept = asyncio.create_task(batcher.encode(["kept"]))
            await _until(lambda: batcher.queued_texts(BULK) == 4)
            doomed.cancel()  # e.g. the HTTP client went away
            with pytest.raises(DeadlineExceededError):
                await late
            assert batcher.queued_texts(BULK) == 1  # both left the queue at once
            enc.gate.set()
            await running
            np.testing.assert_allclose(await kept, FakeEncoder(dim=DIM).encode(["kept"]), rtol=1e-6)
            with pytest.raises(asyncio.CancelledError):
                await doomed
            stats = batcher.stats.lanes[BULK]
            assert (stats.cancelled_requests, stats.cancelled_texts) == (1, 2)
            assert (stats.expired_requests, stats.expired_texts) == (1, 1)
            assert stats.texts == 2  # "running" and "kept" only
            with pytest.raises(DeadlineExceededError):  # already past: refused before queueing
                await batcher.encode(["too late"], deadline=time.monotonic() - 1)

    asyncio.run(go())
    encoded = [t for call in enc.calls for t in call]
    assert sorted(encoded) == ["kept", "running"]


def test_interactive_lane_is_served_before_queued_bulk_work() -> None:
    enc = GatedEncoder()

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=4, max_queue_texts=10_000) as batcher:
            first = asyncio.create_task(batcher.encode(["bulk running"]))
            await _until(enc.entered.is_set)
            flood = [asyncio.create_task(batcher.encode([f"bulk {i}.{j}" for j in range(4)])) for i in range(10)]
            await _until(lambda: batcher.stats.lanes[BULK].requests == 11)  # one full bulk unit is taken ahead
            urgent = asyncio.create_task(batcher.encode(["interactive text"], lane=INTERACTIVE))
            await _until(lambda: batcher.queued_texts(INTERACTIVE) == 0)  # taken into the next unit
            enc.gate.set()
            await asyncio.gather(first, urgent, *flood)
            assert batcher.stats.lanes[INTERACTIVE].texts == 1

    asyncio.run(go())
    # the model call right after the one that was running is the interactive one, ahead of 40 bulk texts
    assert enc.calls[0] == ["bulk running"] and enc.calls[1] == ["interactive text"]
    assert all(len(c) <= 4 for c in enc.calls)


def test_lone_request_does_not_wait_for_a_fill_window() -> None:
    enc = CountingEncoder()

    async def go() -> None:
        # a huge fill window would be noticed; max_wait_ms=0 (the default) starts at once
        async with DynamicBatcher(enc, max_batch=64) as batcher:
            out = await asyncio.wait_for(batcher.encode(["alone"]), timeout=5)
            assert out.shape == (1, DIM)

    asyncio.run(go())
    assert enc.calls == [["alone"]]


def test_invalid_lane() -> None:
    async def go() -> None:
        async with DynamicBatcher(FakeEncoder(dim=DIM)) as batcher:
            with pytest.raises(ValueError, match="lane"):
                await batcher.encode(["x"], lane="vip")

    asyncio.run(go())


def test_deadline_passed_while_queued_raises_deadline_error_not_cancellation() -> None:
    enc = GatedEncoder()

    async def go() -> None:
        async with DynamicBatcher(enc, max_batch=8) as batcher:
            running = asyncio.create_task(batcher.encode(["running"]))
            await _until(enc.entered.is_set)
            late = asyncio.create_task(batcher.encode(["late"], deadline=time.monotonic() + 0.05))
            await asyncio.sleep(0.1)
            batcher._kick()  # a scheduling pass may see the passed deadline before the caller's own timer
            with pytest.raises(DeadlineExceededError):
                await late
            enc.gate.set()
            await running

    asyncio.run(go())
    assert ["late"] not in enc.calls
