"""Tokenizer from tokenizer.json via the `tokenizers` library (no transformers import at serve time)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from service.encoding.base import EncoderError


class TokenBatch(NamedTuple):
    input_ids: npt.NDArray[np.int64]  # [B, L]
    attention_mask: npt.NDArray[np.int64]  # [B, L]


class TextTokenizer:
    def __init__(self, tokenizer_dir: Path, max_length: int = 128) -> None:
        path = Path(tokenizer_dir) / "tokenizer.json"
        if not path.is_file():
            raise EncoderError(f"tokenizer.json not found in {tokenizer_dir}")
        self._tok = Tokenizer.from_file(str(path))
        self.max_length = max_length
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(pad_id=self._tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        enc = self._tok.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        return TokenBatch(ids, mask)
