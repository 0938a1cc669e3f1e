"""Fixtures of the training tests: one tiny random text encoder (in memory, or saved as a model folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from training.models.text_encoder import TextEncoder, load_tokenizer

# A small BERT with the base model's vocabulary (so its real tokenizer fits): 2 layers of width 32.
TINY_BERT: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}


def tiny_text_encoder(**config: Any) -> TextEncoder:
    """:data:`TINY_BERT` with random weights, the same ones every call (seed 0), as the project's TextEncoder;
    ``config`` overrides ``BertConfig`` fields (dropout, a smaller vocabulary, ...)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return TextEncoder(BertModel(BertConfig(**{**TINY_BERT, **config})))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`tiny_text_encoder` saved with the base model's tokenizer: a model folder the jobs load
    (``TextEncoder.from_pretrained`` / ``load_tokenizer``). Read-only: tests write elsewhere."""
    out = tmp_path_factory.mktemp("tiny_bert")
    tiny_text_encoder().save(out, load_tokenizer())
    return out
