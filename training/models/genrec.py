"""TIGER-style generative recommender (modules only; training in training/genrec/).

A Hugging Face ``T5ForConditionalGeneration`` over the semantic-ID token vocabulary
(``service.core.sid``: pad/decoder-start 0, eos 1, then one token range per sid level):
the encoder reads the sid tokens of the history's last items, the decoder emits the
next item's sid, one level per step. Building on the HF class (as public TIGER
re-implementations do) lets the service load it without importing ``training/`` and
lets ``benchmarks/beam.py`` compare our batched decoder against ``generate`` with
``prefix_allowed_tokens_fn`` on the same weights.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from transformers import T5Config

from service.core.sid import EOS_TOKEN, HISTORY_INPUTS, PAD_TOKEN, SidLayout
from service.semantic_ids.decoder import encoder_inputs
from service.semantic_ids.model import GenRecT5
from training.config import GenRecConfig


def genrec_t5_config(layout: SidLayout, cfg: GenRecConfig, n_items: int = 0) -> T5Config:
    if cfg.history_input not in HISTORY_INPUTS:
        raise ValueError(f"history_input must be one of {HISTORY_INPUTS}, got {cfg.history_input!r}")
    if cfg.item_id_input and cfg.history_input != "items":
        raise ValueError("item_id_input needs history_input: items (the ID vector is added per item position)")
    if cfg.item_id_input and n_items < 1:
        raise ValueError("item_id_input needs the number of items of the table")
    if not 0.0 <= cfg.item_dropout < 1.0:
        raise ValueError(f"item_dropout must be in [0, 1), got {cfg.item_dropout}")
    kwargs: dict[str, Any] = dict(
        vocab_size=layout.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_kv,
        d_ff=cfg.d_ff,
        num_layers=cfg.encoder_layers,
        num_decoder_layers=cfg.decoder_layers,
        num_heads=cfg.n_heads,
        dropout_rate=cfg.dropout,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=PAD_TOKEN,
        eos_token_id=EOS_TOKEN,
        decoder_start_token_id=PAD_TOKEN,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        history_input=cfg.history_input,  # saved in config.json: serving builds the same encoder input
        item_id_embeddings=n_items if cfg.item_id_input else 0,  # GenRecT5's per-item ID table
        sid_depth=layout.depth,  # tokens per item: serving checks the encoder rows it is given
    )
    return T5Config(**kwargs)


def build_genrec(layout: SidLayout, cfg: GenRecConfig, seed: int | None = None, n_items: int = 0) -> GenRecT5:
    """A fresh model; ``n_items``: rows of the item table, for ``cfg.item_id_input``."""
    if seed is not None:
        torch.manual_seed(seed)
    return GenRecT5(genrec_t5_config(layout, cfg, n_items))


class GenRecBatch(NamedTuple):
    input_ids: Tensor  # [B, S] long history sid tokens + eos, right-padded ([B, S, depth]: per-item rows)
    attention_mask: Tensor  # [B, S] long
    labels: Tensor  # [B, depth] long target sid tokens
    # Distillation (training/genrec/distill.py), None when off: the teacher's top items' sid tokens and
    # their probabilities.
    teacher_tokens: Tensor | None = None  # [B, K, depth] long
    teacher_probs: Tensor | None = None  # [B, K] float


def genrec_forward(model: GenRecT5, batch: GenRecBatch) -> Any:
    """The teacher-forced forward: ``.loss`` (cross-entropy of the target sid; HF shifts labels right
    behind the start token) and ``.logits`` [B, depth, V] (step l predicts level l)."""
    return model(**encoder_inputs(model, batch.input_ids), attention_mask=batch.attention_mask, labels=batch.labels)


def genrec_loss(model: GenRecT5, batch: GenRecBatch) -> Tensor:
    """Teacher-forced cross-entropy of the target sid (HF shifts labels right behind the start token)."""
    loss: Tensor = genrec_forward(model, batch).loss
    return loss
