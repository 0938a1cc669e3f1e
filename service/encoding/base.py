"""The encoder protocols the service codes against, and its one error type.

Implementations: :class:`service.encoding.onnx_encoder.OnnxEncoder` (production,
onnxruntime) and :class:`service.encoding.fake.FakeEncoder` (deterministic test double).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class EncoderError(RuntimeError):
    """The encoder cannot be built, or it cannot (or no longer does) give the vectors it should."""


@runtime_checkable
class Encoder(Protocol):
    """Texts -> unit vectors.

    ``dim``: vector size; ``name``: model/variant identifier shown in /embed responses;
    ``max_length``: tokens per text after truncation.
    """

    dim: int
    name: str
    max_length: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N] texts -> [N, dim] float32, every row of unit length, in input order."""
        ...


@runtime_checkable
class StagedEncoder(Encoder, Protocol):
    """An encoder that exposes its three stages, so the batcher can overlap them on separate threads.

    ``encode(texts)`` must equal: ``ids = tokenize(texts)``; for each ``rows`` of
    ``length_buckets(ids)``: ``batch = pad([ids[i] for i in rows])``,
    ``out[rows] = pool(run(batch), batch.attention_mask)`` (up to float tolerance).
    """

    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """N texts -> N x [L_i] int64 token ids (unpadded)."""
        ...

    def length_buckets(self, ids: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Row indices grouped into model calls of similar length. -> [b] int64 arrays covering 0..N-1"""
        ...

    def pad(self, ids: Sequence[np.ndarray]) -> Any:
        """A padded batch with an ``attention_mask`` [B, L] attribute (``TokenBatch``)."""
        ...

    def run(self, batch: Any) -> np.ndarray:
        """One padded batch -> hidden states [B, L, H]."""
        ...

    def pool(self, hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """[B, L, H] + [B, L] -> [B, H] float32 unit rows."""
        ...
