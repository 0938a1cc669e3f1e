"""A deterministic hashing-trick encoder with the :class:`Encoder` protocol.

It is the fast test double the architecture asks for: no model files, same
interface, and texts that share words get similar vectors (each token maps to a
seeded random direction; a text is the normalised sum). Never used in serving.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_TOKEN = re.compile(r"[a-z0-9]+")


class FakeEncoder:
    def __init__(self, dim: int = 384, *, name: str = "fake-hashing-encoder", max_length: int = 128) -> None:
        self.dim = dim
        self.name = name
        self.max_length = max_length
        self._cache: dict[str, npt.NDArray[np.float32]] = {}

    def _token_vector(self, token: str) -> npt.NDArray[np.float32]:
        vec = self._cache.get(token)
        if vec is None:
            seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            self._cache[token] = vec
        return vec

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # [N, D]
        for i, text in enumerate(texts):
            tokens = _TOKEN.findall(text.lower())[: self.max_length] or ["<empty>"]
            for tok in tokens:
                out[i] += self._token_vector(tok)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
