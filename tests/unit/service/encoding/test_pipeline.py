"""The pipelined engine (tokenize | run | pool threads, length buckets) against the plain serial path."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.encoding.base import StagedEncoder
from service.encoding.batcher import INTERACTIVE, DynamicBatcher
from service.encoding.fake import FakeEncoder
from service.encoding.onnx_encoder import OnnxEncoder, length_buckets
from service.encoding.tokenize import TokenBatch

WORDS = ("serum", "shampoo", "stainless", "steel", "chef", "knife", "yoga", "mat", "with", "a", "long")


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


class ThreadRecordingEncoder(OnnxEncoder):
    """OnnxEncoder that notes which thread ran each stage."""

    seen: dict[str, set[str]]

    def tokenize(self, texts: list[str]) -> list[np.ndarray]:  # type: ignore[override]
        self.seen.setdefault("tokenize", set()).add(threading.current_thread().name)
        return super().tokenize(texts)

    def run(self, batch: TokenBatch) -> np.ndarray:
        self.seen.setdefault("run", set()).add(threading.current_thread().name)
        return super().run(batch)

    def pool(self, hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:  # type: ignore[override]
        self.seen.setdefault("pool", set()).add(threading.current_thread().name)
        return super().pool(hidden, attention_mask)


def test_pipelined_path_gives_the_serial_vectors(tiny_onnx: tuple[Path, np.ndarray], tokenizer_dir: Path) -> None:
    path, _ = tiny_onnx
    enc = ThreadRecordingEncoder(path, tokenizer_dir, max_length=24, device="cpu", threads=1, batch_size=4)
    enc.max_batch_tokens = 48  # several buckets per unit
    enc.seen = {}
    assert isinstance(enc, StagedEncoder) and not isinstance(FakeEncoder(), StagedEncoder)
    requests = [_texts(k, seed) for seed, k in enumerate([1, 3, 17, 2, 40, 5])]

    async def go(pipeline: bool) -> list[np.ndarray]:
        async with DynamicBatcher(enc, max_batch=16, pipeline=pipeline) as batcher:
            assert batcher.staged is pipeline
            lanes = [INTERACTIVE if i % 2 else "bulk" for i in range(len(requests))]
            return await asyncio.gather(*(batcher.encode(r, lane=ln) for r, ln in zip(requests, lanes, strict=True)))

    piped = asyncio.run(go(True))
    assert {name.split("_")[0] for name in enc.seen["tokenize"]} == {"encoder-tokenize"}
    assert {name.split("_")[0] for name in enc.seen["run"]} == {"encoder-run"}
    assert {name.split("_")[0] for name in enc.seen["pool"]} == {"encoder-pool"}
    serial = asyncio.run(go(False))
    for texts, a, b in zip(requests, piped, serial, strict=True):
        reference = enc.encode(texts)  # the plain one-call path
        np.testing.assert_allclose(a, reference, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, reference, rtol=1e-5, atol=1e-6)


def test_buckets_cut_padding(tiny_onnx: tuple[Path, np.ndarray], tokenizer_dir: Path) -> None:
    path, _ = tiny_onnx
    enc = OnnxEncoder(path, tokenizer_dir, max_length=128, device="cpu", threads=1, batch_size=32)
    texts = [" ".join(["word"] * 100)] * 3 + ["short"] * 20
    buckets = enc.length_buckets(enc.tokenize(texts))
    assert [sorted(b.tolist()) for b in buckets] == [[0, 1, 2], list(range(3, 23))]  # no short text padded to 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 128), min_size=0, max_size=80), st.integers(1, 40), st.integers(128, 8192))
def test_length_buckets_partition_rows_within_bounds(lengths: list[int], max_rows: int, max_tokens: int) -> None:
    buckets = length_buckets(lengths, max_rows, max_tokens)
    rows = np.concatenate(buckets) if buckets else np.zeros(0, dtype=np.int64)
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every row exactly once
    for b in buckets:
        widths = [lengths[i] for i in b]
        assert len(b) <= max_rows and len(b) * max(widths) <= max(max_tokens, max(widths))
        assert min(widths) * 2 >= max(widths)  # no text padded to more than twice its length
