"""The encoder protocol the service codes against, and its one error type.

Implementations: :class:`service.encoding.onnx_encoder.OnnxEncoder` (production,
onnxruntime) and :class:`service.encoding.fake.FakeEncoder` (deterministic test double).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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
