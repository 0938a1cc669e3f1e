"""The on-disk cache of item text vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import EmbedItemsConfig
from training.encoder.cache import cached_text_vectors, text_cache_key


def test_text_cache_reads_what_is_stored_under_its_key(tmp_path: Path) -> None:
    cfg = EmbedItemsConfig(max_length=64)
    texts = ["red lipstick", "blue tent"]
    key = text_cache_key(texts, cfg, None)
    assert key != text_cache_key([*texts, "x"], cfg, None)
    assert key != text_cache_key(texts, EmbedItemsConfig(max_length=128), None)
    assert key != text_cache_key(texts[::-1], cfg, None)
    stored = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / f"{key}.npy", stored)
    np.testing.assert_array_equal(cached_text_vectors(texts, tmp_path, cfg), stored)  # no encoder needed
