"""Catalog text vectors with the torch reference encoder (the vectors stored in the artifact set).

The service re-embeds new items online with the ONNX encoder; the export's parity gate
(``training/encoder/export.py``) is what makes those vectors comparable with these.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from service.core.items import Item, item_text
from training.config import EmbedItemsConfig
from training.models.text_encoder import TextEncoder, encode_texts, load_tokenizer

logger = logging.getLogger(__name__)


def embed_texts(texts: Sequence[str], cfg: EmbedItemsConfig, model_dir: Path | None = None) -> np.ndarray:
    """Unit vectors of ``texts`` in order with the torch reference encoder, on ``cfg.threads`` threads
    (0: torch's setting). -> [N, H] float32 (H = 384 for MiniLM)"""
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        model = TextEncoder.from_pretrained(model_dir)
        tokenizer = load_tokenizer(model_dir)
        return encode_texts(
            model, tokenizer, list(texts), batch_size=cfg.batch_size, max_length=cfg.max_length, progress=True
        )  # [N, H]
    finally:
        torch.set_num_threads(previous_threads)


def embed_items(items: Sequence[Item], cfg: EmbedItemsConfig, model_dir: Path | None = None) -> np.ndarray:
    """Unit text vectors of ``items`` in order (``item_text`` of each). -> [N, H] float32 (H = 384 for MiniLM)"""
    texts = [item_text(it) for it in items]
    t0 = time.perf_counter()
    vectors = embed_texts(texts, cfg, model_dir)  # [N, H]
    dt = time.perf_counter() - t0
    logger.info(
        "embedded %d items in %.1fs (%.1f texts/s, batch %d, max_length %d, %d threads)",
        len(texts),
        dt,
        len(texts) / dt if dt > 0 else float("inf"),
        cfg.batch_size,
        cfg.max_length,
        cfg.threads or torch.get_num_threads(),
    )
    return vectors
