"""The one on-disk cache of text vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import EmbedItemsConfig
from training.encoder.cache import cached_text_vectors, text_cache_key
from training.models.text_encoder import TextEncoder, load_tokenizer


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


def test_text_cache_encodes_with_a_loaded_encoder_and_without_a_folder(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """One cache for every caller: a job holding its encoder (the held-out evaluation) passes it in;
    no cache folder means encode and store nothing."""
    model_dir = tiny_encoder_dir
    cfg = EmbedItemsConfig(max_length=16, batch_size=2)
    texts = ["red lipstick", "blue tent with poles", "green tea"]
    loaded = (TextEncoder.from_pretrained(model_dir), load_tokenizer(model_dir))
    plain = cached_text_vectors(texts, None, cfg, model_dir, progress=False)  # [3, 32]
    assert plain.shape == (3, 32) and plain.dtype == np.float32
    assert not list(tmp_path.rglob("*.npy"))
    cache = tmp_path / "cache"
    stored = cached_text_vectors(texts, cache, cfg, model_dir, progress=False, encoder=loaded)
    np.testing.assert_allclose(stored, plain, rtol=1e-5, atol=1e-6)
    assert [p.name for p in cache.glob("*.npy")] == [f"{text_cache_key(texts, cfg, model_dir)}.npy"]
    np.testing.assert_array_equal(cached_text_vectors(texts, cache, cfg, model_dir), stored)
