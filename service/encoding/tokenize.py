"""Tokenization for the ONNX encoder: ``tokenizer.json`` through the ``tokenizers`` library.

No ``transformers`` import: the service loads the Rust tokenizer directly. Settings
are explicit (truncation to ``max_length``, padding to the longest text of a batch)
whatever the file says, so a tokenizer.json saved with fixed-length padding cannot
silently make every batch 128 tokens long.

Tokenizing and padding are separate steps so that a caller can tokenize a whole
request once, sort the texts by token count and pad each batch only to its own
longest text (``OnnxEncoder`` does this).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tokenizers import Tokenizer

from service.encoding.base import EncoderError


class TokenBatch(NamedTuple):
    """One padded batch. All arrays [B, L] int64; ``token_type_ids`` only when the model takes it."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray | None = None


class TextTokenizer:
    """``tokenizer.json`` -> unpadded id sequences -> padded numpy batches."""

    def __init__(self, tokenizer_dir: Path, max_length: int = 128, *, with_token_type_ids: bool = False) -> None:
        if max_length < 2:
            raise EncoderError(f"max_length must be >= 2 (room for the special tokens), got {max_length}")
        path = Path(tokenizer_dir) / "tokenizer.json"
        if not path.is_file():
            raise EncoderError(f"tokenizer file not found: {path}")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception subclasses
            raise EncoderError(f"cannot read {path}: {exc}") from exc
        self.max_length = max_length
        self.with_token_type_ids = with_token_type_ids
        self.pad_id = _pad_id(tok, Path(tokenizer_dir))
        tok.no_padding()
        tok.enable_truncation(max_length=max_length)
        self._tok = tok

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Truncated token ids per text (special tokens included), unpadded. -> N x [L_i] int64"""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise EncoderError(f"text {i} is {type(t).__name__}, not str")
        encodings = self._tok.encode_batch(list(texts))
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def pad(self, ids: Sequence[np.ndarray]) -> TokenBatch:
        """Right-pad to the longest sequence. N x [L_i] -> TokenBatch of [N, max L_i]"""
        if not ids:
            empty = np.zeros((0, 0), dtype=np.int64)
            return TokenBatch(empty, empty.copy(), empty.copy() if self.with_token_type_ids else None)
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)  # [B, L]
        mask = np.zeros((len(ids), width), dtype=np.int64)  # [B, L]
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        types = np.zeros_like(input_ids) if self.with_token_type_ids else None  # single segment: all 0
        return TokenBatch(input_ids, mask, types)

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenize and pad in one step. -> TokenBatch of [N, L]"""
        return self.pad(self.encode(texts))


def _pad_id(tok: Tokenizer, tokenizer_dir: Path) -> int:
    """The pad token id: from tokenizer.json's padding section, else tokenizer_config.json, else [PAD]."""
    padding = tok.padding
    if padding and "pad_id" in padding:
        return int(padding["pad_id"])
    pad_token = "[PAD]"
    config = tokenizer_dir / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text()).get("pad_token")
        except json.JSONDecodeError:
            value = None
        if isinstance(value, str):
            pad_token = value
        elif isinstance(value, dict) and isinstance(value.get("content"), str):
            pad_token = value["content"]
    pad_id = tok.token_to_id(pad_token)
    if pad_id is None:
        raise EncoderError(f"tokenizer in {tokenizer_dir} has no pad token {pad_token!r}")
    return int(pad_id)
