"""``FakeEncoder``: the deterministic test double of the encoder protocol.

The architecture asks for an encoder with the same protocol that fast tests can
use without loading a model; this is it. It is a real (if crude) text encoder, the
hashing trick: every lower-cased word token gets a fixed pseudo-random Gaussian
vector (seeded by a stable hash of the token and ``seed``), a text's vector is the
sum of its token vectors, L2-normalised. Texts sharing words therefore get similar
vectors (cosine grows with the share of common tokens), the same text always gets
the same vector, in any process, on any machine.

Never used in production: the service builds an ``OnnxEncoder`` unless a caller
hands in another encoder (tests do).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from service.core.pooling import l2_normalize
from service.encoding.base import EncoderError

_TOKEN = re.compile(r"\w+", re.UNICODE)
# Vector of a text without any word token ("", "!!!"), so every row stays unit length.
_EMPTY_TOKEN = "\x00empty"


class FakeEncoder:
    """Hashing-trick encoder with the :class:`service.encoding.base.Encoder` protocol."""

    def __init__(self, dim: int = 384, *, name: str = "fake-hashing-encoder", max_length: int = 128, seed: int = 0):
        if dim < 1:
            raise EncoderError(f"dim must be >= 1, got {dim}")
        if max_length < 1:
            raise EncoderError(f"max_length must be >= 1, got {max_length}")
        self.dim = dim
        self.name = name
        self.max_length = max_length
        self.seed = seed
        self._cache: dict[str, np.ndarray] = {}

    def tokens(self, text: str) -> list[str]:
        """Lower-cased word tokens, truncated to ``max_length`` like a real tokenizer."""
        return _TOKEN.findall(text.lower())[: self.max_length]

    def token_vector(self, token: str) -> np.ndarray:
        """Fixed Gaussian vector of one token. -> [dim]"""
        vec = self._cache.get(token)
        if vec is None:
            digest = hashlib.blake2b(f"{self.seed}\x1f{token}".encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            vec = rng.standard_normal(self.dim).astype(np.float32)
            if len(self._cache) < 200_000:
                self._cache[token] = vec
        return vec

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N] texts -> [N, dim] float32 unit rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # [N, D]
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise EncoderError(f"text {row} is {type(text).__name__}, not str")
            toks = self.tokens(text) or [_EMPTY_TOKEN]
            for tok in toks:
                out[row] += self.token_vector(tok)
        return l2_normalize(out)
