"""The generative model class: a Hugging Face T5 with optional per-item ID embeddings.

``GenRecT5`` is ``T5ForConditionalGeneration`` plus, when its config has ``item_id_embeddings``
= N > 0, an ``nn.Embedding(N + 1, d_model, padding_idx=0)``: row ``r + 1`` is the learned ID
vector of item ``r`` of the training table, row 0 (zeros, never trained) stands for "no ID"
(items added after training, history items given by text). With the per-item encoder input
(``history_input: items``) each history position is then the sum of the item's sid token
embeddings and its ID vector, the fusion of the project's sequential models (an ID embedding
plus a text-derived part, so a new item still has an input) applied to the generative
encoder. The decoder and its vocabulary are T5's own: the model still emits semantic IDs.

It stays a ``T5ForConditionalGeneration`` subclass, so ``save_pretrained`` /
``from_pretrained`` keep the extra table in the same safetensors file, HF ``generate``
(the benchmark's reference) runs on it unchanged, and models saved without the table load
as before.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration


class GenRecT5(T5ForConditionalGeneration):
    def __init__(self, config: T5Config) -> None:
        super().__init__(config)
        n = int(getattr(config, "item_id_embeddings", 0) or 0)
        if n < 0:
            raise ValueError(f"item_id_embeddings must be >= 0, got {n}")
        self.item_id_embedding: nn.Embedding | None = nn.Embedding(n + 1, config.d_model, padding_idx=0) if n else None
        if self.item_id_embedding is not None:
            self._init_item_ids(self.item_id_embedding)

    def _init_item_ids(self, emb: nn.Embedding) -> None:
        # The scale of T5's token embeddings (normal, std = initializer_factor), padding row zero.
        with torch.no_grad():
            emb.weight.normal_(0.0, float(self.config.initializer_factor))
            emb.weight[0].zero_()

    def _init_weights(self, module: Any) -> None:
        super()._init_weights(module)
        emb = getattr(self, "item_id_embedding", None)  # None while T5's __init__ runs
        if isinstance(emb, nn.Embedding) and module is emb:
            self._init_item_ids(emb)
