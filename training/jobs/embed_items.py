"""Catalog text vectors with the torch reference encoder (the vectors the models train on)."""

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


def embed_items(items: Sequence[Item], cfg: EmbedItemsConfig, model_dir: Path | None = None) -> np.ndarray:
    """[N] items -> [N, H] float32 unit vectors of ``item_text(item)``."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    model = TextEncoder.from_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    texts = [item_text(it) for it in items]
    t0 = time.perf_counter()
    vectors = encode_texts(model, tokenizer, texts, batch_size=cfg.batch_size, max_length=cfg.max_length, progress=True)
    dt = time.perf_counter() - t0
    logger.info("embedded %d item texts in %.1fs (%.0f texts/s)", len(texts), dt, len(texts) / max(dt, 1e-9))
    return vectors
